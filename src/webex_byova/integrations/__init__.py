"""Adapters that connect BYOVA calls to voice-agent frameworks (each behind its own extra).

* :mod:`webex_byova.integrations.pipecat`: a pipecat transport (extra ``pipecat``).
"""
