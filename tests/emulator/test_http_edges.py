"""Every emulator answer, even to requests no route handles, has the Webex error shape."""

from __future__ import annotations

import socket

import pytest

from webex_byova.testing import WebexEmulator

from .helpers import assert_webex_error


@pytest.mark.parametrize("method", ["OPTIONS", "PATCH", "HEAD"])
def test_unrouted_methods_answer_405_with_tracking_id(emu: WebexEmulator, http, method) -> None:
    resp = http.request(method, emu.base_url + "/webhooks")
    assert resp.status_code == 405
    assert resp.headers["TrackingID"].startswith("EMU_")
    assert "GET" in resp.headers["Allow"]
    if method != "HEAD":
        assert_webex_error(resp, 405)


def test_unknown_method_gets_a_webex_error_body(emu: WebexEmulator, http) -> None:
    resp = http.request("BREW", emu.base_url + "/webhooks")
    body = assert_webex_error(resp, 501)
    assert "BREW" in body["message"]


def _raw(emu: WebexEmulator, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("length", [b"abc", b"-5"])
def test_bad_content_length_is_a_400_not_a_dropped_connection(emu: WebexEmulator, length) -> None:
    raw = _raw(
        emu,
        b"POST /v1/webhooks HTTP/1.1\r\nHost: emu\r\nContent-Length: " + length + b"\r\n\r\n",
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), raw
    assert b"\r\nTrackingID: EMU_" in head
    assert b'"trackingId": "EMU_' in body
    assert b"Content-Length" in body


def test_malformed_request_line_gets_a_webex_error_body(emu: WebexEmulator) -> None:
    raw = _raw(emu, b"GET /v1/webhooks HTTP/1.1 extra\r\nHost: emu\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), raw
    assert b"\r\nTrackingID: EMU_" in head
    assert b'"errors": [{"description": ' in body
