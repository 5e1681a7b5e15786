"""Regenerate the Python code for protos/ into tracker_client/pb/.

Run: python scripts/gen_protos.py            (writes the checked-in files)
     python scripts/gen_protos.py --check    (exits 1 when the checked-in files drift)

Generated modules are flattened into one package and their imports rewritten from
``tracker.v1`` to ``tracker_client.pb`` so the wire types live in one importable place
that both the client and the server use. The output is never edited by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_DIR = ROOT / "tracker_client" / "pb"
PACKAGE = "tracker_client.pb"

_IMPORT_RE = re.compile(r"^from tracker\.v1 import (\w+)", re.MULTILINE)
_INIT = (
    '"""Generated protobuf and gRPC code for tracker.v1 '
    '(do not edit; see scripts/gen_protos.py)."""\n'
)


def generate() -> dict[str, str]:
    """Run protoc and return {file name: content} of the rewritten output."""
    from grpc_tools import protoc  # imported here: only the generator needs grpcio-tools

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out: dict[str, str] = {"__init__.py": _INIT}
        for path in sorted((Path(tmp) / "tracker" / "v1").iterdir()):
            text = _IMPORT_RE.sub(rf"from {PACKAGE} import \1", path.read_text())
            out[path.name] = text
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when checked-in code drifts")
    args = parser.parse_args()
    files = generate()
    if args.check:
        existing = {p.name: p.read_text() for p in OUT_DIR.glob("*.py*")}
        if existing != files:
            drift = sorted(set(existing) ^ set(files)) + sorted(
                k for k in set(existing) & set(files) if existing[k] != files[k]
            )
            print(f"generated code drifts from protos/: {drift}", file=sys.stderr)
            return 1
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for stale in OUT_DIR.glob("*.py*"):
        if stale.name not in files:
            stale.unlink()
    for name, text in files.items():
        (OUT_DIR / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
