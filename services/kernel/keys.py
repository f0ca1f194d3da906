"""Stream names and Redis keys shared between services (docs/streams.md)."""

from __future__ import annotations

#: SMS work: batches of recipients for the SMS service.
SMS_STREAM = "tocsin:stream:sms"
#: Consumer group of the SMS service on SMS_STREAM.
SMS_GROUP = "sms"
#: Voice work.
VOICE_STREAM = "tocsin:stream:voice"
#: Consumer group of the voice service.
VOICE_GROUP = "voice"
#: E-mail work.
EMAIL_STREAM = "tocsin:stream:email"
#: Consumer group of the e-mail sender.
EMAIL_GROUP = "email"

#: How long alert control keys live, in seconds (7 days: longer than any alert's expiry).
ALERT_CONTROL_TTL_S = 7 * 24 * 3600


#: Set by alerting once it knows this Redis holds every live alert's control keys and work: a
#: Redis that lost its data (restarted empty, flushed, failed over to an empty replica) lacks it,
#: and alerting then restores both from PostgreSQL (services/alerting/dispatch.py).
REDIS_MARKER = "tocsin:redis:intact"


def alert_cancelled(alert: str) -> str:
    """Key set to "1" when an alert is cancelled."""
    return f"tocsin:alert:{alert}:cancelled"


def alert_version(alert: str) -> str:
    """Key holding the alert's current text version."""
    return f"tocsin:alert:{alert}:version"
