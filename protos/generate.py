"""Generate the Python modules of ``protos/`` into the ``ecco_proto`` package (``handlers/ecco_proto``).

Usage: ``python protos/generate.py [--out DIR] [--check]`` (``make protos`` runs it).

The generated modules are git-ignored; ``make setup`` produces them. ``ecco_proto`` needs only the
protobuf runtime (and grpcio for the ``*_pb2_grpc`` stubs), so both the TorchServe handler (the model
archive carries ``handlers/``) and the torch-free client import it. ``google/rpc/status.proto`` is
vendored for other languages only: Python takes ``google.rpc.status_pb2`` from googleapis-common-protos.

protoc emits absolute imports named after the proto paths (``from ecco.v1 import ecco_pb2``); they are
rewritten to ``from ecco_proto.ecco.v1 import ecco_pb2`` so the package works wherever it is installed.
``--check`` compares freshly generated code with DIR and exits 1 when it is stale.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from pathlib import Path

PROTOS = Path(__file__).resolve().parent
DEFAULT_OUT = PROTOS.parent / "handlers" / "ecco_proto"
PACKAGE = "ecco_proto"
#: (proto file relative to protos/, whether it defines a gRPC service)
SOURCES = (
    ("ecco/v1/ecco.proto", False),
    ("torchserve/inference.proto", True),
    ("torchserve/management.proto", True),
)
#: the proto packages (top-level import names) generated here; imports of these are made package-relative
LOCAL_ROOTS = ("ecco", "torchserve")


def _protoc(args: list[str]) -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    code = protoc.main(["grpc_tools.protoc", f"-I{PROTOS}", f"-I{include}", *args])
    if code != 0:
        raise SystemExit(f"protoc failed ({code}) for {args[-1]}")


def _fix_imports(path: Path) -> None:
    roots = "|".join(LOCAL_ROOTS)
    text = path.read_text()
    fixed = re.sub(rf"^from ({roots})((?:\.\w+)*) import ", rf"from {PACKAGE}.\1\2 import ", text, flags=re.M)
    fixed = re.sub(rf"^import ({roots})((?:\.\w+)*)$", rf"import {PACKAGE}.\1\2", fixed, flags=re.M)
    path.write_text(fixed)


def generate(out: Path) -> list[Path]:
    """Write the generated modules under ``out``; return the files written (relative to ``out``)."""
    written: list[Path] = []
    for source, has_service in SOURCES:
        args = [f"--python_out={out}", f"--pyi_out={out}"]
        if has_service:
            args.append(f"--grpc_python_out={out}")
        _protoc([*args, str(PROTOS / source)])
        stem = Path(source).with_suffix("")
        suffixes = ["_pb2.py", "_pb2.pyi"] + (["_pb2_grpc.py"] if has_service else [])
        for suffix in suffixes:
            generated = out / f"{stem}{suffix}"
            _fix_imports(generated)
            written.append(generated.relative_to(out))
        # every directory on the way is a regular package
        for parent in stem.parents:
            if parent != Path("."):
                init = out / parent / "__init__.py"
                init.touch()
                written.append(init.relative_to(out))
    return sorted(set(written))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the ecco_proto package directory")
    parser.add_argument("--check", action="store_true", help="exit 1 if the code in --out is stale")
    args = parser.parse_args(argv)
    if not args.check:
        args.out.mkdir(parents=True, exist_ok=True)
        files = generate(args.out)
        print(f"generated {len(files)} files into {args.out}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
        stale = [f for f in files if not (args.out / f).exists() or not filecmp.cmp(Path(tmp) / f, args.out / f, False)]
    if stale:
        print(f"stale generated code in {args.out}: {', '.join(map(str, stale))}; run `make protos`", file=sys.stderr)
        return 1
    print(f"{args.out} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
