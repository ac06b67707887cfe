"""The CLI's default token store is kept per environment (base URL + Integration client id).

It used to be one SQLite file per user keyed only ``integration`` / ``org:<uuid>``: after an
emulator restart or between two Integrations, `auth status` reported another environment's
token as valid and `orgs list` showed another environment's orgs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from webex_byova.cli import app
from webex_byova.cli._admin import default_store_path, legacy_store_path
from webex_byova.cli._emulator_cmd import emulator_info, start_emulator


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user data directory (platformdirs honours XDG_DATA_HOME), away from the real one."""
    home = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


def _env(emu, data_home: Path) -> dict[str, str | None]:
    # no WEBEX_TOKEN_STORE: the CLI's default store
    return {**emulator_info(emu)["env"], "WEBEX_TOKEN_STORE": None, "XDG_DATA_HOME": str(data_home)}


def _json(runner, env, *args: str):
    result = runner.invoke(app, [*args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _login(runner, env) -> None:
    result = runner.invoke(app, ["auth", "login", "--auto-consent", "--timeout", "20"], env=env)
    assert result.exit_code == 0, result.output


def test_two_environments_do_not_see_each_others_tokens(runner, data_home) -> None:
    first, second = start_emulator(), start_emulator()
    try:
        env_a, env_b = _env(first, data_home), _env(second, data_home)
        _login(runner, env_a)
        _json(runner, env_a, "auth", "refresh", "--org", first.org.org_id)
        assert _json(runner, env_a, "auth", "status")["integration"]["authorized"] is True
        assert [o["org_id"] for o in _json(runner, env_a, "orgs", "list")] == [first.org.org_id]
        assert _json(runner, env_b, "auth", "status")["integration"] == {"authorized": False}
        assert _json(runner, env_b, "orgs", "list") == []
        # the same emulator with another Integration (client id) is another environment too
        other_client = {**env_a, "WEBEX_INTEGRATION_CLIENT_ID": "C" + "0" * 64}
        assert _json(runner, other_client, "auth", "status")["integration"] == {"authorized": False}
        files = sorted(p.name for p in (data_home / "webex-byova" / "environments").iterdir())
        assert len([f for f in files if f.endswith(".db")]) == 3  # one per environment
    finally:
        first.stop()
        second.stop()


def test_an_emulator_restart_on_the_same_port_starts_clean(runner, data_home) -> None:
    emu = start_emulator()
    port = emu.port
    try:
        _login(runner, _env(emu, data_home))
        assert _json(runner, _env(emu, data_home), "auth", "status")["integration"]["authorized"]
    finally:
        emu.stop()
    again = start_emulator(port=port)
    try:
        assert again.base_url == emu.base_url
        status = _json(runner, _env(again, data_home), "auth", "status")
        assert status["integration"] == {"authorized": False}
    finally:
        again.stop()


def test_default_store_path_is_keyed_by_base_url_and_client_id(data_home) -> None:
    real = default_store_path("https://webexapis.com/v1", "Cabc")
    assert real.parent == data_home / "webex-byova" / "environments"
    assert real.name.startswith("webexapis.com-")
    assert default_store_path("https://webexapis.com/v1/", "Cabc") == real
    assert default_store_path("https://webexapis.com/v1", "Cother") != real
    emu = default_store_path("http://127.0.0.1:8900/v1", "Cabc")
    assert emu.name.startswith("127.0.0.1_8900-")
    assert emu != real


def test_an_explicit_store_is_read_as_before(runner, data_home, tmp_path) -> None:
    """WEBEX_TOKEN_STORE stays exactly what the user chose (shared with BYOVA.from_env)."""
    emu = start_emulator()
    try:
        url = f"sqlite:///{tmp_path / 'mine.db'}"
        env = {**_env(emu, data_home), "WEBEX_TOKEN_STORE": url}
        _login(runner, env)
        assert _json(runner, env, "auth", "status")["integration"]["authorized"] is True
        assert not (data_home / "webex-byova" / "environments").exists()
    finally:
        emu.stop()


def test_doctor_mentions_the_legacy_single_file(runner, data_home) -> None:
    legacy = legacy_store_path()
    assert legacy == data_home / "webex-byova" / "tokens.db"
    emu = start_emulator()
    try:
        env = _env(emu, data_home)
        rows = {r["check"]: r for r in _json(runner, env, "doctor")}
        assert "legacy token store" not in rows
        legacy.parent.mkdir(parents=True, exist_ok=True)
        legacy.write_bytes(b"")  # what an earlier version left behind
        rows = {r["check"]: r for r in _json(runner, env, "doctor")}
        assert rows["legacy token store"]["status"] == "info"
        assert "no longer read" in rows["legacy token store"]["detail"]
    finally:
        emu.stop()
