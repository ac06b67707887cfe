"""pytest plugin providing a ``webex_emulator`` fixture.

It is registered as a ``pytest11`` entry point, so installing the SDK makes the fixture
available in every pytest run (disable with ``-p no:webex_byova``)::

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
