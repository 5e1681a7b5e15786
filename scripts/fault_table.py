"""Render the measured fault table (and the fuzzing tally) into docs/reliability.md.

The fault tests write one JSON file per fault to ``$TRACKER_FAULT_RESULTS`` (see
``tests/fault/support.py``); ``python scripts/fault_table.py [RESULTS_DIR]`` (default
``bench/results/faults``) replaces the blocks between the ``fault-table`` and
``fuzz-table`` markers of docs/reliability.md. ``--check`` exits 1 when the document
is not what the results render to.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
DEFAULT = ROOT / "bench" / "results" / "faults"
ORDER = ["server SIGKILL", "PostgreSQL sigkill", "PostgreSQL immediate",
         "network blackhole + reset", "PostgreSQL frozen", "COPY fails mid-transaction",
         "server SIGTERM", "client SIGKILL", "spool disk full", "two servers: one killed",
         "two servers: one frozen in its flush"]


def _extra(extra: dict[str, object]) -> str:
    return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in extra.items())


def fault_table(results: Path) -> str:
    """The markdown table of every ``<fault>.json`` in ``results``."""
    rows = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))
            if p.name != "fuzz.json"]
    rows.sort(key=lambda r: (ORDER.index(r["fault"]) if r["fault"] in ORDER else 99,
                             r["fault"]))
    lines = ["| fault | injected | writers | points logged | points stored | duplicates "
             "| lost | recovery (s) | also measured |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['fault']} | {r['injected']} | {r['writers']} | {r['points_logged']:,} "
            f"| {r['points_stored']:,} | {r['duplicates']} | {r['missing']} "
            f"| {r['recovery_s'] if r['recovery_s'] is not None else '—'} "
            f"| {_extra(r.get('extra', {}))} |")
    return "\n".join(lines)


def fuzz_table(results: Path) -> str:
    """Status codes per RPC of the fuzzing run (``fuzz.json``)."""
    path = results / "fuzz.json"
    if not path.exists():
        return "(no fuzzing results)"
    tally: dict[str, dict[str, int]] = json.loads(path.read_text())
    lines = ["| RPC | calls | statuses |", "|---|---|---|"]
    for method, codes in tally.items():
        spread = ", ".join(f"{c} {n}" for c, n in sorted(codes.items(), key=lambda x: -x[1]))
        lines.append(f"| `{method}` | {sum(codes.values())} | {spread} |")
    return "\n".join(lines)


def render(doc: str, results: Path) -> str:
    """``doc`` with both blocks replaced."""
    for name, body in (("fault-table", fault_table(results)),
                       ("fuzz-table", fuzz_table(results))):
        pattern = re.compile(rf"(<!-- {name}: begin -->\n).*?(<!-- {name}: end -->)", re.S)
        if not pattern.search(doc):
            raise SystemExit(f"{DOC}: no {name} markers")
        doc = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), doc)
    return doc


def main(argv: list[str]) -> int:
    """Write (or with ``--check`` verify) the tables."""
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    results = Path(args[0]) if args else DEFAULT
    text = DOC.read_text()
    new = render(text, results)
    if check:
        return 0 if new == text else 1
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
