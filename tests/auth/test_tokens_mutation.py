"""Exact behaviour of :class:`OAuthToken`, pinned by the mutation run (issue 17): expiry and
refresh decisions at their boundaries, the stored JSON form and what it accepts, the masked
``repr``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from webex_byova.tokens import OAuthToken

ACCESS = "access-token-0123456789"
REFRESH = "refresh-token-0123456789"


def _token(**kwargs: Any) -> OAuthToken:
    kwargs.setdefault("access_token", ACCESS)
    kwargs.setdefault("expires_at", 1000.0)
    return OAuthToken(**kwargs)


@pytest.mark.parametrize("access", ["", None, 5])
def test_access_token_must_be_non_empty_text(access: Any) -> None:
    with pytest.raises(ValueError, match="^access_token must be a non-empty string$"):
        _token(access_token=access)


def test_expiry_boundaries() -> None:
    token = _token(expires_at=1000.0)
    assert token.is_expired(999.9) is False
    assert token.is_expired(1000.0) is True
    assert token.is_expired(990.0, skew=10.0) is True
    assert token.is_expired(989.9, skew=10.0) is False
    assert token.expires_in(400.0) == 600.0
    assert token.expires_in(1200.0) == -200.0


def test_refresh_margin_is_capped_at_half_the_lifetime() -> None:
    short = _token(expires_at=1000.0, obtained_at=900.0)  # 100 s lifetime
    assert short.should_refresh(949.9, margin=300.0) is False
    assert short.should_refresh(950.0, margin=300.0) is True
    assert short.should_refresh(989.9, margin=10.0) is False  # smaller margin kept
    assert short.should_refresh(990.0, margin=10.0) is True
    unknown = _token(expires_at=1000.0)
    assert unknown.should_refresh(700.0, margin=300.0) is True
    assert unknown.should_refresh(699.9, margin=300.0) is False
    odd = _token(expires_at=1000.0, obtained_at=1000.0)  # no lifetime: margin as given
    assert odd.should_refresh(700.0, margin=300.0) is True
    after = _token(expires_at=1000.0, obtained_at=1100.0)
    assert after.should_refresh(700.0, margin=300.0) is True


def test_refresh_token_expiry() -> None:
    assert _token().refresh_token_expired(0.0) is True
    assert _token(refresh_token="").refresh_token_expired(0.0) is True
    assert _token(refresh_token=REFRESH).refresh_token_expired(1e12) is False
    token = _token(refresh_token=REFRESH, refresh_token_expires_at=5000.0)
    assert token.refresh_token_expired(4999.9) is False
    assert token.refresh_token_expired(5000.0) is True
    assert token.refresh_token_expired(4990.0, skew=10.0) is True
    assert token.refresh_token_expired(4989.9, skew=10.0) is False


def test_datetimes() -> None:
    token = _token(expires_at=0.0, refresh_token_expires_at=86400.0)
    assert token.expires_at_datetime == datetime(1970, 1, 1, tzinfo=UTC)
    assert token.refresh_token_expires_at_datetime == datetime(1970, 1, 2, tzinfo=UTC)
    assert _token().refresh_token_expires_at_datetime is None


def test_json_round_trip_is_sorted_and_compact() -> None:
    token = _token(
        refresh_token=REFRESH,
        refresh_token_expires_at=5000.0,
        token_type="bearer",
        scope="a b",
        obtained_at=10.0,
    )
    text = token.to_json()
    assert text == json.dumps(
        {
            "access_token": ACCESS,
            "expires_at": 1000.0,
            "obtained_at": 10.0,
            "refresh_token": REFRESH,
            "refresh_token_expires_at": 5000.0,
            "scope": "a b",
            "token_type": "bearer",
        },
        separators=(",", ":"),
    )
    assert OAuthToken.from_json(text) == token
    assert OAuthToken.from_json(text.encode()) == token
    assert token.with_changes(scope="c").scope == "c"
    assert token.with_changes(scope="c").access_token == ACCESS


def test_from_dict_normalises_optional_fields() -> None:
    token = OAuthToken.from_dict(
        {
            "access_token": ACCESS,
            "expires_at": 7,
            "refresh_token": "",
            "scope": 5,
            "token_type": "",
            "unknown": "ignored",
        }
    )
    assert token == OAuthToken(ACCESS, 7.0)
    assert isinstance(token.expires_at, float)
    assert OAuthToken.from_dict({"access_token": ACCESS, "expires_at": 1, "token_type": 3}) == (
        OAuthToken(ACCESS, 1.0, token_type="3")
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "token data must be a JSON object"),
        ({"expires_at": 1}, "token data lacks access_token"),
        ({"access_token": "", "expires_at": 1}, "token data lacks access_token"),
        ({"access_token": 5, "expires_at": 1}, "token data lacks access_token"),
        ({"access_token": ACCESS}, "token data lacks expires_at"),
        ({"access_token": ACCESS, "expires_at": None}, "token data lacks expires_at"),
        (
            {"access_token": ACCESS, "expires_at": "1"},
            "token field 'expires_at' must be a number, got '1'",
        ),
        (
            {"access_token": ACCESS, "expires_at": True},
            "token field 'expires_at' must be a number, got True",
        ),
        (
            {"access_token": ACCESS, "expires_at": 1, "obtained_at": "x"},
            "token field 'obtained_at' must be a number, got 'x'",
        ),
        (
            {"access_token": ACCESS, "expires_at": 1, "refresh_token_expires_at": False},
            "token field 'refresh_token_expires_at' must be a number, got False",
        ),
    ],
)
def test_from_dict_refuses(data: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        OAuthToken.from_dict(data)
    assert str(info.value) == message


def test_repr_masks_the_secrets() -> None:
    token = _token(expires_at=0.0, refresh_token=REFRESH, refresh_token_expires_at=5.0, scope="s")
    text = (
        "OAuthToken(access_token='acce…(23)', expires_at=1970-01-01T00:00:00+00:00, "
        "refresh_token='refr…(24)', refresh_token_expires_at=5.0, token_type='Bearer', "
        "scope='s')"
    )
    assert repr(token) == text
    assert str(token) == text
    assert ACCESS not in repr(token)
    assert REFRESH not in repr(token)
