"""WebhookManager against the emulator (integration token), async and sync."""

from __future__ import annotations

import pytest

from webex_byova.client import BYOVA
from webex_byova.errors import AuthenticationError, NotFoundError, ValidationError
from webex_byova.testing import WebexEmulator

TARGET = "https://receiver.example.com/hooks"


async def test_async_crud_and_pagination(asdk: BYOVA, emu: WebexEmulator) -> None:
    hooks = asdk.webhooks
    created = [
        await hooks.acreate(
            name=f"hook {i}",
            target_url=f"{TARGET}/{i}",
            resource="serviceApp",
            event="authorized",
            secret="sec",
            filter=f"id={emu.service_app.application_id}",
        )
        for i in range(5)
    ]
    assert created[0].secret == "sec"
    assert created[0].filter == f"id={emu.service_app.application_id}"
    listed = [h.id async for h in hooks.alist(max=2)]
    assert listed == [h.id for h in created]
    assert emu.count("GET", "/webhooks") == 3  # 2 + 2 + 1, following Link rel=next
    got = await hooks.aget(created[0].id)
    assert got.target_url == f"{TARGET}/0"
    renamed = await hooks.aupdate(created[0].id, name="renamed")  # name-only: GET then PUT
    assert renamed.name == "renamed"
    assert renamed.target_url == f"{TARGET}/0"
    await hooks.adelete(created[0].id)
    with pytest.raises(NotFoundError):
        await hooks.aget(created[0].id)


async def test_validation_before_request(asdk: BYOVA, emu: WebexEmulator) -> None:
    emu.clear_requests()
    with pytest.raises(ValidationError):
        await asdk.webhooks.acreate(name="x", target_url="ftp://x", resource="r", event="e")
    with pytest.raises(ValidationError):
        await asdk.webhooks.aupdate("id", name="n", target_url=TARGET, status="paused")
    with pytest.raises(ValidationError):
        await asdk.webhooks.aget("a/b")
    with pytest.raises(ValidationError):
        [h async for h in asdk.webhooks.alist(max=0)]
    with pytest.raises(ValidationError):
        await asdk.webhooks.aensure_service_app_webhooks("not-a-url")
    assert emu.requests == []


async def test_ensure_is_idempotent_and_repairs(asdk: BYOVA, emu: WebexEmulator) -> None:
    hooks = await asdk.webhooks.aensure_service_app_webhooks(TARGET, secret="one")
    assert [(h.resource, h.event, h.secret) for h in hooks] == [
        ("serviceApp", "authorized", "one"),
        ("serviceApp", "deauthorized", "one"),
    ]
    emu.clear_requests()
    same = await asdk.webhooks.aensure_service_app_webhooks(TARGET, secret="one")
    assert [h.id for h in same] == [h.id for h in hooks]
    assert [r.method for r in emu.requests] == ["GET"]
    # Webex disabled one; the secret changed on the other
    emu.set_webhook_status(hooks[0].id, "inactive")
    emu.clear_requests()
    repaired = await asdk.webhooks.aensure_service_app_webhooks(TARGET, secret="two")
    assert [h.id for h in repaired] == [h.id for h in hooks]
    assert all(h.is_active and h.secret == "two" for h in repaired)
    assert [r.method for r in emu.requests] == ["GET", "PUT", "PUT"]
    assert {w.id: (w.status, w.secret) for w in emu.webhooks} == {
        hooks[0].id: ("active", "two"),
        hooks[1].id: ("active", "two"),
    }
    # re-enable without touching the secret
    emu.set_webhook_status(hooks[1].id, "inactive")
    await asdk.webhooks.aensure_service_app_webhooks(TARGET)
    assert {w.status for w in emu.webhooks} == {"active"}
    assert {w.secret for w in emu.webhooks} == {"two"}
    # a missing one is recreated; another target URL is a different pair
    await asdk.webhooks.adelete(hooks[1].id)
    again = await asdk.webhooks.aensure_service_app_webhooks(TARGET, secret="two")
    assert again[0].id == hooks[0].id
    assert again[1].id != hooks[1].id
    await asdk.webhooks.aensure_service_app_webhooks(TARGET + "/other", secret="two")
    assert len(emu.webhooks) == 4


async def test_integration_token_refreshed_once_on_401(asdk: BYOVA, emu: WebexEmulator) -> None:
    emu.expire_tokens("integration")
    hooks = await asdk.webhooks.aensure_service_app_webhooks(TARGET)
    assert len(hooks) == 2
    assert emu.count("POST", "/access_token") == 1
    emu.fail_next("/webhooks", status=401, times=2)
    with pytest.raises(AuthenticationError):
        await asdk.webhooks.aget(hooks[0].id)


def test_sync_methods(sdk: BYOVA, emu: WebexEmulator) -> None:
    hooks = sdk.webhooks
    made = hooks.create(
        name="h", target_url=TARGET, resource="serviceApp", event="deauthorized", secret="s"
    )
    assert hooks.get(made.id).event == "deauthorized"
    assert [h.id for h in hooks.list()] == [made.id]
    assert hooks.update(made.id, name="h2", target_url=TARGET, secret="s2").secret == "s2"
    ensured = hooks.ensure_service_app_webhooks(TARGET, secret="s2")
    assert ensured[1].id == made.id  # the existing deauthorized hook is reused
    hooks.delete(made.id)
    assert [h.id for h in hooks.list()] == [ensured[0].id]


async def test_sync_methods_inside_running_loop(sdk: BYOVA, emu: WebexEmulator) -> None:
    ensured = sdk.webhooks.ensure_service_app_webhooks(TARGET, secret="x")
    assert [h.id for h in sdk.webhooks.list(max=1)] == [h.id for h in ensured]
