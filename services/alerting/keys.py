"""The alerting service's private Redis keys (shared ones are in services/kernel/keys.py)."""

from __future__ import annotations


def login_failures(scope: str) -> str:
    """Counter of login attempts of one scope (user at address, user, address) in a window."""
    return f"tocsin:alerting:login-failures:{scope}"


def login_places(user: str) -> str:
    """Set of addresses a user (by the hash of its name) logged in from: its known places."""
    return f"tocsin:alerting:login-places:{user}"
