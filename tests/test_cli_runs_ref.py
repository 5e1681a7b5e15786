"""``tracker``: runs named by id prefix or name, ``--version``, shell completion."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.query_support import log_points, new_experiment, new_run
from tests.support import Api, ServerThread
from tracker_client.cli import main
from tracker_client.cli._common import RESOLVE_LIST_MAX
from tracker_proto.v1 import experiments_pb2 as ex

pytestmark = pytest.mark.timeout(60)


def cli(server: ServerThread, capsys: pytest.CaptureFixture[str], *args: str
        ) -> tuple[int, str, str]:
    code = main(["--server", server.address, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_by_unique_prefix_or_name(server: ServerThread, api: Api,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    exp = new_experiment(api, "refs")
    other = new_experiment(api, "refs-other")
    a = new_run(api, exp, name="baseline", params={"lr": "0.1"})
    b = new_run(api, other, name="wide", params={"lr": "0.2"})
    log_points(api, a, "loss", [0, 1], [1.0, 0.5])
    prefix = a[:8]
    assert not b.startswith(prefix)
    code, out, _ = cli(server, capsys, "runs", "show", prefix)
    assert code == 0 and a in out and "baseline" in out
    code, out, err = cli(server, capsys, "runs", "show", a[:4].upper())  # case-insensitive
    # Another run of this database may share these 4 digits: then it is listed.
    assert (code == 0 and a in out) or (code == 2 and a in err), (code, out, err)
    code, out, _ = cli(server, capsys, "runs", "show", "wide", "--json")
    assert code == 0 and b in out
    # A prefix with the dashes of the printed id works too.
    code, out, _ = cli(server, capsys, "metrics", a[:13])
    assert code == 0 and "loss" in out
    code, out, _ = cli(server, capsys, "compare", "baseline", b[:10], "--json")
    assert code == 0 and a in out and b in out
    code, out, _ = cli(server, capsys, "runs", "finish", "baseline", "--status", "finished")
    assert code == 0 and "finished" in out
    run = api.experiments.GetRun(ex.GetRunRequest(run_id=a)).run
    assert run.status == ex.RUN_STATUS_FINISHED


def test_ambiguous_or_unknown_reference_is_exit_code_2(
    server: ServerThread, api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    e1 = new_experiment(api, "amb-1")
    e2 = new_experiment(api, "amb-2")
    r1 = new_run(api, e1, name="same")
    r2 = new_run(api, e2, name="same")
    code, _, err = cli(server, capsys, "runs", "show", "same")
    assert code == 2
    assert "matches 2 runs" in err and r1 in err and r2 in err
    # More matches than the list shows: the search stops there, so no exact count.
    many = new_experiment(api, "amb-many")
    for _ in range(RESOLVE_LIST_MAX + 5):
        new_run(api, many, name="crowd")
    code, _, err = cli(server, capsys, "runs", "show", "crowd")
    assert code == 2 and f"matches more than {RESOLVE_LIST_MAX} runs" in err
    assert err.count("(running)") == RESOLVE_LIST_MAX
    code, _, err = cli(server, capsys, "runs", "show", "no-such-run")
    assert code == 2 and "no run with id prefix or name 'no-such-run'" in err
    # Names with quotes and backslashes go into the filter as literals.
    odd = new_run(api, e1, name='we"ird\\name')
    code, out, _ = cli(server, capsys, "runs", "show", 'we"ird\\name')
    assert code == 0 and odd in out


def test_id_prefix_search_uses_uuid_ranges_in_the_filter(
    server: ServerThread, api: Api
) -> None:
    exp = new_experiment(api, "ranges")
    rid = new_run(api, exp)
    low = rid[:9] + "0000-0000-0000-000000000000"
    high = rid[:9] + "ffff-ffff-ffff-ffffffffffff"
    text = f'run_id >= "{low}" and run_id <= "{high}"'
    found = api.experiments.SearchRuns(ex.SearchRunsRequest(experiment_ids=[exp],
                                                            filter=text)).runs
    assert [r.run_id for r in found] == [rid]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"tracker {importlib.metadata.version('tracker')}"


def complete(shell: str, script: Path, words: list[str]) -> list[str]:
    """Candidates the generated script offers for the last word of ``words``."""
    line = " ".join(words)
    if shell == "bash":
        program = (f"source {script}\nCOMP_WORDS=({line})\n"
                   f"COMP_CWORD={len(words) - 1}\n"
                   + ('COMP_WORDS+=("")\n' if words[-1] == "" else "")
                   + '_tracker_complete\nprintf "%s\\n" "${COMPREPLY[@]}"\n')
        cmd = ["bash", "--norc", "--noprofile", "-c", program]
    else:
        # zsh loads the same functions through bashcompinit; drive them as bash would.
        program = (f"autoload -U compinit && compinit -u -D\nsource {script}\n"
                   f"COMP_WORDS=({line})\nCOMP_CWORD={len(words) - 1}\n"
                   + ('COMP_WORDS+=("")\n' if words[-1] == "" else "")
                   + '_tracker_complete\nprint -l -- "${COMPREPLY[@]}"\n')
        cmd = ["zsh", "-f", "-c", program]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, done.stderr
    found = [c for c in done.stdout.splitlines() if c]
    if shell == "zsh":
        # bashcompinit's compgen leaves matching the typed prefix to zsh's compadd.
        found = [c for c in found if c.startswith(words[-1])]
    return sorted(found)


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_complete_commands_options_and_choices(
    shell: str, tmp_path: Path
) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (.ci/run installs it)")
    out = subprocess.run([sys.executable, "-m", "tracker_client.cli", "completion", shell],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    script = tmp_path / f"tracker.{shell}"
    script.write_text(out)
    assert complete(shell, script, ["tracker", "ru"]) == ["runs"]
    assert complete(shell, script, ["tracker", "runs", ""]) == ["finish", "ls", "show"]
    assert "--status" in complete(shell, script, ["tracker", "runs", "finish", "--s"])
    assert complete(shell, script, ["tracker", "runs", "finish", "--status", "f"]) == [
        "failed", "finished"]
    # Global options with values are skipped when finding the subcommand.
    assert complete(shell, script, ["tracker", "--server", "h:1", "sync", "--d"]) == [
        "--dry-run"]
    assert complete(shell, script, ["tracker", "completion", ""]) == ["bash", "zsh"]


def test_completion_refuses_other_shells(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["completion", "fish"])
    assert done.value.code == 2
    assert "invalid choice: 'fish'" in capsys.readouterr().err
