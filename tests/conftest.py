"""Cross-area test configuration.

pytest-socket is configured in pyproject (``--allow-hosts``) so only loopback is reachable.
"""
