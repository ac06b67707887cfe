"""Fixtures of the production-operation tests: the suite's real redis-server."""

from __future__ import annotations

from ..auth.conftest import redis_url

__all__ = ["redis_url"]
