"""pytest plugin providing a ``webex_emulator`` fixture.

Enable it with ``pytest_plugins = ["webex_byova.testing.pytest_plugin"]`` in your root
``conftest.py`` (or ``-p webex_byova.testing.pytest_plugin``), then::

    def test_something(webex_emulator):
        cfg = webex_emulator.config()
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._emulator import WebexEmulator

__all__ = ["webex_emulator"]


@pytest.fixture
def webex_emulator() -> Iterator[WebexEmulator]:
    """A started :class:`~webex_byova.testing.WebexEmulator`, stopped after the test."""
    emu = WebexEmulator()
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()
