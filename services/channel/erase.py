"""Erase one recipient's address from a channel's stream (a citizen or group member removed).

A work entry is immutable and may be in one of three places when the removal lands:

- **not yet delivered** to the channel's group (after its last-delivered id): it is replaced,
  in one Lua script that checks this, by a copy without the address (XADD) and deleted (XDEL).
  The check and the swap are atomic, so a consumer reads either the old entry before (then it
  is pending, below) or the copy after, never both.
- **delivered and acknowledged**: its work is done and nothing reads it again: deleted.
- **pending** (in a consumer's hands, or waiting to be claimed from a dead one): left in place.
  A copy would send its other recipients twice (the worker hands back recipients still queued),
  and deleting it would lose their work when a claimer finds it gone. Instead the removal first
  writes a tombstone (the address' SHA-256, until a deadline, in `keys.erased`) that the
  consumer consults when it takes an entry: a tombstoned recipient is recorded `cancelled`
  under an opaque address and never sent. The entry leaves Redis when it is acknowledged and
  the stream trimmed.

Dead letters holding the address are deleted. Matching is on the address' exact JSON form in
the `to` field, so an entry is decoded only when it holds the address.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from services.channel import codec, keys

#: Entries read per XRANGE while looking for an address.
SCAN_COUNT = 200
#: Tombstones outlive the last pending entry that needs them by this much, and last at least
#: this long (a consumer down for days still finds them when it takes its entries back).
TOMBSTONE_MARGIN_S = 7 * 24 * 3600
#: Prefix of the opaque address that stands for an erased one in delivery records.
ERASED_PREFIX = "erased:"

# KEYS[1] stream; ARGV[1] group, ARGV[2] entry id, ARGV[3..] the copy's fields (none: delete).
# Answers the copy's id, "deleted", "pending" or "gone".
_REPLACE = """
local stream, group, id = KEYS[1], ARGV[1], ARGV[2]
if #redis.call('XRANGE', stream, id, id) == 0 then return 'gone' end
local last = '0-0'
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local name, delivered
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then delivered = g[i + 1] end
  end
  if name == group then last = delivered end
end
local function split(x)
  local ms, seq = string.match(x, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local ims, iseq = split(id)
local lms, lseq = split(last)
if ims > lms or (ims == lms and iseq > lseq) then
  local copy = 'deleted'
  if #ARGV > 2 then copy = redis.call('XADD', stream, '*', unpack(ARGV, 3)) end
  redis.call('XDEL', stream, id)
  return copy
end
if #redis.call('XPENDING', stream, group, id, id, 1) > 0 then return 'pending' end
redis.call('XDEL', stream, id)
return 'deleted'
"""


def digest(address: str) -> str:
    """The tombstone form of an address (SHA-256, hex)."""
    return hashlib.sha256(address.encode()).hexdigest()


def opaque_address() -> str:
    """An address standing for an erased one in a delivery record (unique, meaningless)."""
    return ERASED_PREFIX + secrets.token_hex(16)


@dataclass
class Erased:
    """What one erasure did to one channel's stream."""

    #: Entries replaced by a copy without the address (not yet delivered).
    rewritten: int = 0
    #: Entries deleted (acknowledged, or holding only the address, or dead letters).
    deleted: int = 0
    #: Pending entries left in place under a tombstone, by id.
    pending: list[str] = field(default_factory=list)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _needles(addresses: Iterable[str]) -> dict[bytes, str]:
    """Each address' exact JSON form inside a `to` field (with its opening quote)."""
    return {b'["' + codec.escape_address(a.encode()) + b'"': a for a in addresses}


def _holds(fields: Mapping[Any, Any], needles: Mapping[bytes, str]) -> bool:
    raw = fields.get(b"to", fields.get("to", b""))
    to = raw if isinstance(raw, bytes) else str(raw).encode()
    return any(n in to for n in needles)


def _copy_without(fields: Mapping[Any, Any], addresses: set[str]) -> list[str] | None:
    """The entry's fields with `addresses` left out of `to`; None when nobody is left."""
    work = codec.decode(fields)
    kept = [(a, lang) for a, lang in work.to if a not in addresses]
    if not kept:
        return None
    text = {_text(k): _text(v) for k, v in fields.items()}
    text["to"] = codec.encode(codec.WorkEntry(work.header, kept, work.batch))["to"]
    return [part for item in text.items() for part in item]


async def _tombstone(
    redis: aioredis.Redis, channel: str, addresses: set[str], until: float
) -> None:
    key = keys.erased(channel)
    now = time.time()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, "-inf", now)
        # GT: a later deadline is never shortened; new members are added all the same.
        pipe.zadd(key, {digest(a): until for a in addresses}, gt=True)
        await pipe.execute()


async def erase(redis: aioredis.Redis, *, channel: str, addresses: Iterable[str]) -> Erased:
    """Erase `addresses` from `channel`'s stream and dead letters (see the module's docstring)."""
    wanted = {a for a in addresses if a}
    done = Erased()
    if not wanted:
        return done
    # The tombstone first: an entry a consumer takes from now on drops the addresses.
    await _tombstone(redis, channel, wanted, time.time() + TOMBSTONE_MARGIN_S)
    needles = _needles(wanted)
    stream, group = keys.stream(channel), keys.group(channel)
    latest_expiry = 0.0
    async for entry_id, fields in _holding(redis, stream, needles):
        copy = _copy_without(fields, wanted)
        answer = _text(await redis.eval(_REPLACE, 1, stream, group, entry_id, *(copy or ())))
        if answer == "pending":
            done.pending.append(entry_id)
            expires = float(_text(fields.get(b"expires", fields.get("expires", 0))))
            latest_expiry = max(latest_expiry, expires)
        elif answer == "deleted":
            done.deleted += 1
        elif answer != "gone":
            done.rewritten += 1
    if latest_expiry:
        await _tombstone(redis, channel, wanted, latest_expiry + TOMBSTONE_MARGIN_S)
    dead = keys.dead_letters(channel)
    found = [entry_id async for entry_id, _ in _holding(redis, dead, needles)]
    if found:
        done.deleted += int(await redis.xdel(dead, *found))
    return done


async def _holding(
    redis: aioredis.Redis, stream: str, needles: Mapping[bytes, str]
) -> AsyncIterator[tuple[str, Mapping[Any, Any]]]:
    """The entries of `stream` whose `to` holds one of the needles, a page at a time."""
    start = "-"
    while True:
        page: list[Any] = await redis.xrange(stream, min=start, max="+", count=SCAN_COUNT) or []
        for raw_id, fields in page:
            if fields and _holds(fields, needles):
                yield _text(raw_id), fields
        if len(page) < SCAN_COUNT:
            return
        start = "(" + _text(page[-1][0])


class Tombstones:
    """The tombstones of one channel, as a consumer reads them (refreshed with each take)."""

    def __init__(self, redis: aioredis.Redis, channel: str) -> None:
        self._redis = redis
        self._key = keys.erased(channel)
        self._digests: frozenset[str] = frozenset()

    async def refresh(self) -> None:
        """Read the live tombstones (a small set: removals during the entries' lifetime)."""
        found = await self._redis.zrangebyscore(self._key, time.time(), "+inf")
        self._digests = frozenset(_text(d) for d in found)

    def erased(self, address: str) -> bool:
        """Whether `address` was erased while work for it was pending."""
        return bool(self._digests) and digest(address) in self._digests


#: The channels whose streams carry each kind of contact.
PHONE_CHANNELS = ("sms", "voice")
EMAIL_CHANNELS = ("email",)


async def erase_contact(redis: aioredis.Redis, *, phone: str | None, email: str | None) -> None:
    """Erase a person's number and e-mail address from every channel's stream."""
    for channels, address in ((PHONE_CHANNELS, phone), (EMAIL_CHANNELS, email)):
        if address:
            for channel in channels:
                await erase(redis, channel=channel, addresses=[address])
