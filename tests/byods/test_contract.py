"""The public contract of ``webex_byova-api-reference.txt``, pinned with ``inspect``.

Names, parameter names, kinds, defaults and annotations must match the reference exactly;
extra *optional keyword-only* parameters are allowed (documented extensions).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

import webex_byova
from webex_byova import client as client_module
from webex_byova import config as config_module
from webex_byova import errors

P = inspect.Parameter
POS = P.POSITIONAL_OR_KEYWORD
KW = P.KEYWORD_ONLY
REQUIRED = P.empty

# name -> (kind, default, annotation) as the reference lists them (``self`` omitted).
Spec = list[tuple[str, Any, Any, str]]

BYOVA_METHODS: dict[str, tuple[Spec, str, bool]] = {
    "__init__": (
        [
            ("integration", POS, REQUIRED, "IntegrationCredentials"),
            ("service_app", POS, REQUIRED, "ServiceAppCredentials"),
            ("config", KW, None, "BYOVAConfig | None"),
            ("token_storage", KW, None, "TokenStorage | None"),
        ],
        "None",
        False,
    ),
    "get_client_for_org": ([("org_id", POS, REQUIRED, "str")], "OrgClient", False),
    "aget_client_for_org": ([("org_id", POS, REQUIRED, "str")], "OrgClient", True),
    "handle_service_app_webhook": ([("payload", POS, REQUIRED, "dict[str, Any]")], "", False),
    "ahandle_service_app_webhook": ([("payload", POS, REQUIRED, "dict[str, Any]")], "", True),
    "verify_jws_token": ([("jws_token", POS, REQUIRED, "str")], "dict[str, Any]", False),
    "averify_jws_token": ([("jws_token", POS, REQUIRED, "str")], "dict[str, Any]", True),
    "close": ([], "None", False),
    "aclose": ([], "None", True),
}


def _check(func: Any, spec: Spec, returns: str) -> None:
    sig = inspect.signature(func)
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    for (name, kind, default, annotation), param in zip(spec, params, strict=False):
        assert param.name == name, (func, param.name, name)
        assert param.kind == kind, (func, name, param.kind)
        assert param.default == default, (func, name, param.default)
        if annotation == "dict[str, Any]":  # the SDK also accepts None there (raw_body path)
            assert str(param.annotation).startswith(annotation), (func, name, param.annotation)
        else:
            assert param.annotation == annotation, (func, name, param.annotation)
    assert len(params) >= len(spec), func
    for extra in params[len(spec) :]:  # extensions: keyword-only with a default
        assert extra.kind == KW, (func, extra)
        assert extra.default is not REQUIRED, (func, extra)
    if returns:
        assert sig.return_annotation == returns, (func, sig.return_annotation)


@pytest.mark.parametrize("name", sorted(BYOVA_METHODS))
def test_byova_methods_match_the_reference(name: str) -> None:
    spec, returns, is_async = BYOVA_METHODS[name]
    method = getattr(client_module.BYOVA, name)
    _check(method, spec, returns)
    assert inspect.iscoroutinefunction(method) is is_async, name


def test_webhook_handlers_return_the_result_union() -> None:
    for name in ("handle_service_app_webhook", "ahandle_service_app_webhook"):
        hints = inspect.signature(getattr(client_module.BYOVA, name)).return_annotation
        assert hints == "WebhookResult"
        assert set(client_module.WebhookResult.__args__) == {
            webex_byova.ServiceAppAuthorizedResult,
            webex_byova.ServiceAppDeauthorizedResult,
        }


def test_from_env_and_properties() -> None:
    from_env = inspect.getattr_static(client_module.BYOVA, "from_env")
    assert isinstance(from_env, classmethod)
    _check(client_module.BYOVA.from_env, [("config", KW, None, "BYOVAConfig | None")], "BYOVA")
    for name, annotation in [
        ("config", "BYOVAConfig"),
        ("integration", "IntegrationTokenManager"),
        ("service_app", "ServiceAppTokenManager"),
        ("webhooks", "WebhookManager"),
    ]:
        prop = inspect.getattr_static(client_module.BYOVA, name)
        assert isinstance(prop, property), name
        assert prop.fget is not None
        assert inspect.signature(prop.fget).return_annotation == annotation
    assert webex_byova.BYOVA is client_module.BYOVA


def test_byova_config_fields_and_defaults() -> None:
    cls = config_module.BYOVAConfig
    assert dataclasses.is_dataclass(cls)
    assert webex_byova.BYOVAConfig is cls
    expected = [
        ("base_url", "str", "https://webexapis.com/v1"),
        ("authorize_url", "str", "https://webexapis.com/v1/authorize"),
        ("token_url", "str", "https://webexapis.com/v1/access_token"),
        ("jwk_url_us", "str", "https://idbroker.webex.com/idb/oauth2/v2/keys/verificationjwk"),
        ("jwk_url_eu", "str", "https://idbroker-eu.webex.com/idb/oauth2/v2/keys/verificationjwk"),
        ("region", "str", "us"),
        ("timeout", "float", 30.0),
    ]
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    for (name, annotation, default), param in zip(expected, params, strict=False):
        assert (param.name, param.annotation, param.default) == (name, annotation, default)
        assert param.kind == POS
    assert all(p.default is not REQUIRED for p in params[len(expected) :])
    jwk_url = inspect.getattr_static(cls, "jwk_url")
    assert isinstance(jwk_url, property)
    assert cls().jwk_url == expected[3][2]
    assert cls(region="eu").jwk_url == expected[4][2]


def test_error_classes_and_constructors() -> None:
    base = errors.WebexBYOVAError
    assert base.__bases__ == (Exception,)
    for name in ("AuthenticationError", "NotFoundError", "RateLimitError", "ValidationError"):
        cls = getattr(errors, name)
        assert issubclass(cls, base), name
        assert getattr(webex_byova, name) is cls
    assert webex_byova.WebexBYOVAError is base
    _check(
        base.__init__,
        [
            ("message", POS, REQUIRED, "str"),
            ("status_code", KW, None, "int | None"),
            ("body", KW, None, "Any"),
        ],
        "None",
    )
    rate = inspect.signature(errors.RateLimitError.__init__)
    named = [p for p in rate.parameters.values() if p.name != "self"]
    assert [(p.name, p.kind, p.default, p.annotation) for p in named[:4]] == [
        ("message", POS, REQUIRED, "str"),
        ("status_code", KW, 429, "int | None"),
        ("body", KW, None, "Any"),
        ("retry_after", KW, None, "int | None"),
    ]
    err = errors.RateLimitError("slow down", retry_after=7)
    assert (err.status_code, err.body, err.retry_after) == (429, None, 7)
    plain = base("boom", status_code=500, body={"a": 1})
    assert (plain.status_code, plain.body) == (500, {"a": 1})
    assert errors.OrgNotRegisteredError("o").org_id == "o"
    assert issubclass(errors.OrgNotRegisteredError, base)
