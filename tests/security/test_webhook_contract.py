"""Exact webhook behaviour the mutation run found unpinned.

Header handling (repeated ``X-Webex-Signature``, raw ASGI byte headers, Starlette headers),
each refusal's message, how a ``serviceApp`` delivery names its app, date and redelivery key,
and the webhook manager's sync and async calls passing every argument through to Webex.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.datastructures import Headers

from webex_byova._flow import Portal
from webex_byova._http import HttpClient
from webex_byova.client import BYOVA
from webex_byova.errors import ValidationError
from webex_byova.testing import WebexEmulator
from webex_byova.webhooks import (
    EVENTS_REMEMBERED,
    OrgEventLog,
    WebhookManager,
    WebhookSignatureError,
    event_position,
    parse_service_app_event,
    read_service_app_delivery,
    verify_webhook_signature,
)

SECRET = "contract-secret"
ORG = "0e3e6a1f-9a1b-4c1c-8f51-6f8a2f7b9c10"
BODY = b'{"resource":"serviceApp","event":"authorized","data":{"orgId":"%s"}}' % ORG.encode()


def _sig(body: bytes = BODY, algorithm: str = "sha1") -> str:
    return hmac.new(SECRET.encode(), body, getattr(hashlib, algorithm)).hexdigest()


# --------------------------------------------------------------------------- headers


def test_repeated_webex_signature_header_is_refused() -> None:
    good = f"sha256={_sig(algorithm='sha256')}"
    assert verify_webhook_signature(BODY, [("X-Webex-Signature", good)], SECRET)
    twice = [("X-Webex-Signature", good), ("x-webex-signature", good)]
    assert verify_webhook_signature(BODY, twice, SECRET) is False


def test_raw_asgi_byte_headers_are_read() -> None:
    raw = [(b"content-type", b"application/json"), (b"x-spark-signature", _sig().encode())]
    assert verify_webhook_signature(BODY, raw, SECRET)
    wrong = [(b"x-spark-signature", _sig(BODY + b"x").encode())]
    assert verify_webhook_signature(BODY, wrong, SECRET) is False
    latin = [(b"x-spark-signature", _sig().encode() + b"\xe9")]
    assert verify_webhook_signature(BODY, latin, SECRET) is False


def test_starlette_headers_keep_repeated_signatures() -> None:
    one = Headers(raw=[(b"x-spark-signature", _sig().encode())])
    assert verify_webhook_signature(BODY, one, SECRET)
    two = Headers(raw=[(b"x-spark-signature", _sig().encode())] * 2)
    assert verify_webhook_signature(BODY, two, SECRET) is False


def test_multi_items_headers_are_preferred_over_items() -> None:
    """A multi-dict whose ``items()`` keeps one value per name must not hide a repeat."""

    class OneValuePerName:
        def __init__(self, pairs: list[tuple[str, str]]) -> None:
            self.pairs = pairs

        def items(self) -> list[tuple[str, str]]:
            return list(dict(self.pairs).items())

        def multi_items(self) -> list[tuple[str, str]]:
            return list(self.pairs)

    headers = OneValuePerName([("X-Spark-Signature", _sig()), ("X-Spark-Signature", _sig())])
    assert verify_webhook_signature(BODY, headers, SECRET) is False
    assert verify_webhook_signature(BODY, OneValuePerName([("X-Spark-Signature", _sig())]), SECRET)


# --------------------------------------------------------------------------- refusals


def test_refusal_messages() -> None:
    with pytest.raises(ValueError, match="^a webhook secret is required to verify signatures$"):
        verify_webhook_signature(BODY, {}, "")
    with pytest.raises(TypeError, match="^raw_body must be the raw request bytes$"):
        verify_webhook_signature("text", {}, SECRET)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="^raw_body must be the raw request bytes$"):
        read_service_app_delivery(None, raw_body="text", secret=SECRET)  # type: ignore[arg-type]
    with pytest.raises(WebhookSignatureError) as e:
        read_service_app_delivery(None, raw_body=BODY, headers={}, secret=SECRET)
    assert (e.value.message, e.value.status_code) == ("webhook signature missing or invalid", 401)
    signed = {"X-Spark-Signature": hmac.new(SECRET.encode(), b"{", hashlib.sha1).hexdigest()}
    with pytest.raises(ValidationError, match="^webhook body is not valid JSON$"):
        read_service_app_delivery(None, raw_body=b"{", headers=signed, secret=SECRET)
    with pytest.raises(ValidationError, match="^payload does not match raw_body$"):
        read_service_app_delivery(
            {"x": 1}, raw_body=BODY, headers={"X-Spark-Signature": _sig()}, secret=SECRET
        )
    with pytest.raises(
        ValidationError,
        match=r"^a webhook secret is configured: pass raw_body \(the exact request bytes\) and "
        r"headers so the signature can be verified$",
    ):
        read_service_app_delivery(json.loads(BODY), secret=SECRET)
    with pytest.raises(ValidationError, match="^no webhook payload given$"):
        read_service_app_delivery(None)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "webhook payload must be a JSON object"),
        (
            {"resource": "messages", "event": "created"},
            "not a serviceApp webhook (resource='messages', event='created')",
        ),
        ({"resource": "serviceApp", "event": "created"}, "unsupported serviceApp event 'created'"),
        (
            {"resource": "serviceApp", "event": "authorized", "data": []},
            "serviceApp webhook 'data' must be a JSON object",
        ),
        ({"resource": "serviceApp", "event": "authorized"}, "serviceApp webhook carries no org id"),
        (
            {"resource": "serviceApp", "event": "authorized", "orgId": "nope"},
            "serviceApp webhook orgId is not an org id",
        ),
    ],
)
def test_parse_refusal_messages(payload: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_service_app_event(payload)
    assert info.value.message == message
    assert info.value.body is None


# --------------------------------------------------------------------------- event fields


def _event(**data: Any) -> dict[str, Any]:
    return {"resource": "serviceApp", "event": "authorized", "data": {"orgId": ORG, **data}}


@pytest.mark.parametrize("field", ["id", "applicationId", "appId"])
def test_application_id_fields(field: str) -> None:
    assert parse_service_app_event(_event(**{field: " C123 "})).application_id == "C123"


def test_application_id_field_order() -> None:
    event = parse_service_app_event(_event(id="A", applicationId="B", appId="C"))
    assert event.application_id == "A"
    assert parse_service_app_event(_event(applicationId="B", appId="C")).application_id == "B"


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("data", "authorizationDate"),
        ("data", "deauthorizationDate"),
        ("data", "created"),
        ("envelope", "created"),
    ],
)
def test_date_fields_and_redelivery_key(where: str, field: str) -> None:
    date = "2026-02-03T04:05:06.000Z"
    payload = _event(id="C123")
    (payload["data"] if where == "data" else payload)[field] = date
    event = parse_service_app_event(payload)
    assert event.authorization_date == date
    basis = f"c123|{ORG}|authorized|{date}"
    assert event.idempotency_key == hashlib.sha256(basis.encode()).hexdigest()


def test_date_field_order() -> None:
    payload = _event(authorizationDate="A", deauthorizationDate="B", created="C")
    payload["created"] = "D"
    assert parse_service_app_event(payload).authorization_date == "A"
    del payload["data"]["authorizationDate"]
    assert parse_service_app_event(payload).authorization_date == "B"
    del payload["data"]["deauthorizationDate"]
    assert parse_service_app_event(payload).authorization_date == "C"
    del payload["data"]["created"]
    assert parse_service_app_event(payload).authorization_date == "D"


def test_redelivery_key_without_a_date_is_the_canonical_payload() -> None:
    payload = _event(id="C123", extra={"b": 1, "a": [1, 2]})
    event = parse_service_app_event(payload)
    assert event.authorization_date is None
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    assert event.idempotency_key == hashlib.sha256(canonical.encode()).hexdigest()
    reordered = json.loads(json.dumps(payload))
    reordered["data"] = dict(reversed(list(reordered["data"].items())))
    assert parse_service_app_event(reordered).idempotency_key == event.idempotency_key
    changed = _event(id="C124", extra={"b": 1, "a": [1, 2]})
    assert parse_service_app_event(changed).idempotency_key != event.idempotency_key


def test_missing_data_falls_back_to_the_envelope_org() -> None:
    event = parse_service_app_event(
        {"resource": "serviceApp", "event": "deauthorized", "orgId": ORG, "data": None}
    )
    assert event.org_id == ORG
    assert event.org_id_source == "orgId"
    assert event.application_id is None


# --------------------------------------------------------------------------- the manager


def _sent(emu: WebexEmulator, method: str) -> list[Any]:
    return [r for r in emu.requests if r.method == method and r.path.startswith("/v1/webhooks")]


def test_sync_manager_passes_every_argument(sdk: BYOVA, emu: WebexEmulator) -> None:
    hooks = sdk.webhooks
    created = hooks.create(
        name="n",
        target_url="https://example.com/in",
        resource="serviceApp",
        event="authorized",
        secret="s1",
        filter="id=abc",
        owned_by="org",
    )
    assert (created.secret, created.filter, created.owned_by) == ("s1", "id=abc", "org")
    assert hooks.get(created.id).filter == "id=abc"
    renamed = hooks.update(created.id, name="renamed")
    assert (renamed.name, renamed.target_url) == ("renamed", "https://example.com/in")
    moved = hooks.update(created.id, target_url="https://example.com/moved")
    assert (moved.name, moved.target_url) == ("renamed", "https://example.com/moved")
    resumed = hooks.update(created.id, secret="s2", status="active")
    assert (resumed.secret, resumed.status) == ("s2", "active")
    assert _sent(emu, "PUT")[-1].json == {
        "name": "renamed",
        "targetUrl": "https://example.com/moved",
        "secret": "s2",
        "status": "active",
    }
    with pytest.raises(ValidationError, match="status must be 'active' or 'inactive'"):
        hooks.update(created.id, status="paused")
    hooks.create(
        name="mine", target_url="https://example.com/2", resource="serviceApp", event="deauthorized"
    )
    assert [w.id for w in hooks.list(owned_by="org")] == [created.id]
    assert len(list(hooks.list(max=1))) == 2
    assert any(r.query.get("max") == "1" for r in _sent(emu, "GET"))
    hooks.delete(created.id)
    assert [w.name for w in hooks.list()] == ["mine"]


async def test_async_manager_passes_every_argument(asdk: BYOVA, emu: WebexEmulator) -> None:
    hooks = asdk.webhooks
    created = await hooks.acreate(
        name="n",
        target_url="https://example.com/in",
        resource="serviceApp",
        event="authorized",
        secret="s1",
        filter="id=abc",
        owned_by="org",
    )
    assert (created.secret, created.filter, created.owned_by) == ("s1", "id=abc", "org")
    moved = await hooks.aupdate(created.id, target_url="https://example.com/moved", secret="s2")
    assert (moved.name, moved.target_url, moved.secret) == ("n", "https://example.com/moved", "s2")
    renamed = await hooks.aupdate(created.id, name="renamed", status="active")
    assert (renamed.name, renamed.target_url) == ("renamed", "https://example.com/moved")
    assert _sent(emu, "PUT")[-1].json == {
        "name": "renamed",
        "targetUrl": "https://example.com/moved",
        "status": "active",
    }
    assert [w.id async for w in hooks.alist(owned_by="org")] == [created.id]
    assert [w.id async for w in hooks.alist(owned_by="creator")] == []


@pytest.mark.parametrize("bad", ["", "  ", "a/b", None, 5])
def test_invalid_webhook_ids_are_refused_before_any_request(
    sdk: BYOVA, emu: WebexEmulator, bad: Any
) -> None:
    with pytest.raises(ValidationError, match="invalid webhook id"):
        sdk.webhooks.get(bad)
    assert _sent(emu, "GET") == []


# --------------------------------------------------------------------------- token sources


class _TokenSource:
    """A token source that only speaks the documented protocol (no flows), on its portal."""

    def __init__(self, emu: WebexEmulator, portal: Portal | None = None) -> None:
        self.emu = emu
        self.token = emu.issue_integration_token()["access_token"]
        self.refreshes = 0
        self.loops: list[Any] = []
        if portal is not None:
            self.portal = portal

    async def aget_access_token(self) -> str:
        self.loops.append(asyncio.get_running_loop())
        return str(self.token)

    async def arefresh(self) -> None:
        self.refreshes += 1
        self.token = self.emu.issue_integration_token()["access_token"]


def _manager(source: Any, emu: WebexEmulator, **kwargs: Any) -> tuple[WebhookManager, HttpClient]:
    http = HttpClient(emu.config())
    return WebhookManager(source, http, **kwargs), http


def test_protocol_token_source_sync_uses_its_portal_and_refreshes_on_401(emu: WebexEmulator):
    portal = Portal("test-webhooks-portal")
    source = _TokenSource(emu, portal)
    manager, http = _manager(source, emu)
    try:
        assert list(manager.list()) == []
        assert source.refreshes == 0
        assert source.loops == [portal.loop]
        emu.fail_next("/webhooks", status=401)
        created = manager.create(
            name="n", target_url="https://example.com/a", resource="serviceApp", event="authorized"
        )
        assert source.refreshes == 1
        assert set(source.loops) == {portal.loop}
        assert manager.get(created.id).id == created.id
        manager.delete(created.id)
        assert set(source.loops) == {portal.loop}  # get and delete ran on the portal too
        assert list(manager.list()) == []
    finally:
        http.close()
        portal.close()


def test_explicit_portal_wins_over_the_sources(emu: WebexEmulator) -> None:
    mine, theirs = Portal("test-mine"), Portal("test-theirs")
    source = _TokenSource(emu, theirs)
    manager, http = _manager(source, emu, portal=mine)
    try:
        manager.update(
            manager.create(
                name="n",
                target_url="https://example.com/a",
                resource="serviceApp",
                event="authorized",
            ).id,
            name="m",
        )
        manager.ensure_service_app_webhooks("https://example.com/a")
        assert set(source.loops) == {mine.loop}
    finally:
        http.close()
        mine.close()
        theirs.close()


async def test_protocol_token_source_async(emu: WebexEmulator) -> None:
    source = _TokenSource(emu)
    manager, http = _manager(source, emu)
    try:
        emu.fail_next("/webhooks", status=401)
        assert [w async for w in manager.alist()] == []
        assert source.refreshes == 1
        assert source.loops == [asyncio.get_running_loop()] * 2
    finally:
        await http.aclose()


# --------------------------------------------------------------------------- manager checks


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"name": "", "target_url": "https://x/y"},
            "a webhook needs a non-empty name and target_url",
        ),
        ({"name": "n", "target_url": ""}, "a webhook needs a non-empty name and target_url"),
        ({"target_url": "ftp://x/y"}, "target_url must be an http(s) URL, got 'ftp://x/y'"),
        ({"resource": ""}, "a webhook needs a resource and an event"),
        ({"event": ""}, "a webhook needs a resource and an event"),
    ],
)
def test_create_is_validated_before_any_request(
    sdk: BYOVA, emu: WebexEmulator, kwargs: dict[str, Any], message: str
) -> None:
    args = {
        "name": "n",
        "target_url": "https://x/y",
        "resource": "serviceApp",
        "event": "authorized",
        **kwargs,
    }
    with pytest.raises(ValidationError) as info:
        sdk.webhooks.create(**args)
    assert info.value.message == message
    assert _sent(emu, "POST") == []


def test_plain_http_targets_are_allowed(sdk: BYOVA) -> None:
    hook = sdk.webhooks.create(
        name="n", target_url="http://127.0.0.1:9/in", resource="serviceApp", event="authorized"
    )
    assert hook.target_url == "http://127.0.0.1:9/in"


@pytest.mark.parametrize("bad", [0, -1, True, "1", 1.5])
def test_list_page_size_must_be_a_positive_int(sdk: BYOVA, emu: WebexEmulator, bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        list(sdk.webhooks.list(max=bad))
    assert info.value.message == f"max must be a positive integer, got {bad!r}"
    assert _sent(emu, "GET") == []


async def test_async_ensure_passes_filter_and_name(asdk: BYOVA) -> None:
    hooks = await asdk.webhooks.aensure_service_app_webhooks(
        "https://example.com/in", secret="s", filter="id=abc", name="prefix"
    )
    assert [(h.name, h.filter, h.event) for h in hooks] == [
        ("prefix authorized", "id=abc", "authorized"),
        ("prefix deauthorized", "id=abc", "deauthorized"),
    ]
    again = await asdk.webhooks.aensure_service_app_webhooks(
        "https://example.com/in", secret="s", filter="id=abc", name="prefix"
    )
    assert [h.id for h in again] == [h.id for h in hooks]
    other = await asdk.webhooks.aensure_service_app_webhooks(
        "https://example.com/in", secret="s", filter="id=other", name="prefix"
    )
    assert {h.id for h in other}.isdisjoint(h.id for h in hooks)


# --------------------------------------------------------------------------- parsed fields


def test_parsed_event_keeps_envelope_id_raw_payload_and_logs_its_source(caplog) -> None:
    payload = {**_event(id="C123", authorizationDate="D"), "id": " hook-1 "}
    with caplog.at_level(logging.INFO, logger="webex_byova.webhooks"):
        event = parse_service_app_event(payload)
    assert event.webhook_id == "hook-1"
    assert event.raw == payload
    assert event.raw is not payload
    messages = [r.getMessage() for r in caplog.records if r.name == "webex_byova.webhooks"]
    assert messages == [f"serviceApp authorized event for org {ORG} (org id read from data.orgId)"]


def test_redelivery_key_without_an_app_id() -> None:
    event = parse_service_app_event(_event(authorizationDate="D"))
    assert event.application_id is None
    assert event.idempotency_key == hashlib.sha256(f"|{ORG}|authorized|D".encode()).hexdigest()


def test_redelivery_key_without_a_date_tolerates_non_json_values() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    payload = _event(id="C123", created=when)  # not text: no date, and not JSON either
    event = parse_service_app_event(payload)
    assert event.authorization_date is None
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    assert event.idempotency_key == hashlib.sha256(canonical.encode()).hexdigest()


# --------------------------------------------------------------------------- ensure


def test_sync_ensure_keeps_the_active_duplicate_and_logs_its_repairs(
    sdk: BYOVA, emu: WebexEmulator, caplog
) -> None:
    target = "https://example.com/in"
    hooks = sdk.webhooks
    first = hooks.create(
        name="custom name", target_url=target, resource="serviceApp", event="authorized"
    )
    second = hooks.create(
        name="other", target_url=target, resource="serviceApp", event="authorized"
    )
    emu.set_webhook_status(first.id, "inactive")
    with caplog.at_level(logging.INFO, logger="webex_byova.webhooks"):
        ensured = hooks.ensure_service_app_webhooks(target, secret="s", filter=None, name="prefix")
    authorized, deauthorized = ensured
    assert authorized.id == second.id  # the active one of the two is kept
    assert (authorized.name, authorized.secret) == ("other", "s")  # its name is kept
    assert (deauthorized.name, deauthorized.filter) == ("prefix deauthorized", None)
    messages = [r.getMessage() for r in caplog.records if r.name == "webex_byova.webhooks"]
    assert messages == [
        f"2 serviceApp authorized webhooks target {target}; keeping {second.id}",
        f"updated serviceApp authorized webhook {second.id} (re-enabled=False, "
        "secret changed=True)",
        f"created serviceApp deauthorized webhook {deauthorized.id}",
    ]
    # Re-enabling without a new secret keeps the stored one.
    hooks.delete(first.id)
    emu.set_webhook_status(second.id, "inactive")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="webex_byova.webhooks"):
        again = hooks.ensure_service_app_webhooks(target)
    assert (again[0].id, again[0].is_active) == (second.id, True)
    assert _sent(emu, "PUT")[-1].json["secret"] == "s"  # the stored secret is sent back
    assert not any("webhooks target" in r.getMessage() for r in caplog.records)  # one match
    assert {w.id: w.secret for w in emu.webhooks}[second.id] == "s"
    filtered = hooks.ensure_service_app_webhooks(target, secret="s", filter="id=x", name="f")
    assert [(h.name, h.filter) for h in filtered] == [
        ("f authorized", "id=x"),
        ("f deauthorized", "id=x"),
    ]


@pytest.mark.parametrize("blank", ["name", "target_url"])
def test_update_refuses_a_blank_name_or_target(sdk: BYOVA, emu: WebexEmulator, blank: str) -> None:
    hook = sdk.webhooks.create(
        name="n", target_url="https://example.com/a", resource="serviceApp", event="authorized"
    )
    fields = {"name": "n", "target_url": "https://example.com/a", blank: ""}
    with pytest.raises(ValidationError) as info:
        sdk.webhooks.update(hook.id, **fields)
    assert str(info.value) == "a webhook needs a non-empty name and target_url"
    assert _sent(emu, "PUT") == []


def test_inactive_status_is_ours_to_send(sdk: BYOVA, emu: WebexEmulator) -> None:
    """``inactive`` passes our check and goes to Webex (which decides); others do not."""
    hook = sdk.webhooks.create(
        name="n", target_url="https://example.com/a", resource="serviceApp", event="authorized"
    )
    with pytest.raises(ValidationError) as info:
        sdk.webhooks.update(hook.id, status="inactive")
    assert info.value.status_code == 400  # the emulator's answer, not our validation
    assert _sent(emu, "PUT")[-1].json["status"] == "inactive"


# --------------------------------------------------------------------------- event log form


def _log_doc(**overrides: Any) -> bytes:
    doc: dict[str, Any] = {
        "v": 1,
        "last_at": "2026-01-01T00:05:00+00:00",
        "last_rank": 1,
        "last_event": "deauthorized",
        "seen": ["a", "b"],
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


def test_event_log_round_trip_and_fields() -> None:
    log = OrgEventLog.from_json(_log_doc())
    assert log == OrgEventLog(datetime(2026, 1, 1, 0, 5, tzinfo=UTC), 1, "deauthorized", ("a", "b"))
    assert OrgEventLog.from_json(log.to_json()) == log
    empty = OrgEventLog.from_json(_log_doc(last_at=None, last_rank=0, last_event=None, seen=[]))
    assert empty == OrgEventLog()
    assert OrgEventLog.from_json(OrgEventLog().to_json()) == OrgEventLog()
    many = [f"k{i}" for i in range(EVENTS_REMEMBERED + 6)]
    assert OrgEventLog.from_json(_log_doc(seen=many)).seen == tuple(many[6:])
    authorized = OrgEventLog.from_json(_log_doc(last_rank=0, last_event="authorized"))
    assert (authorized.last_rank, authorized.last_event) == (0, "authorized")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[]", "not a webhook event log"),
        (b"{}", "not a webhook event log"),
        (_log_doc(v=2), "not a webhook event log"),
        (_log_doc(v="1"), "not a webhook event log"),
        (_log_doc(last_at="yesterday"), "malformed webhook event log"),
        (_log_doc(last_at=5), "malformed webhook event log"),
        (_log_doc(last_rank=2), "malformed webhook event log"),
        (_log_doc(last_rank=None), "malformed webhook event log"),
        (_log_doc(last_event="updated"), "malformed webhook event log"),
        (_log_doc(seen="ab"), "malformed webhook event log"),
        (_log_doc(seen=None), "malformed webhook event log"),
        (_log_doc(seen=["a", 1]), "malformed webhook event log"),
    ],
)
def test_event_log_refusals(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        OrgEventLog.from_json(data)
    assert str(info.value) == message


def _service_event(event: str, data: Any) -> Any:
    return parse_service_app_event(
        {
            "resource": "serviceApp",
            "event": event,
            "orgId": ORG,
            "created": "2020-01-01",
            "data": data,
        }
    )


def test_event_position_reads_the_data_dates_in_order() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert event_position(_service_event("authorized", {"orgId": ORG})) is None
    created = {"orgId": ORG, "created": "2026-01-01T00:00:00Z"}
    assert event_position(_service_event("authorized", created)) == (t0, 0)
    both = {**created, "authorizationDate": "2026-01-01T00:01:00Z"}
    assert event_position(_service_event("authorized", both)) == (
        datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
        0,
    )
    ended = {**both, "deauthorizationDate": "2026-01-01T00:02:00Z"}
    assert event_position(_service_event("deauthorized", ended)) == (
        datetime(2026, 1, 1, 0, 2, tzinfo=UTC),
        1,
    )
    # an authorization ignores a deauthorization date; a deauthorization falls back
    assert event_position(_service_event("authorized", ended))[0].minute == 1  # type: ignore[index]
    assert event_position(_service_event("deauthorized", both)) == (
        datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
        1,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01T02:00:00+02:00", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T00:00:00", datetime(2026, 1, 1, tzinfo=UTC)),  # naive: UTC
        (" 2026-01-01T00:00:00Z ", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T00:00:00.000000000000000000000000000000000000000+00:00", None),  # 65
        ("2026-01-01T00:00:00.00000000000000000000000000000000000000+00:00", "ok"),  # 64
        ("   ", None),
        ("", None),
        ("soon", None),
        (1767225600, None),
    ],
)
def test_event_dates(value: Any, expected: Any) -> None:
    position = event_position(_service_event("authorized", {"orgId": ORG, "created": value}))
    if expected is None:
        assert position is None
    elif expected == "ok":
        assert position is not None
        assert position[0].utcoffset() is not None
    else:
        assert position == (expected, 0)
        assert position[0].tzinfo is UTC


def _dated(event: str, minute: int, key: str | None = None) -> Any:
    moment = f"2026-01-01T00:{minute:02d}:00Z"
    dated = _service_event(event, {"orgId": ORG, "authorizationDate": moment})
    return dated if key is None else dated.model_copy(update={"idempotency_key": key})


def test_event_log_after_and_disposition() -> None:
    t = [datetime(2026, 1, 1, 0, m, tzinfo=UTC) for m in range(4)]
    first = _dated("authorized", 1)
    log = OrgEventLog()
    assert log.disposition(first) == "apply"
    log = log.after(first)
    assert log == OrgEventLog(t[1], 0, "authorized", (first.idempotency_key,))
    assert log.disposition(first) == "duplicate"
    assert log.disposition(_dated("authorized", 1, key="another delivery")) == "stale"  # equal
    assert log.disposition(_dated("authorized", 0, key="older")) == "stale"
    assert log.disposition(_dated("deauthorized", 1, key="ends it")) == "apply"
    assert log.disposition(_dated("authorized", 2, key="newer")) == "apply"
    ended = log.after(_dated("deauthorized", 1, key="ends it"))
    assert ended == OrgEventLog(t[1], 1, "deauthorized", (first.idempotency_key, "ends it"))
    undated = _service_event("authorized", {"orgId": ORG}).model_copy(
        update={"idempotency_key": "undated"}
    )
    assert ended.disposition(undated) == "apply"
    kept = ended.after(undated)
    assert kept == OrgEventLog(t[1], 1, "authorized", (first.idempotency_key, "ends it", "undated"))
    assert OrgEventLog().after(undated) == OrgEventLog(None, 0, "authorized", ("undated",))
    full = OrgEventLog(seen=tuple(f"k{i}" for i in range(EVENTS_REMEMBERED)))
    assert full.after(undated).seen == (*full.seen[1:], "undated")


def test_event_log_stored_form() -> None:
    log = OrgEventLog(datetime(2026, 1, 1, 0, 1, tzinfo=UTC), 1, "deauthorized", ("a", "b"))
    assert log.to_json() == (
        b'{"v":1,"last_at":"2026-01-01T00:01:00+00:00","last_rank":1,'
        b'"last_event":"deauthorized","seen":["a","b"]}'
    )
    assert OrgEventLog().to_json() == (
        b'{"v":1,"last_at":null,"last_rank":0,"last_event":null,"seen":[]}'
    )


def test_a_naive_event_date_is_utc_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30, no daylight saving
    time.tzset()
    try:
        data = {"orgId": ORG, "created": "2026-01-01T00:00:00"}
        position = event_position(_service_event("authorized", data))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert position == (datetime(2026, 1, 1, tzinfo=UTC), 0)
