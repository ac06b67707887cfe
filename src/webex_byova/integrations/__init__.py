"""Adapters that connect BYOVA calls to voice-agent frameworks (each behind its own extra).

* :mod:`webex_byova.integrations.pipecat`: a pipecat transport (extra ``pipecat``).
"""

# No names of its own; the empty list also keeps pdoc from walking into the adapters, which the
# API reference documents as modules of their own (else pipecat's page is added twice: a warning).
__all__: list[str] = []
