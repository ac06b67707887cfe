"""Admin commands warn where a new user would otherwise walk into a later failure."""

from __future__ import annotations

import inspect
import json

import pytest
import typer.main

from webex_byova.cli import app
from webex_byova.data_sources import BYOVA_SCHEMA_ID, DataSourcesResource
from webex_byova.errors import ConflictError

from .test_admin import as_json, run

URL = "https://va.example.com/byova"


def test_creating_a_second_data_source_for_a_url_warns(runner, emu_env, emulator) -> None:
    run(runner, emu_env, "auth", "login", "--auto-consent", "--timeout", "20")
    first = run(runner, emu_env, "datasources", "create", "--url", URL, "--json")
    assert "warning" not in first.stderr
    first_id = json.loads(first.stdout)["id"]
    second = run(runner, emu_env, "datasources", "create", "--url", URL, "--json")
    assert json.loads(second.stdout)["url"] == URL  # still created: Webex allows it
    assert "warning: a data source for https://va.example.com/byova" in second.stderr
    assert first_id in second.stderr
    assert f"byova datasources update {first_id}" in second.stderr
    # ...and the warning is true: the next --mint-token refuses to pick one of the two
    minted = run(
        runner, emu_env, "simulate", "--target", "127.0.0.1:9", "--mint-token", URL, code=1
    )
    assert "ConflictError" in minted.output
    # another URL does not warn
    other = run(runner, emu_env, "datasources", "create", "--url", URL + "/2", "--json")
    assert "warning" not in other.stderr


def test_webhooks_ensure_without_a_secret_warns(runner, emu_env) -> None:
    run(runner, emu_env, "auth", "login", "--auto-consent", "--timeout", "20")
    env = {**emu_env, "WEBEX_WEBHOOK_SECRET": ""}
    target = "https://hooks.example.com/webex"
    unsigned = run(runner, env, "webhooks", "ensure", target, "--json")
    assert "warning: no webhook secret" in unsigned.stderr
    assert "WEBEX_WEBHOOK_SECRET" in unsigned.stderr
    assert all(hook["secret"] is None for hook in json.loads(unsigned.stdout))
    signed = run(runner, env, "webhooks", "ensure", target, "--secret", "s3cret-value-123")
    assert "warning" not in signed.stderr


def _commands(group, path=()):
    for name, command in getattr(group, "commands", {}).items():
        yield (*path, name)
        yield from _commands(command, (*path, name))


@pytest.mark.parametrize("path", sorted(_commands(typer.main.get_command(app))), ids=" ".join)
def test_help_shows_flags_without_a_bool_metavar(runner, path) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "--help" in result.output


def test_help_still_shows_value_types(runner) -> None:
    result = runner.invoke(app, ["datasources", "create", "--help"], env={"COLUMNS": "200"})
    assert "<int>" in result.output
    assert "<str>" in result.output


def _doctor(runner, env, code: int = 0):
    rows = as_json(runner, env, "doctor", code=code)
    return {r["check"]: r for r in rows}


def test_doctor_compares_the_expected_url_with_the_data_source_url(runner, emu_env) -> None:
    assert "expected url" not in _doctor(runner, emu_env)
    same = {**emu_env, "WEBEX_DATA_SOURCE_URL": URL, "WEBEX_MEDIA_EXPECTED_URL": URL}
    assert _doctor(runner, same)["expected url"]["status"] == "ok"
    differ = {**same, "WEBEX_MEDIA_EXPECTED_URL": "https://va.example.com:443/byova"}
    row = _doctor(runner, differ, code=1)["expected url"]
    assert row["status"] == "fail"
    assert "claim_mismatch:url" in row["detail"]
    unchecked = {**emu_env, "WEBEX_DATA_SOURCE_URL": URL}
    assert _doctor(runner, unchecked)["expected url"]["status"] == "warn"
    only_server = {**emu_env, "WEBEX_MEDIA_EXPECTED_URL": URL}
    assert _doctor(runner, only_server)["expected url"]["status"] == "info"


def test_data_sources_create_defaults_to_the_byova_schema(emulator) -> None:
    for method in (DataSourcesResource.create, DataSourcesResource.acreate):
        param = inspect.signature(method).parameters["schema_id"]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY
        assert param.default == BYOVA_SCHEMA_ID
    from webex_byova import BYOVA

    with BYOVA(**_credentials(emulator)) as sdk:
        _login(sdk, emulator)
        client = sdk.get_client_for_org(emulator.org.org_id)
        ds = client.data_sources.create(url=URL, audience="BYOVAGateway", subject="callAudioData")
        assert ds.schema_id == BYOVA_SCHEMA_ID
        client.data_sources.create(url=URL, audience="BYOVAGateway", subject="callAudioData")
        with pytest.raises(ConflictError):
            client.data_sources.register_or_update(
                URL, audience="BYOVAGateway", subject="callAudioData"
            )


async def test_data_sources_acreate_defaults_to_the_byova_schema(emulator) -> None:
    from webex_byova import BYOVA

    async with BYOVA(**_credentials(emulator)) as sdk:
        _login(sdk, emulator)
        client = await sdk.aget_client_for_org(emulator.org.org_id)
        ds = await client.data_sources.acreate(
            url=URL, audience="BYOVAGateway", subject="callAudioData"
        )
        assert ds.schema_id == BYOVA_SCHEMA_ID


def _credentials(emulator):
    from webex_byova import IntegrationCredentials, ServiceAppCredentials

    return {
        "integration": IntegrationCredentials(
            emulator.integration.client_id, emulator.integration.client_secret
        ),
        "service_app": ServiceAppCredentials(
            emulator.service_app.client_id,
            emulator.service_app.client_secret,
            emulator.service_app.application_id,
        ),
        "config": emulator.config(),
    }


def _login(sdk, emulator) -> None:
    request = sdk.integration.create_authorization_request()
    import httpx

    location = httpx.get(request.url).headers["location"]
    sdk.integration.handle_callback(location)
    sdk.service_app.fetch_org_token(emulator.org.org_id)
