"""Tests of the pipecat transport (they need the ``pipecat`` extra)."""

import contextlib

# The integration imports pipecat with its stdlib-audioop DeprecationWarning silenced; import it
# before any test module imports pipecat directly (warnings are errors here).
with contextlib.suppress(ImportError):
    import webex_byova.integrations.pipecat  # noqa: F401
