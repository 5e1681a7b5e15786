"""Regenerate the Python code for protos/ into tracker_proto/v1/.

Run: python scripts/gen_protos.py            (writes the checked-in files)
     python scripts/gen_protos.py --check    (exits 1 when the checked-in files drift)

protoc writes messages (``*_pb2.py``) and gRPC stubs (``*_pb2_grpc.py``); mypy-protobuf
writes their type stubs (``*_pb2.pyi``, ``*_pb2_grpc.pyi``), so stub calls are checked
by mypy on both sides. The proto package ``tracker.v1`` becomes the Python package
``tracker_proto.v1`` (imports rewritten), which the server and the client both import;
see docs/decisions/0001-wire-package.md. The output is never edited by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = ROOT / "tracker_proto"
OUT_DIR = PACKAGE_DIR / "v1"
PACKAGE = "tracker_proto.v1"

_IMPORT_RE = re.compile(r"^from tracker\.v1 import (\w+)", re.MULTILINE)
_INIT = (
    '"""Generated protobuf and gRPC code for tracker.v1 '
    '(do not edit; see scripts/gen_protos.py)."""\n'
)
_ROOT_INIT = (
    '"""Wire types of tracker: generated from protos/ by scripts/gen_protos.py '
    '(do not edit)."""\n'
)


def _plugin(name: str) -> str:
    """mypy-protobuf's plugins live beside the interpreter (a venv may not be on PATH)."""
    local = Path(sys.executable).parent / name
    return f"--plugin={name}={local}" if local.exists() else ""


def generate() -> dict[str, str]:
    """Run protoc and return {path relative to tracker_proto/: content} of the output."""
    from grpc_tools import protoc  # imported here: only the generator needs grpcio-tools

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *filter(None, (_plugin("protoc-gen-mypy"), _plugin("protoc-gen-mypy_grpc"))),
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out: dict[str, str] = {"__init__.py": _ROOT_INIT, "py.typed": "",
                               "v1/__init__.py": _INIT}
        for path in sorted((Path(tmp) / "tracker" / "v1").iterdir()):
            out[f"v1/{path.name}"] = _IMPORT_RE.sub(rf"from {PACKAGE} import \1",
                                                    path.read_text())
    return out


def _existing() -> dict[str, str]:
    if not PACKAGE_DIR.exists():
        return {}
    return {str(p.relative_to(PACKAGE_DIR)): p.read_text()
            for p in PACKAGE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when checked-in code drifts")
    args = parser.parse_args()
    files = generate()
    existing = _existing()
    if args.check:
        if existing != files:
            drift = sorted(set(existing) ^ set(files)) + sorted(
                k for k in set(existing) & set(files) if existing[k] != files[k]
            )
            print(f"generated code drifts from protos/: {drift}", file=sys.stderr)
            return 1
        return 0
    for stale in set(existing) - set(files):
        (PACKAGE_DIR / stale).unlink()
    for name, text in files.items():
        path = PACKAGE_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
