"""``tracker completion bash|zsh``: a shell completion script for ``tracker``.

The script is generated from the argument parser itself, so every subcommand, option
and choice the CLI accepts is completed and a new subcommand needs no second edit. It
is static: nothing runs Python at completion time, so completing stays instant and
works when the server is down. zsh loads the same functions through ``bashcompinit``.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator
from typing import Any

from tracker_client.cli._common import Client, command_parser

SHELLS = ("bash", "zsh")

_BASH_BODY = r"""
_tracker_complete() {
    local cur prev path word i
    [ -n "${ZSH_VERSION-}" ] && setopt localoptions ksharrays
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev=""
    [ "$COMP_CWORD" -gt 0 ] && prev="${COMP_WORDS[COMP_CWORD-1]}"
    path="tracker"
    i=1
    while [ "$i" -lt "$COMP_CWORD" ]; do
        word="${COMP_WORDS[i]}"
        case " ${_tracker_valued[$path]-} " in
            *" $word "*) i=$((i + 2)); continue ;;
        esac
        case " ${_tracker_commands[$path]-} " in
            *" $word "*) path="$path.$word" ;;
        esac
        i=$((i + 1))
    done
    case " ${_tracker_valued[$path]-} " in
        *" $prev "*)
            if [ -n "${_tracker_choices[$path.$prev]-}" ]; then
                COMPREPLY=($(compgen -W "${_tracker_choices[$path.$prev]}" -- "$cur"))
            else
                COMPREPLY=($(compgen -f -- "$cur"))
            fi
            return 0 ;;
    esac
    case "$cur" in
        -*) COMPREPLY=($(compgen -W "${_tracker_options[$path]-}" -- "$cur")) ;;
        *)
            if [ -n "${_tracker_commands[$path]-}" ]; then
                COMPREPLY=($(compgen -W "${_tracker_commands[$path]}" -- "$cur"))
            elif [ -n "${_tracker_words[$path]-}" ]; then
                COMPREPLY=($(compgen -W "${_tracker_words[$path]}" -- "$cur"))
            else
                COMPREPLY=($(compgen -f -- "$cur"))
            fi ;;
    esac
    return 0
}
complete -o default -F _tracker_complete tracker
"""


def register(sub: Any) -> None:
    """Add ``completion``."""
    parser = command_parser(sub, "completion", "print a shell completion script "
                            "(bash: `source <(tracker completion bash)`)")
    parser.add_argument("shell", choices=SHELLS, help="bash or zsh")
    parser.set_defaults(func=run, needs_server=False)


def run(args: argparse.Namespace, client: Client | None) -> int:
    """Print the script for ``args.shell``."""
    from tracker_client.cli import build_parser

    print(script(build_parser(), args.shell), end="")
    return 0


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``parser`` for ``shell`` (bash or zsh)."""
    if shell not in SHELLS:
        raise ValueError(f"shell must be one of {', '.join(SHELLS)}, got {shell!r}")
    lines = ["declare -A _tracker_commands _tracker_options _tracker_valued _tracker_choices "
             "_tracker_words"]
    for path, sub in _walk(parser, "tracker"):
        commands = sorted(_subcommands(sub))
        options: list[str] = []
        valued: list[str] = []
        words: list[str] = []
        for action in sub._actions:
            if not action.option_strings:
                if action.choices and not isinstance(action, argparse._SubParsersAction):
                    words += map(str, action.choices)
                continue
            options += action.option_strings
            if action.nargs != 0:
                valued += action.option_strings
                if action.choices:
                    for opt in action.option_strings:
                        lines.append(_assign("_tracker_choices", f"{path}.{opt}",
                                             " ".join(map(str, action.choices))))
        lines.append(_assign("_tracker_commands", path, " ".join(commands)))
        lines.append(_assign("_tracker_options", path, " ".join(sorted(set(options)))))
        lines.append(_assign("_tracker_valued", path, " ".join(sorted(set(valued)))))
        if words:
            lines.append(_assign("_tracker_words", path, " ".join(words)))
    head = ("#compdef tracker\n# zsh completion for tracker (`tracker completion zsh`)\n"
            "autoload -U +X bashcompinit && bashcompinit\n" if shell == "zsh" else
            "# bash completion for tracker (`tracker completion bash`)\n")
    return head + "\n".join(lines) + "\n" + _BASH_BODY.lstrip("\n")


def _assign(array: str, key: str, value: str) -> str:
    # Keys are dotted command paths (``tracker.runs.finish``) with no characters that
    # need quoting: zsh, unlike bash, keeps quotes inside a subscript as part of the key.
    if shlex.quote(key) != key:
        raise ValueError(f"completion key needs quoting: {key!r}")
    return f"{array}[{key}]={shlex.quote(value)}"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _walk(parser: argparse.ArgumentParser, path: str
          ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for name, sub in _subcommands(parser).items():
        yield from _walk(sub, f"{path}.{name}")
