"""The alerting service's private Redis keys (shared ones are in services/kernel/keys.py)."""

from __future__ import annotations


def login_failures(username: str) -> str:
    """Counter of failed logins of one user name in the current lockout window."""
    return f"tocsin:alerting:login-failures:{username}"
