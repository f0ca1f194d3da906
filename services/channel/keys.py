"""Redis keys of the channel worker: a channel's work stream, its group, its dead letters."""

from __future__ import annotations

#: Prefix of every work stream (services/kernel/keys.py names the SMS, voice and e-mail ones).
STREAM_PREFIX = "tocsin:stream:"
#: Dead letters stay at most this many entries (XADD MAXLEN ~): they are for reading, not work.
DEAD_LETTER_MAXLEN = 10_000


#: The lane (codec.Priority) whose stream keeps the channel's plain name: the least urgent, so
#: that a writer that chooses no lane never goes ahead of an emergency.
PLAIN_LANE = "bulk"


def stream(channel: str, priority: str = PLAIN_LANE) -> str:
    """The work stream of `channel`'s lane `priority` (codec.Priority): `tocsin:stream:<channel>`
    for tests, exercises and API traffic (the bulk lane), `tocsin:stream:<channel>:emergency` and
    `tocsin:stream:<channel>:general` for the lanes served before it."""
    if priority == PLAIN_LANE:
        return f"{STREAM_PREFIX}{channel}"
    return f"{STREAM_PREFIX}{channel}:{priority}"


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


def erased_tokens(channel: str) -> str:
    """The random token of each tombstone of `channel` (digest -> token, a hash), from which
    the placeholder of an erased address in delivery records is computed."""
    return f"{STREAM_PREFIX}{channel}:erased:tokens"


def consumers(channel: str) -> str:
    """The live consumers of `channel`, each reporting at start and every `control_refresh_s`
    (a hash: consumer -> "<tombstones version applied> <unix time> <refresh seconds>"): a
    removal waits until every live one has its tombstone, and a queued recipient held by a live
    one is not sent by another (services/channel/erase.py, store.py)."""
    return f"{STREAM_PREFIX}{channel}:consumers"


def erased_version(channel: str) -> str:
    """A counter every erasure of `channel` increments: workers read the tombstones again when
    it moved."""
    return f"{STREAM_PREFIX}{channel}:erased:version"
