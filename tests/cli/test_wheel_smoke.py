"""Packaging proof: a fresh virtualenv from the BUILT WHEEL (not the source tree): the core
imports without extras, and with ``[media,cli]`` the `byova demo` call runs."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

from .conftest import ROOT


def test_fresh_venv_from_wheel_runs_byova_demo(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:  # pyproject says Apache-2.0: the text ships too
        names = archive.namelist()
        (license_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        license_text = archive.read(license_name).decode()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
    assert license_text == (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in license_text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in license_text
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    work = tmp_path / "work"  # away from the source tree: nothing can import src/
    work.mkdir()
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet"]
    pip.append("--disable-pip-version-check")
    # PyPI is reachable from CI; the pip cache makes the dependencies quick to install.
    # 1) the core alone: `pip install <wheel>` then `import webex_byova` works, and a media
    #    name says which extra to install instead of failing obscurely.
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=240)
    core_check = (
        "import webex_byova, importlib.util as u\n"
        "assert u.find_spec('grpc') is None and u.find_spec('typer') is None\n"
        "print(webex_byova.BYOVA.__name__, webex_byova.BYOVAConfig().region)\n"
        "try:\n"
        "    webex_byova.BYOVAMediaServer\n"
        "except webex_byova.MissingExtraError as exc:\n"
        "    print('missing extra:', exc.extra)\n"
    )
    core = subprocess.run(
        [str(bin_dir / "python"), "-c", core_check],
        cwd=work,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert core.returncode == 0, core.stderr
    assert core.stdout.split("\n")[:2] == ["BYOVA us", "missing extra: media"]
    # 2) with the extras the CLI and the media server come along.
    subprocess.run([*pip, f"{wheel}[media,cli]"], check=True, capture_output=True, timeout=240)
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import webex_byova; print(webex_byova.__file__)"],
        cwd=work,
        env=clean_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(env_dir) in where.stdout
    helped = subprocess.run(
        [str(bin_dir / "byova"), "--help"],
        cwd=work,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0, helped.stderr
    assert "demo" in helped.stdout
    demo = subprocess.run(
        [str(bin_dir / "byova"), "demo"],
        cwd=work,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "call OK" in demo.stdout
    assert (work / "demo-output" / "bot_audio.wav").stat().st_size > 40_000
