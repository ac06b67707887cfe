"""Adapters that connect BYOVA calls to voice-agent frameworks (each behind its own extra).

* :mod:`webex_byova.integrations.pipecat`: a pipecat transport (extra ``pipecat``).
"""

# Nothing is imported here: each integration is its own module behind its own extra (and the
# API reference lists each one itself instead of walking this package).
__all__: list[str] = []
