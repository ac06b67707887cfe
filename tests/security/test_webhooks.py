"""Webhook signatures refuse every near miss, and the webhook handler fails closed.

Every bad signature in the older tests differed from the right one at its start, so a check
that compared only a prefix (or stopped at the shorter value) passed them all. Here each
signature scheme Webex uses is checked against the right value changed at its end, truncated,
cut to a short prefix and extended; the BYOVA handler (sync and async) is checked the same way
end to end, and must not act on, nor remember, a delivery it refused or failed to process.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from webex_byova.client import BYOVA
from webex_byova.errors import WebexBYOVAError
from webex_byova.models import ServiceAppAuthorizedResult
from webex_byova.testing import WebexEmulator
from webex_byova.webhooks import (
    WebhookSignatureError,
    read_service_app_delivery,
    verify_webhook_signature,
)

from .conftest import WEBHOOK_SECRET, near_misses

BODY = b'{"resource":"serviceApp","event":"authorized","data":{"orgId":"x"}}'


def _hex(body: bytes, algorithm: str, secret: str = WEBHOOK_SECRET) -> str:
    return hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).hexdigest()


#: (header, how the value is written, algorithm) for every scheme accepted.
SCHEMES: dict[str, tuple[str, Callable[[str], str], str]] = {
    "spark_sha1": ("X-Spark-Signature", lambda h: h, "sha1"),
    "webex_sha256": ("X-Webex-Signature", lambda h: f"sha256={h}", "sha256"),
    "webex_sha512": ("X-Webex-Signature", lambda h: f"sha512={h}", "sha512"),
    "webex_bare_sha256": ("X-Webex-Signature", lambda h: h, "sha256"),
    "webex_bare_sha512": ("X-Webex-Signature", lambda h: h, "sha512"),
}
MISSES = sorted(near_misses("0" * 40))


def _cases() -> Iterator[tuple[str, str]]:
    for scheme in sorted(SCHEMES):
        for miss in MISSES:
            yield scheme, miss


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_right_signature_is_accepted(scheme: str) -> None:
    header, write, algorithm = SCHEMES[scheme]
    assert verify_webhook_signature(BODY, {header: write(_hex(BODY, algorithm))}, WEBHOOK_SECRET)


@pytest.mark.parametrize(("scheme", "miss"), list(_cases()))
def test_near_miss_signature_is_refused(scheme: str, miss: str) -> None:
    header, write, algorithm = SCHEMES[scheme]
    bad = near_misses(_hex(BODY, algorithm))[miss]
    assert verify_webhook_signature(BODY, {header: write(bad)}, WEBHOOK_SECRET) is False
    assert verify_webhook_signature(BODY, {header: write(bad.upper())}, WEBHOOK_SECRET) is False


@pytest.mark.parametrize("miss", MISSES)
def test_every_present_header_must_match(miss: str) -> None:
    spark = _hex(BODY, "sha1")
    webex = f"sha256={_hex(BODY, 'sha256')}"
    assert verify_webhook_signature(
        BODY, {"X-Spark-Signature": spark, "X-Webex-Signature": webex}, WEBHOOK_SECRET
    )
    bad_spark = near_misses(spark)[miss]
    bad_webex = f"sha256={near_misses(_hex(BODY, 'sha256'))[miss]}"
    for headers in (
        {"X-Spark-Signature": bad_spark, "X-Webex-Signature": webex},
        {"X-Spark-Signature": spark, "X-Webex-Signature": bad_webex},
    ):
        assert verify_webhook_signature(BODY, headers, WEBHOOK_SECRET) is False


def test_signature_made_with_a_near_miss_secret_is_refused() -> None:
    for name, secret in near_misses(WEBHOOK_SECRET, "abcdefghijklmnopqrstuvwxyz-").items():
        for scheme in SCHEMES.values():
            header, write, algorithm = scheme
            signed = {header: write(_hex(BODY, algorithm, secret))}
            assert verify_webhook_signature(BODY, signed, WEBHOOK_SECRET) is False, name


def test_a_changed_last_body_byte_is_refused() -> None:
    headers = {"X-Spark-Signature": _hex(BODY, "sha1")}
    for body in (BODY[:-1] + b"]", BODY[:-1], BODY + b" ", BODY + b"\x00"):
        assert verify_webhook_signature(body, headers, WEBHOOK_SECRET) is False


@pytest.mark.parametrize("miss", MISSES)
def test_read_delivery_raises_on_near_miss(miss: str) -> None:
    bad = near_misses(_hex(BODY, "sha1"))[miss]
    with pytest.raises(WebhookSignatureError):
        read_service_app_delivery(
            None, raw_body=BODY, headers={"X-Spark-Signature": bad}, secret=WEBHOOK_SECRET
        )


# --------------------------------------------------------------------------- the BYOVA handler


def _event_body(emu: WebexEmulator) -> bytes:
    return json.dumps(
        {
            "id": "hook",
            "resource": "serviceApp",
            "event": "authorized",
            "orgId": emu.developer_org.hydra_id,
            "data": {
                "id": emu.service_app.application_id,
                "authorizerOrgId": emu.org.hydra_id,
                "authorizationDate": "2026-01-01T00:00:00.000Z",
            },
        }
    ).encode()


def _token_requests(emu: WebexEmulator) -> int:
    return emu.count("POST", "/applications")


def test_sync_handler_refuses_near_misses_and_acts_on_none(sdk: BYOVA, emu: WebexEmulator):
    emu.authorize_service_app(emu.org.org_id)
    body = _event_body(emu)
    right = _hex(body, "sha1")
    for name, bad in near_misses(right).items():
        with pytest.raises(WebhookSignatureError):
            sdk.handle_service_app_webhook(None, raw_body=body, headers={"X-Spark-Signature": bad})
        assert _token_requests(emu) == 0, name
    assert not sdk.service_app.has_org(emu.org.org_id)
    # None of the refused deliveries was remembered: the genuine one is processed, not a dup.
    result = sdk.handle_service_app_webhook(
        None, raw_body=body, headers={"X-Spark-Signature": right}
    )
    assert isinstance(result, ServiceAppAuthorizedResult)
    assert result.duplicate is False
    assert _token_requests(emu) == 1


async def test_async_handler_refuses_near_misses_and_acts_on_none(asdk: BYOVA, emu: WebexEmulator):
    emu.authorize_service_app(emu.org.org_id)
    body = _event_body(emu)
    right = f"sha256={_hex(body, 'sha256')}"
    for name, bad in near_misses(_hex(body, "sha256")).items():
        with pytest.raises(WebhookSignatureError):
            await asdk.ahandle_service_app_webhook(
                None, raw_body=body, headers={"X-Webex-Signature": f"sha256={bad}"}
            )
        assert _token_requests(emu) == 0, name
    assert not await asdk.service_app.ahas_org(emu.org.org_id)
    result = await asdk.ahandle_service_app_webhook(
        None, raw_body=body, headers={"X-Webex-Signature": right}
    )
    assert result.duplicate is False
    assert await asdk.service_app.ahas_org(emu.org.org_id)


class _ExplodingHeaders:
    """Request headers whose reading fails (a broken framework adapter, say)."""

    def items(self) -> Any:
        raise RuntimeError("header parsing blew up")


def test_sync_handler_fails_closed_when_headers_cannot_be_read(sdk: BYOVA, emu: WebexEmulator):
    emu.authorize_service_app(emu.org.org_id)
    with pytest.raises(RuntimeError):
        sdk.handle_service_app_webhook(None, raw_body=_event_body(emu), headers=_ExplodingHeaders())
    assert _token_requests(emu) == 0
    assert not sdk.service_app.has_org(emu.org.org_id)


async def test_async_handler_fails_closed_when_headers_cannot_be_read(
    asdk: BYOVA, emu: WebexEmulator
):
    emu.authorize_service_app(emu.org.org_id)
    with pytest.raises(RuntimeError):
        await asdk.ahandle_service_app_webhook(
            None, raw_body=_event_body(emu), headers=_ExplodingHeaders()
        )
    assert _token_requests(emu) == 0
    assert not await asdk.service_app.ahas_org(emu.org.org_id)


def test_sync_handler_does_not_remember_a_delivery_it_failed_to_process(
    sdk: BYOVA, emu: WebexEmulator
):
    """A token endpoint answering garbage must not turn the delivery into a handled one."""
    emu.authorize_service_app(emu.org.org_id)
    body = _event_body(emu)
    headers = {"X-Spark-Signature": _hex(body, "sha1")}
    emu.fail_next("/applications", status=200, body=b"<html>not a token</html>", times=None)
    with pytest.raises((WebexBYOVAError, ValueError)):
        sdk.handle_service_app_webhook(None, raw_body=body, headers=headers)
    assert not sdk.service_app.has_org(emu.org.org_id)
    emu.clear_faults()
    # Webex redelivers: it is processed for real, not answered as an already handled dup.
    result = sdk.handle_service_app_webhook(None, raw_body=body, headers=headers)
    assert result.duplicate is False
    assert sdk.service_app.has_org(emu.org.org_id)


async def test_async_handler_does_not_remember_a_delivery_it_failed_to_process(
    asdk: BYOVA, emu: WebexEmulator
):
    emu.authorize_service_app(emu.org.org_id)
    body = _event_body(emu)
    headers = {"X-Spark-Signature": _hex(body, "sha1")}
    emu.fail_next("/applications", status=200, body=b"{}", times=None)
    with pytest.raises((WebexBYOVAError, ValueError)):
        await asdk.ahandle_service_app_webhook(None, raw_body=body, headers=headers)
    assert not await asdk.service_app.ahas_org(emu.org.org_id)
    emu.clear_faults()
    result = await asdk.ahandle_service_app_webhook(None, raw_body=body, headers=headers)
    assert result.duplicate is False
    assert await asdk.service_app.ahas_org(emu.org.org_id)


def test_near_miss_application_id_is_another_service_app(sdk: BYOVA, emu: WebexEmulator):
    """A correctly signed delivery for an app whose id almost equals ours is not acted on."""
    from webex_byova._ids import from_hydra, to_hydra
    from webex_byova.errors import ValidationError

    emu.authorize_service_app(emu.org.org_id)
    decoded = from_hydra(emu.service_app.application_id)
    assert decoded is not None
    client_id = decoded[2]
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for name, bad in near_misses(client_id, alphabet).items():
        if bad.lower() == client_id.lower():
            continue  # application ids compare case-insensitively
        for app_id in (bad, to_hydra(decoded[1], bad, region=decoded[0])):
            body = json.loads(_event_body(emu))
            body["data"]["id"] = app_id
            raw = json.dumps(body).encode()
            with pytest.raises(ValidationError, match="another Service App"):
                sdk.handle_service_app_webhook(
                    None, raw_body=raw, headers={"X-Spark-Signature": _hex(raw, "sha1")}
                )
        assert _token_requests(emu) == 0, name
