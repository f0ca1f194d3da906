"""Domain types of targeting: channels, languages, counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.kernel import keys

#: A connection, straight or from a pool.
Conn = asyncpg.Connection | PoolConnectionProxy

#: Languages a citizen may choose.
LANGUAGES = ("nl", "fr", "de", "en")


class Channel(StrEnum):
    """A registration-based channel; the value is its name in streams and metrics."""

    #: SMS to the subscriber's phone number.
    SMS = "sms"
    #: Voice message to the subscriber's phone number.
    VOICE = "voice"
    #: E-mail to the subscriber's address.
    EMAIL = "email"

    @property
    def bit(self) -> int:
        """The channel's bit in the `channels` columns."""
        return _BITS[self]

    @property
    def stream(self) -> str:
        """The channel's work stream."""
        return _STREAMS[self]


_BITS = {Channel.SMS: 1, Channel.VOICE: 2, Channel.EMAIL: 4}
_STREAMS = {
    Channel.SMS: keys.SMS_STREAM,
    Channel.VOICE: keys.VOICE_STREAM,
    Channel.EMAIL: keys.EMAIL_STREAM,
}
ALL_CHANNELS = (Channel.SMS, Channel.VOICE, Channel.EMAIL)


def channel_bits(channels: set[Channel] | frozenset[Channel]) -> int:
    """The bit mask of a set of channels."""
    return sum(c.bit for c in channels)


@dataclass
class Counts:
    """Recipients per channel and language."""

    by_channel: dict[Channel, dict[str, int]] = field(
        default_factory=lambda: {c: dict.fromkeys(LANGUAGES, 0) for c in ALL_CHANNELS}
    )

    def add(self, channel: Channel, language: str, n: int = 1) -> None:
        """Count n more recipients."""
        per = self.by_channel[channel]
        per[language] = per.get(language, 0) + n

    def total(self, channel: Channel) -> int:
        """Recipients of one channel, all languages."""
        return sum(self.by_channel[channel].values())
