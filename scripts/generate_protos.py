"""Generate the Python protobuf/gRPC modules and their ``.pyi`` types.

The one way generated code is made: runs ``grpc_tools.protoc`` with the
``python``, ``grpc_python``, ``mypy`` and ``mypy_grpc`` (mypy-protobuf)
generators over ``protos/`` into the client distribution
(``clients/python/src/tmws/pattern/v1``). The output is committed.

The package's ``__init__.py`` re-exports every top-level message and enum of
every ``.proto`` (and the enum values its ``*_pb2`` module defines as
constants) with ``__all__``, as temporalio's API packages do. The names come
from protoc's descriptor set of the same run, so a new message is importable as
``from tmws.pattern.v1 import NewMessage`` without editing anything by hand.
The gRPC stubs stay in the ``*_pb2_grpc`` modules.

Usage:
    python scripts/generate_protos.py          # regenerate in place
    python scripts/generate_protos.py --check  # exit 1 if the committed output is stale
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("tmws") / "pattern" / "v1"
OUTPUT_ROOT = ROOT / "clients" / "python" / "src"
INIT_DOC = '''"""Generated protobuf and gRPC modules of ``tmws.pattern.v1`` (do not edit).

Every request/response message, enum and enum value is importable from here, e.g.
``from tmws.pattern.v1 import ExecuteRequest, PatternType, PATTERN_TYPE_MEMORY``; the gRPC stubs
live in the ``*_pb2_grpc`` modules. Written by ``scripts/generate_protos.py``.
"""
'''


def _include_dirs() -> list[str]:
    import grpc_tools

    purelib = Path(sysconfig.get_paths()["purelib"])
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    # google/rpc/*.proto ship inside googleapis-common-protos.
    return [str(PROTO_ROOT), str(purelib), str(well_known)]


def _plugin(name: str) -> str:
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install mypy-protobuf")
    return found


def generate(out_root: Path) -> None:
    """Generate every ``protos/tmws/pattern/v1/*.proto`` into ``out_root``."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    args = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        *(f"-I{d}" for d in _include_dirs()),
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    (out_root / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        descriptors = Path(tmp) / "descriptors.pb"
        subprocess.run([*args, f"--descriptor_set_out={descriptors}"], check=True, cwd=ROOT)
        (out_root / PACKAGE_DIR / "__init__.py").write_text(init_text(descriptors.read_bytes()))


def init_text(descriptor_set: bytes) -> str:
    """The package ``__init__.py``: import and list every top-level message, enum and enum value of each file.

    Args:
        descriptor_set: A serialized ``FileDescriptorSet`` of the package's ``.proto`` files.
    """
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file
    package = ".".join(PACKAGE_DIR.parts)
    blocks: list[str] = []
    exported: list[str] = []
    for f in sorted(files, key=lambda f: f.name):
        values = [v.name for e in f.enum_type for v in e.value]  # module constants, as in the *_pb2 module
        names = sorted([m.name for m in f.message_type] + [e.name for e in f.enum_type] + values)
        if not names:
            continue
        module = f"{package}.{Path(f.name).stem}_pb2"
        blocks.append(f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")\n")
        exported += names
    listing = "".join(f'    "{n}",\n' for n in sorted(exported))
    return INIT_DOC + "\n" + "".join(blocks) + "\n__all__ = [\n" + listing + "]\n"


def _generated_files(root: Path) -> dict[str, Path]:
    base = root / PACKAGE_DIR
    return {p.name: p for p in base.iterdir() if p.is_file() and p.suffix in {".py", ".pyi"}}


def check() -> int:
    """Return 0 if the committed output equals a fresh generation, else 1."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        fresh = _generated_files(fresh_root)
        committed = _generated_files(OUTPUT_ROOT)
        stale = sorted(
            name
            for name in fresh.keys() | committed.keys()
            if name not in fresh
            or name not in committed
            or not filecmp.cmp(fresh[name], committed[name], shallow=False)
        )
    if stale:
        print("generated code is stale; run: python scripts/generate_protos.py", file=sys.stderr)
        for name in stale:
            print(f"  {PACKAGE_DIR / name}", file=sys.stderr)
        return 1
    print("generated code is current")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed output is stale")
    opts = parser.parse_args()
    if opts.check:
        return check()
    target = OUTPUT_ROOT / PACKAGE_DIR
    for path in target.glob("*_pb2*.py*"):
        path.unlink()
    generate(OUTPUT_ROOT)
    print(f"generated into {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
