"""The built wheel ships the generated gRPC stubs (a defect of earlier SDKs: import failed)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

STUBS = [
    "webex_byova/media/_proto/__init__.py",
    "webex_byova/media/_proto/byova_common_pb2.py",
    "webex_byova/media/_proto/byova_common_pb2.pyi",
    "webex_byova/media/_proto/voicevirtualagent_pb2.py",
    "webex_byova/media/_proto/voicevirtualagent_pb2.pyi",
    "webex_byova/media/_proto/voicevirtualagent_pb2_grpc.py",
    "webex_byova/media/_proto/voicevirtualagent_pb2_grpc.pyi",
    "webex_byova/py.typed",
]


def test_wheel_contains_generated_stubs(tmp_path: Path) -> None:
    # --no-isolation: the build backend (hatchling) is in the dev environment; nothing downloaded.
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    wheels = list(tmp_path.glob("*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as zf:
        names = set(zf.namelist())
        for stub in STUBS:
            assert stub in names, stub
        committed = (ROOT / "src" / STUBS[3]).read_bytes()
        assert zf.read(STUBS[3]) == committed
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        text = zf.read(metadata).decode()
    assert "protobuf" in text
    assert "grpcio" in text
