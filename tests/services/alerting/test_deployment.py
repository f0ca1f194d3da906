"""The deployment's enabled channels: read from the setting, unknown names refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from services.alerting.deployment import DEFAULT_ENABLED, parse_channels
from services.alerting.model import Channel
from services.alerting.settings import Settings

#: The settings every alerting process needs, besides the one under test.
REQUIRED: dict[str, Any] = {
    "DATABASE_URL": "postgresql://127.0.0.1/x",
    "REDIS_URL": "redis://127.0.0.1",
    "jwt_key": "k" * 32,
}


def test_the_setting_lists_the_channels_of_the_deployment() -> None:
    assert parse_channels(DEFAULT_ENABLED) == {Channel.SMS}
    assert parse_channels(" sms, email ,voice,") == {Channel.SMS, Channel.EMAIL, Channel.VOICE}
    settings = Settings(**REQUIRED, enabled_channels="sms")
    assert settings.channels == {Channel.SMS}


def test_an_unknown_channel_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        Settings(**REQUIRED, enabled_channels="sms,fax")
