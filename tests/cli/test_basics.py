"""Packaging of the CLI, help/version, and the pure helpers behind the commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from webex_byova._version import __version__
from webex_byova.cli import app
from webex_byova.cli._call import late_frames, percentile
from webex_byova.cli._env import config_for_base_url
from webex_byova.cli._render import scrub
from webex_byova.cli._serve import AppLoadError, load_app


def test_importing_the_cli_without_the_extra_names_it() -> None:
    code = (
        "import sys; sys.modules['typer'] = None\n"
        "from webex_byova._optional import MissingExtraError\n"
        "try:\n"
        "    import webex_byova.cli\n"
        "except MissingExtraError as exc:\n"
        "    print(exc.extra, exc.module)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["cli", "typer"]


def test_help_lists_every_command(runner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("demo", "serve", "simulate", "emulator", "auth", "orgs", "datasources"):
        assert name in result.output
    for name in ("schemas", "webhooks", "jws", "doctor"):
        assert name in result.output


def test_version(runner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"byova {__version__}"


def test_scrub_masks_tokens_and_secrets_but_not_status_fields() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    data = {
        "jws_token": jwt,
        "access_token": "A" * 40,
        "client_secret": "S" * 30,
        "nested": [{"refreshToken": "R" * 40, "status": "active"}],
        "note": f"Bearer {jwt}",
        "token_lifetime_minutes": 60,
        "token_expiry_time": "2030-01-01",
    }
    out = scrub(data)
    assert jwt not in str(out)
    assert "A" * 40 not in str(out)
    assert "S" * 30 not in str(out)
    assert "R" * 40 not in str(out)
    assert out["nested"][0]["status"] == "active"
    assert out["token_lifetime_minutes"] == 60
    assert out["token_expiry_time"] == "2030-01-01"
    assert scrub(data, show_tokens=True)["jws_token"] == jwt


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7
    assert percentile([], 50) is None


def test_late_frames_counts_frames_behind_schedule() -> None:
    on_time = [i * 0.02 for i in range(50)]
    assert late_frames(on_time, 0.02) == 0
    stalled = on_time[:10] + [t + 0.1 for t in on_time[10:]]
    assert late_frames(stalled, 0.02) == 40


def test_config_for_base_url() -> None:
    real = config_for_base_url(None)
    assert real.base_url == "https://webexapis.com/v1"
    emu = config_for_base_url("http://127.0.0.1:9/v1/")
    assert emu.token_url == "http://127.0.0.1:9/v1/access_token"
    assert emu.jwk_url == "http://127.0.0.1:9/idb/oauth2/v2/keys/verificationjwk"
    assert emu.extra_issuers == ("http://127.0.0.1:9/idb",)


def test_load_app_from_file_and_module(tmp_path, monkeypatch) -> None:
    app_file = tmp_path / "my_agent.py"
    app_file.write_text(
        "from webex_byova import BYOVAMediaServer\n"
        "voice = BYOVAMediaServer()\n"
        "def build():\n    return BYOVAMediaServer()\n"
    )
    from webex_byova.media.server import BYOVAMediaServer

    assert isinstance(load_app(str(app_file)), BYOVAMediaServer)
    assert isinstance(load_app(f"{app_file}:build"), BYOVAMediaServer)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(load_app("my_agent:voice"), BYOVAMediaServer)
    with pytest.raises(AppLoadError, match="no attribute"):
        load_app("my_agent:missing")
    with pytest.raises(AppLoadError, match="cannot import"):
        load_app("no_such_module_xyz")
    (tmp_path / "two.py").write_text(
        "from webex_byova import BYOVAMediaServer\na = BYOVAMediaServer()\nb = BYOVAMediaServer()\n"
    )
    with pytest.raises(AppLoadError, match="2 BYOVAMediaServer"):
        load_app(str(tmp_path / "two.py"))
