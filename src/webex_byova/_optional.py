"""Optional dependencies ("extras"): import them or fail with an error naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "optional_import", "require"]

_DIST = "webex-byova-sdk"


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{module!r} is not installed; it comes with the {extra!r} extra: "
            f"pip install '{_DIST}[{extra}]'",
            name=module,
        )


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module, extra) from exc


def optional_import(module: str) -> ModuleType | None:
    """Import ``module`` if it is installed, else return ``None``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
