#!/usr/bin/env python3
"""Generate the BYOVA gRPC stubs shipped in ``src/webex_byova/media/_proto``.

    python scripts/gen_proto.py          # regenerate in place
    python scripts/gen_proto.py --check  # regenerate into a temp dir; exit 1 on any difference

The ``.proto`` sources live in ``proto/com/cisco/wcc/ccai/media/v1``. They are compiled with the
flat include path Webex's published schema uses (``import "byova_common.proto"``), so descriptor
file names match the reference gateway. Generated imports are rewritten to be package-relative so
the stubs work as ``webex_byova.media._proto`` without touching ``sys.path``.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto" / "com" / "cisco" / "wcc" / "ccai" / "media" / "v1"
OUT_DIR = ROOT / "src" / "webex_byova" / "media" / "_proto"
PROTOS = ("byova_common.proto", "voicevirtualagent.proto")
MODULES = ("byova_common_pb2", "voicevirtualagent_pb2")
INIT = '''"""Generated protobuf/gRPC stubs for package ``com.cisco.wcc.ccai.media.v1``.

Do not edit: regenerate with ``python scripts/gen_proto.py``.

The stubs load on every protobuf major from 5.29 on (5, 6 and 7): protoc's own runtime pin is
removed by the generator and this floor is checked instead.
"""

from google.protobuf import __version__ as _protobuf_version

MIN_PROTOBUF = (5, 29)


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


if _release(_protobuf_version) < MIN_PROTOBUF:  # pragma: no cover - depends on the install
    raise ImportError(
        f"webex_byova's media server needs protobuf>=5.29, found {_protobuf_version}; "
        "run: pip install -U 'protobuf>=5.29'"
    )
'''
_IMPORT = re.compile(r"^import (" + "|".join(MODULES) + r") as (\w+)$", re.MULTILINE)
# protoc pins the runtime to its own major.minor (``ValidateProtobufRuntimeVersion``), which would
# refuse every protobuf older than the compiler (pipecat-ai needs protobuf<7). The descriptors it
# builds use only APIs that protobuf 5.29+ has, so the pin is replaced by our own floor, checked
# once in ``_proto/__init__.py``.
_RUNTIME_IMPORT = re.compile(
    r"^from google\.protobuf import runtime_version as _runtime_version\n", re.MULTILINE
)
_RUNTIME_CHECK = re.compile(
    r"^_runtime_version\.ValidateProtobufRuntimeVersion\(\n(?:  .*\n)*?\)\n", re.MULTILINE
)


def _generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(str(PROTO_DIR / p) for p in PROTOS),
    ]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    # byova_common has no service: its empty *_grpc modules are noise.
    for name in ("byova_common_pb2_grpc.py", "byova_common_pb2_grpc.pyi"):
        (out / name).unlink(missing_ok=True)
    for path in sorted(out.iterdir()):
        text = path.read_text()
        text = _IMPORT.sub(r"from . import \1 as \2", text)
        text = _RUNTIME_IMPORT.sub("", text)
        text = _RUNTIME_CHECK.sub("", text)
        path.write_text(text)
    (out / "__init__.py").write_text(INIT)


def _snapshot(directory: Path) -> dict[str, str]:
    return {
        p.name: p.read_text()
        for p in sorted(directory.iterdir())
        if p.is_file() and p.suffix in (".py", ".pyi")
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed stubs differ")
    args = parser.parse_args(argv)
    if not args.check:
        tmp = Path(tempfile.mkdtemp(prefix="byova-proto-"))
        try:
            _generate(tmp)
            if OUT_DIR.exists():
                shutil.rmtree(OUT_DIR)
            shutil.copytree(tmp, OUT_DIR)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"generated {len(_snapshot(OUT_DIR))} files in {OUT_DIR.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="byova-proto-") as tmpdir:
        _generate(Path(tmpdir) / "gen")
        fresh = _snapshot(Path(tmpdir) / "gen")
        current = _snapshot(OUT_DIR) if OUT_DIR.exists() else {}
    if fresh == current:
        print("proto stubs are up to date")
        return 0
    for name in sorted(set(fresh) | set(current)):
        if fresh.get(name) != current.get(name):
            diff = difflib.unified_diff(
                current.get(name, "").splitlines(),
                fresh.get(name, "").splitlines(),
                f"committed/{name}",
                f"generated/{name}",
                lineterm="",
                n=1,
            )
            print("\n".join(list(diff)[:40]), file=sys.stderr)
    print("proto stubs are stale: run `python scripts/gen_proto.py`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
