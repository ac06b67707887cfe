"""``byova serve APP``: find a user's media server (``module:attr`` or a file) and run it."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..media.config import MediaServerConfig
from ..media.server import BYOVAMediaServer

__all__ = ["AppLoadError", "apply_overrides", "is_file_target", "load_app", "split_spec"]

_CANDIDATE_NAMES = ("server", "app", "media_server")


class AppLoadError(ValueError):
    """``APP`` does not name a media server."""


def _import_target(target: str) -> Any:
    path = Path(target)
    if is_file_target(target):
        if not path.is_file():
            raise AppLoadError(f"no such file: {target}")
        name = f"_byova_app_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path.resolve())
        if spec is None or spec.loader is None:
            raise AppLoadError(f"cannot import {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        parent = str(path.resolve().parent)
        if parent not in sys.path:
            sys.path.insert(0, parent)
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise AppLoadError(f"cannot import module {target!r}: {exc}") from exc


def load_app(spec: str) -> BYOVAMediaServer:
    """Load a :class:`BYOVAMediaServer` from ``module:attr``, ``file.py[:attr]`` or ``module``.

    Without ``attr`` the module's ``server``/``app``/``media_server`` is used, else its only
    ``BYOVAMediaServer``. ``attr`` may also name a zero-argument factory returning one.
    """
    target, attr = split_spec(spec)
    module = _import_target(target)
    if attr:
        if not hasattr(module, attr):
            raise AppLoadError(f"{target} has no attribute {attr!r}")
        obj = getattr(module, attr)
    else:
        obj = None
        for name in _CANDIDATE_NAMES:
            if isinstance(getattr(module, name, None), BYOVAMediaServer):
                obj = getattr(module, name)
                break
        if obj is None:
            found = [v for v in vars(module).values() if isinstance(v, BYOVAMediaServer)]
            if len(found) != 1:
                raise AppLoadError(
                    f"{target} defines {len(found)} BYOVAMediaServer objects; "
                    "name one with module:attr"
                )
            obj = found[0]
    if callable(obj) and not isinstance(obj, BYOVAMediaServer):
        obj = obj()
    if not isinstance(obj, BYOVAMediaServer):
        raise AppLoadError(f"{spec} is a {type(obj).__name__}, not a BYOVAMediaServer")
    return obj


def split_spec(spec: str) -> tuple[str, str]:
    """``APP`` as ``(module or file, attr)``; ``attr`` is ``""`` when not given."""
    target, _, attr = (
        spec.rpartition(":") if spec.count(":") and not _is_drive(spec) else (spec, "", "")
    )
    if not target:
        return spec, ""
    return target, attr


def is_file_target(target: str) -> bool:
    """Whether ``target`` (``APP`` without ``:attr``) names a file rather than a module."""
    return target.endswith(".py") or Path(target).is_file()


def _is_drive(spec: str) -> bool:
    return len(spec) > 2 and spec[1] == ":" and spec[2] in "\\/"


def apply_overrides(server: BYOVAMediaServer, overrides: Mapping[str, Any]) -> MediaServerConfig:
    """Re-validate the server's config with network/TLS ``overrides`` (``None`` = keep)."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    if not changes:
        return server.config
    try:
        config = MediaServerConfig(**{**server.config.model_dump(), **changes})
    except ValueError as exc:
        raise AppLoadError(f"invalid server options: {exc}") from None
    server.config = config
    return config
