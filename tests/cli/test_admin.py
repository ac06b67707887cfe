"""Admin commands against the emulator, the way a user runs them after `byova emulator`."""

from __future__ import annotations

import json

from webex_byova.cli import app


def run(runner, env, *args: str, code: int = 0):
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result


def as_json(runner, env, *args: str, code: int = 0):
    return json.loads(run(runner, env, *args, "--json", code=code).stdout)


def test_commands_need_credentials(runner) -> None:
    empty = dict.fromkeys(("WEBEX_INTEGRATION_CLIENT_ID", "WEBEX_SA_CLIENT_ID"), "")
    result = runner.invoke(app, ["orgs", "list"], env=empty)
    assert result.exit_code == 1
    assert "WEBEX_INTEGRATION_CLIENT_ID" in result.output


def test_login_status_refresh_and_orgs(runner, emu_env, emulator) -> None:
    status = as_json(runner, emu_env, "auth", "status")
    assert status["integration"] == {"authorized": False}
    login = as_json(runner, emu_env, "auth", "login", "--auto-consent", "--timeout", "20")
    assert login["status"] == "authorized"
    token = login["access_token"]
    assert "…" in token  # masked
    status = as_json(runner, emu_env, "auth", "status")
    assert status["integration"]["authorized"] is True
    assert status["integration"]["access_token"] == token
    shown = as_json(runner, emu_env, "auth", "status", "--show-tokens")
    full = shown["integration"]["access_token"]
    assert "…" not in full
    assert full.startswith(token.split("…")[0])
    refreshed = as_json(runner, emu_env, "auth", "refresh")
    assert refreshed["refreshed"] == "integration"
    org = emulator.org.org_id
    fetched = as_json(runner, emu_env, "auth", "refresh", "--org", org)
    assert fetched["org_id"] == org
    orgs = as_json(runner, emu_env, "orgs", "list")
    assert [(o["org_id"], o["expires_at"]) for o in orgs] == [(org, fetched["expires_at"])]
    human = run(runner, emu_env, "auth", "status")
    assert "Integration" in human.output
    assert full not in human.output


def test_datasource_lifecycle_and_jws(runner, emu_env, emulator) -> None:
    run(runner, emu_env, "auth", "login", "--auto-consent", "--timeout", "20")
    url = "https://va.example.com/byova"
    created = as_json(
        runner, emu_env, "datasources", "create", "--url", url, "--token-lifetime", "60"
    )
    ds_id = created["id"]
    assert created["url"] == url
    assert created["status"] == "active"
    assert "…" in created["jws_token"]
    rows = as_json(runner, emu_env, "datasources", "list")
    assert [r["id"] for r in rows] == [ds_id]
    table = run(runner, emu_env, "datasources", "list").output
    assert ds_id[:8] in table
    full = as_json(runner, emu_env, "datasources", "get", ds_id, "--show-tokens")["jws_token"]
    assert full == emulator.data_sources[0].jws_token

    # jws verify: valid for the right URL, invalid for another, exit code 1
    base = emu_env["WEBEX_BASE_URL"]
    ok = as_json(runner, emu_env, "jws", "verify", full, "--url", url, "--base-url", base)
    assert ok["valid"] is True
    assert ok["claims"]["com.cisco.datasource.url"] == url
    bad = as_json(
        runner,
        emu_env,
        "jws",
        "verify",
        full,
        "--url",
        "https://other/",
        "--base-url",
        base,
        code=1,
    )
    assert bad == {"valid": False, "reason": "claim_mismatch:url", "message": bad["message"]}
    untrusted = as_json(runner, {}, "jws", "verify", full, code=1)  # real Webex issuers only
    assert untrusted["reason"] == "issuer_not_allowed"

    updated = as_json(
        runner,
        emu_env,
        "datasources",
        "update",
        ds_id,
        "--status",
        "disabled",
        "--error-message",
        "maintenance",
    )
    assert updated["status"] == "disabled"
    assert updated["url"] == url
    extended = as_json(runner, emu_env, "datasources", "extend", ds_id, "--token-lifetime", "120")
    assert extended["token_lifetime_minutes"] == 120
    schemas = as_json(runner, emu_env, "schemas", "list")
    assert "5397013b-7920-4ffc-807c-e8a3e0a18f43" in [s["id"] for s in schemas]
    assert as_json(runner, emu_env, "datasources", "delete", ds_id) == {"deleted": ds_id}
    assert as_json(runner, emu_env, "datasources", "list") == []
    missing = run(runner, emu_env, "datasources", "get", ds_id, code=1)
    assert "NotFoundError" in missing.output


def test_webhooks_ensure_list_delete(runner, emu_env) -> None:
    run(runner, emu_env, "auth", "login", "--auto-consent", "--timeout", "20")
    target = "https://hooks.example.com/webex"
    hooks = as_json(runner, emu_env, "webhooks", "ensure", target, "--secret", "s3cret-value-123")
    assert sorted(h["event"] for h in hooks) == ["authorized", "deauthorized"]
    assert all(h["secret"] != "s3cret-value-123" for h in hooks)
    again = as_json(runner, emu_env, "webhooks", "ensure", target, "--secret", "s3cret-value-123")
    assert sorted(h["id"] for h in again) == sorted(h["id"] for h in hooks)  # idempotent
    listed = as_json(runner, emu_env, "webhooks", "list")
    assert sorted(h["id"] for h in listed) == sorted(h["id"] for h in hooks)
    for hook in hooks:
        assert as_json(runner, emu_env, "webhooks", "delete", hook["id"]) == {"deleted": hook["id"]}
    assert as_json(runner, emu_env, "webhooks", "list") == []


def test_doctor(runner, emu_env, tmp_path) -> None:
    env = {**emu_env, "WEBEX_DATA_SOURCE_URL": "https://va.example.com/byova"}
    env["WEBEX_MEDIA_TLS_CERT_FILE"] = str(tmp_path / "missing.pem")
    rows = {r["check"]: r for r in as_json(runner, env, "doctor", code=1)}
    assert rows["env WEBEX_INTEGRATION_CLIENT_ID"]["status"] == "ok"
    assert rows["tls WEBEX_MEDIA_TLS_CERT_FILE"]["status"] == "fail"
    assert rows["integration token"]["status"] == "warn"
    run(runner, emu_env, "auth", "login", "--auto-consent", "--timeout", "20")
    del env["WEBEX_MEDIA_TLS_CERT_FILE"]
    rows = {r["check"]: r for r in as_json(runner, env, "doctor", code=1)}
    assert rows["integration token"]["status"] == "ok"
    assert rows["data source"]["status"] == "fail"  # nothing registered for the URL yet
    run(runner, emu_env, "datasources", "create", "--url", env["WEBEX_DATA_SOURCE_URL"])
    rows = {r["check"]: r for r in as_json(runner, env, "doctor")}
    assert rows["data source"]["status"] == "ok"
    assert "token expires" in rows["data source"]["detail"]
