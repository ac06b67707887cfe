"""Inbound webhooks without I/O: signatures (fail closed) and serviceApp event parsing."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from webex_byova._ids import org_hydra_id
from webex_byova.errors import AuthenticationError, ValidationError
from webex_byova.webhooks import (
    WebhookSignatureError,
    parse_service_app_event,
    read_service_app_delivery,
    same_application,
    verify_webhook_signature,
)

SECRET = "s3cret-value"
ORG = "0e3e6a1f-9a1b-4c1c-8f51-6f8a2f7b9c10"
DEV_ORG = "11111111-2222-4333-8444-555555555555"
APP_HYDRA = "Y2lzY29zcGFyazovL3VzL0FQUExJQ0FUSU9OL0MxMjM"  # .../APPLICATION/C123


def _sign(body: bytes, secret: str = SECRET, alg=hashlib.sha1) -> str:
    return hmac.new(secret.encode(), body, alg).hexdigest()


def _payload(event: str = "authorized", **data: object) -> dict[str, object]:
    base_data: dict[str, object] = {
        "id": APP_HYDRA,
        "authorizerOrgId": org_hydra_id(ORG),
        "orgId": org_hydra_id(ORG),
        "authorizationDate": "2026-01-01T00:00:00.000Z",
    }
    base_data.update(data)
    return {
        "id": "webhook-1",
        "resource": "serviceApp",
        "event": event,
        "orgId": org_hydra_id(DEV_ORG),
        "data": {k: v for k, v in base_data.items() if v is not None},
    }


BODY = json.dumps(_payload()).encode()


class TestSignature:
    def test_valid_sha1_any_header_case(self) -> None:
        assert verify_webhook_signature(BODY, {"x-spark-signature": _sign(BODY)}, SECRET)
        assert verify_webhook_signature(BODY, {"X-Spark-Signature": _sign(BODY).upper()}, SECRET)
        assert verify_webhook_signature(BODY, [("X-SPARK-SIGNATURE", _sign(BODY))], SECRET)

    def test_tampered_body_or_wrong_secret(self) -> None:
        sig = _sign(BODY)
        assert not verify_webhook_signature(BODY + b" ", {"X-Spark-Signature": sig}, SECRET)
        assert not verify_webhook_signature(BODY, {"X-Spark-Signature": sig}, "other")
        assert not verify_webhook_signature(BODY, {"X-Spark-Signature": "zz"}, SECRET)

    def test_missing_signature_fails_closed(self) -> None:
        assert verify_webhook_signature(BODY, {}, SECRET) is False
        assert verify_webhook_signature(BODY, {"Content-Type": "application/json"}, SECRET) is False

    def test_duplicate_header_rejected(self) -> None:
        sig = _sign(BODY)
        headers = [("X-Spark-Signature", sig), ("X-Spark-Signature", sig)]
        assert verify_webhook_signature(BODY, headers, SECRET) is False

    def test_no_secret_is_a_configuration_error(self) -> None:
        with pytest.raises(ValueError):
            verify_webhook_signature(BODY, {"X-Spark-Signature": _sign(BODY)}, "")

    def test_body_must_be_bytes(self) -> None:
        with pytest.raises(TypeError):
            verify_webhook_signature(BODY.decode(), {}, SECRET)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("alg", "fmt"),
        [
            (hashlib.sha256, "sha256={}"),
            (hashlib.sha512, "sha512={}"),
            (hashlib.sha256, "{}"),
            (hashlib.sha512, "{}"),
        ],
    )
    def test_webex_signature_sha2(self, alg, fmt) -> None:
        value = fmt.format(_sign(BODY, alg=alg))
        assert verify_webhook_signature(BODY, {"X-Webex-Signature": value}, SECRET)
        bad = fmt.format(_sign(BODY + b"x", alg=alg))
        assert not verify_webhook_signature(BODY, {"X-Webex-Signature": bad}, SECRET)

    def test_webex_signature_rejects_sha1_and_unknown(self) -> None:
        assert not verify_webhook_signature(BODY, {"X-Webex-Signature": _sign(BODY)}, SECRET)
        md5 = "md5=" + hmac.new(SECRET.encode(), BODY, hashlib.md5).hexdigest()
        assert not verify_webhook_signature(BODY, {"X-Webex-Signature": md5}, SECRET)

    def test_both_headers_must_match(self) -> None:
        good = {"X-Spark-Signature": _sign(BODY)}
        mixed = {**good, "X-Webex-Signature": "sha256=" + "0" * 64}
        assert not verify_webhook_signature(BODY, mixed, SECRET)
        both = {**good, "X-Webex-Signature": "sha256=" + _sign(BODY, alg=hashlib.sha256)}
        assert verify_webhook_signature(BODY, both, SECRET)


class TestParse:
    def test_org_from_authorizer_org_id_first(self) -> None:
        other = "22222222-3333-4444-8555-666666666666"
        event = parse_service_app_event(_payload(orgId=org_hydra_id(other)))
        assert event.org_id == ORG
        assert event.org_hydra_id == org_hydra_id(ORG)
        assert event.org_id_source == "data.authorizerOrgId"
        assert event.event == "authorized"
        assert event.application_id == APP_HYDRA

    def test_org_fallbacks_and_uuid_form(self) -> None:
        event = parse_service_app_event(_payload(authorizerOrgId=None, orgId=ORG.upper()))
        assert (event.org_id, event.org_id_source) == (ORG, "data.orgId")
        p = _payload(authorizerOrgId=None, orgId=None)
        event = parse_service_app_event(p)
        assert (event.org_id, event.org_id_source) == (DEV_ORG, "orgId")

    def test_bad_org_id_is_not_silently_replaced(self) -> None:
        with pytest.raises(ValidationError, match="authorizerOrgId"):
            parse_service_app_event(_payload(authorizerOrgId="not-an-org"))

    def test_no_org(self) -> None:
        p = _payload(authorizerOrgId=None, orgId=None)
        del p["orgId"]
        with pytest.raises(ValidationError, match="no org id"):
            parse_service_app_event(p)

    @pytest.mark.parametrize(
        "mutate",
        [
            lambda p: p.update(resource="messages"),
            lambda p: p.update(event="created"),
            lambda p: p.update(event=None),
            lambda p: p.update(data="nope"),
        ],
    )
    def test_anything_else_is_validation_error(self, mutate) -> None:
        p = _payload()
        mutate(p)
        with pytest.raises(ValidationError):
            parse_service_app_event(p)

    def test_not_an_object(self) -> None:
        with pytest.raises(ValidationError):
            parse_service_app_event([1, 2])

    def test_idempotency_key_stable_and_distinct(self) -> None:
        a = parse_service_app_event(_payload())
        again = parse_service_app_event(json.loads(json.dumps(_payload())))
        de = parse_service_app_event(_payload("deauthorized"))
        later = parse_service_app_event(_payload(authorizationDate="2026-02-01T00:00:00.000Z"))
        assert a.idempotency_key == again.idempotency_key
        assert len({a.idempotency_key, de.idempotency_key, later.idempotency_key}) == 3

    def test_same_application_matches_hydra_and_plain(self) -> None:
        assert same_application(APP_HYDRA, "C123")
        assert same_application(APP_HYDRA, "c123")
        assert not same_application(APP_HYDRA, "C124")
        assert not same_application(None, "C123")


class TestReadDelivery:
    def test_verified_bytes_are_parsed(self) -> None:
        event = read_service_app_delivery(
            None, raw_body=BODY, headers={"X-Spark-Signature": _sign(BODY)}, secret=SECRET
        )
        assert event.org_id == ORG

    def test_forged_signature(self) -> None:
        with pytest.raises(WebhookSignatureError) as info:
            read_service_app_delivery(
                None, raw_body=BODY, headers={"X-Spark-Signature": "0" * 40}, secret=SECRET
            )
        assert isinstance(info.value, AuthenticationError)
        assert info.value.status_code == 401

    def test_missing_signature(self) -> None:
        with pytest.raises(WebhookSignatureError):
            read_service_app_delivery(None, raw_body=BODY, headers={}, secret=SECRET)

    def test_secret_without_raw_body(self) -> None:
        with pytest.raises(ValidationError, match="raw_body"):
            read_service_app_delivery(_payload(), secret=SECRET)

    def test_payload_must_match_verified_body(self) -> None:
        forged = _payload(authorizerOrgId=org_hydra_id(DEV_ORG))
        with pytest.raises(ValidationError, match="does not match"):
            read_service_app_delivery(
                forged, raw_body=BODY, headers={"X-Spark-Signature": _sign(BODY)}, secret=SECRET
            )

    def test_invalid_json_body(self) -> None:
        body = b"{not json"
        with pytest.raises(ValidationError, match="JSON"):
            read_service_app_delivery(
                None, raw_body=body, headers={"X-Spark-Signature": _sign(body)}, secret=SECRET
            )

    def test_without_secret_payload_is_used(self) -> None:
        assert read_service_app_delivery(_payload("deauthorized")).event == "deauthorized"
        with pytest.raises(ValidationError):
            read_service_app_delivery(None)
