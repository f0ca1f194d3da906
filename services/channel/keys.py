"""Redis keys of the channel worker: a channel's work stream, its group, its dead letters."""

from __future__ import annotations

#: Prefix of every work stream (services/kernel/keys.py names the SMS, voice and e-mail ones).
STREAM_PREFIX = "tocsin:stream:"
#: Dead letters stay at most this many entries (XADD MAXLEN ~): they are for reading, not work.
DEAD_LETTER_MAXLEN = 10_000


def stream(channel: str) -> str:
    """The work stream of `channel`: `tocsin:stream:<channel>`."""
    return f"{STREAM_PREFIX}{channel}"


def group(channel: str) -> str:
    """The consumer group of `channel`'s service on its stream: the channel's name."""
    return channel


def dead_letters(channel: str) -> str:
    """Where malformed entries of `channel`'s stream go: `tocsin:stream:<channel>:dead`."""
    return f"{STREAM_PREFIX}{channel}:dead"


def erased(channel: str) -> str:
    """Tombstones of addresses erased while work for them was pending (services/channel/erase.py):
    a sorted set of SHA-256 digests scored by the time they may go."""
    return f"{STREAM_PREFIX}{channel}:erased"
