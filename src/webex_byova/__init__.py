"""Webex BYOVA / BYODS Python SDK."""
