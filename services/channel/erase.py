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
  writes a tombstone (the address' SHA-256, until a deadline, in `keys.erased`, with a random
  token in `keys.erased_tokens`) that the worker consults when it takes an entry, before each
  delivery and with each write of outcomes: a tombstoned recipient is never sent, and whatever
  is recorded for it goes under its placeholder (`placeholder`), the address the delivery
  records' erasure (services/channel/retention.py) gave its row. The entry leaves Redis when it
  is acknowledged and the stream trimmed.

The removal is answered only once every live consumer of the channel has applied its tombstone
(each reports the version it applied with its control keys, every `control_refresh_s`;
`caught_up`), and senders look again right before handing work over (the SMS bind after its
rate-limit token): from the answer on, nothing goes to the address.

Dead letters holding the address are deleted. Matching is on the address' exact JSON form in
the `to` field, so an entry is decoded only when it holds the address.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from services.channel import codec, keys

logger = logging.getLogger(__name__)

#: Entries read per XRANGE while looking for an address.
SCAN_COUNT = 200
#: Tombstones outlive the last pending entry that needs them by this much, and last at least
#: this long (a consumer down for days still finds them when it takes its entries back).
TOMBSTONE_MARGIN_S = 7 * 24 * 3600
#: Prefix of the opaque address that stands for an erased one in delivery records.
ERASED_PREFIX = "erased:"

# KEYS[1] tombstones (zset), KEYS[2] tokens (hash), KEYS[3] version; ARGV[1] now, ARGV[2] until,
# ARGV[3] a fresh token, ARGV[4..] digests. Drops what expired, keeps the token of a digest
# still tombstoned (the rows an earlier erasure renamed keep their placeholder), bumps the
# version the workers watch. Answers the token of each digest, in order, then the new version.
_TOMBSTONE = """
local zset, tokens, version = KEYS[1], KEYS[2], KEYS[3]
local now, untl, fresh = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local expired = redis.call('ZRANGEBYSCORE', zset, '-inf', '(' .. now)
for i = 1, #expired, 500 do
  redis.call('HDEL', tokens, unpack(expired, i, math.min(i + 499, #expired)))
end
redis.call('ZREMRANGEBYSCORE', zset, '-inf', '(' .. now)
local out = {}
for i = 4, #ARGV do
  local d = ARGV[i]
  local token = redis.call('HGET', tokens, d)
  if not token then
    token = fresh
    redis.call('HSET', tokens, d, token)
  end
  -- GT: a later deadline is never shortened; new members are added all the same.
  redis.call('ZADD', zset, 'GT', untl, d)
  out[#out + 1] = token
end
out[#out + 1] = redis.call('INCR', version)
return out
"""

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


def new_token() -> str:
    """A random token for one erasure: what makes its placeholders unguessable."""
    return secrets.token_hex(16)


def placeholder(token: str, alert: str, version: int) -> str:
    """The address that stands for an erased one in the delivery records of (alert, version).

    Computed from the erasure's random token, never from the address: the delivery records'
    erasure (services/channel/retention.py, `_PLACEHOLDER`, the same formula in SQL) renames a
    row to it, and a worker holding the tombstone's token records a late outcome under it, so
    that outcome lands on the renamed row. Once the tombstone expires nobody can compute it.
    """
    return ERASED_PREFIX + hashlib.sha256(f"{token}:{alert}:{version}".encode()).hexdigest()


@dataclass
class Erased:
    """What one erasure did to one channel's stream."""

    #: Entries replaced by a copy without the address (not yet delivered).
    rewritten: int = 0
    #: Entries deleted (acknowledged, or holding only the address, or dead letters).
    deleted: int = 0
    #: Pending entries left in place under a tombstone, by id.
    pending: list[str] = field(default_factory=list)
    #: The erasure token of each address (for the delivery records' erasure).
    tokens: dict[str, str] = field(default_factory=dict)
    #: The tombstones' version this erasure made (what the consumers must have applied).
    version: int = 0
    #: Whether every live consumer applied it before the erasure returned (False: one did not
    #: answer within CAUGHT_UP_WAIT_S; it applies it when it next reads its control keys).
    caught_up: bool = True


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
    redis: aioredis.Redis, channel: str, addresses: list[str], until: float
) -> tuple[dict[str, str], int]:
    """Tombstone `addresses` until `until`; their tokens (an earlier live one is kept), and the
    tombstones' new version."""
    keys_ = (keys.erased(channel), keys.erased_tokens(channel), keys.erased_version(channel))
    args = [repr(time.time()), repr(until), new_token(), *(digest(a) for a in addresses)]
    *tokens, version = await redis.eval(_TOMBSTONE, 3, *keys_, *args)
    return {a: _text(t) for a, t in zip(addresses, tokens, strict=True)}, int(version)


async def erase(
    redis: aioredis.Redis, *, channel: str, addresses: Iterable[str], wait: bool = True
) -> Erased:
    """Erase `addresses` from `channel`'s stream and dead letters (see the module's docstring);
    with `wait`, return once every live consumer applied the tombstones (`caught_up`)."""
    wanted = {a for a in addresses if a}
    done = Erased()
    if not wanted:
        return done
    ordered = sorted(wanted)
    # The tombstone first: an entry a consumer takes from now on drops the addresses.
    done.tokens, done.version = await _tombstone(
        redis, channel, ordered, time.time() + TOMBSTONE_MARGIN_S
    )
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
        await _tombstone(redis, channel, ordered, latest_expiry + TOMBSTONE_MARGIN_S)
    dead = keys.dead_letters(channel)
    found = [entry_id async for entry_id, _ in _holding(redis, dead, needles)]
    if found:
        done.deleted += int(await redis.xdel(dead, *found))
    if wait:
        done.caught_up = await caught_up(redis, channel=channel, version=done.version)
    return done


#: A removal waits at most this long for the consumers to apply its tombstones.
CAUGHT_UP_WAIT_S = 5.0
#: A consumer whose last report is older than this many of its refresh intervals (plus a
#: second) is taken for gone: a removal does not wait for it (it reads the tombstones with its
#: entries when it comes back).
_LIVE_INTERVALS = 4
#: Reports older than this are deleted by the next removal (consumers that went away).
_FORGET_S = 3600.0


@dataclass(frozen=True, slots=True)
class _Report:
    consumer: str
    #: The tombstones' version it applied.
    seen: float
    #: When it reported (Unix time), and every how many seconds it does.
    at: float
    every: float

    def live(self, now: float) -> bool:
        return now - self.at <= _LIVE_INTERVALS * self.every + 1.0


async def _reports(redis: aioredis.Redis, channel: str) -> list[_Report]:
    """The consumers' reports; those unreadable or older than _FORGET_S are deleted."""
    key = keys.consumers(channel)
    found: dict[Any, Any] = await redis.hgetall(key)
    now = time.time()
    reports: list[_Report] = []
    forget: list[Any] = []
    for consumer, report in found.items():
        try:
            seen, at, every = (float(x) for x in _text(report).split())
        except ValueError:
            forget.append(consumer)
            continue
        if now - at > _FORGET_S:
            forget.append(consumer)
        else:
            reports.append(_Report(_text(consumer), seen, at, every))
    if forget:
        await redis.hdel(key, *forget)
    return reports


async def live_consumers(redis: aioredis.Redis, *, channel: str) -> list[str]:
    """The consumers of `channel` that reported within four of their intervals and a second."""
    now = time.time()
    return [r.consumer for r in await _reports(redis, channel) if r.live(now)]


async def caught_up(
    redis: aioredis.Redis, *, channel: str, version: int, wait_s: float = CAUGHT_UP_WAIT_S
) -> bool:
    """Wait until every live consumer of `channel` applied the tombstones of `version`
    (Tombstones.report); False if one has not within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        now = time.time()
        behind = [
            r.consumer for r in await _reports(redis, channel) if r.seen < version and r.live(now)
        ]
        if not behind:
            return True
        if time.monotonic() >= deadline:
            logger.warning(
                "%d %s consumers did not apply a removal within %.1f s: %s",
                len(behind),
                channel,
                wait_s,
                ", ".join(sorted(behind)),
            )
            return False
        await asyncio.sleep(CAUGHT_UP_POLL_S)


#: How often a waiting removal reads the consumers' reports.
CAUGHT_UP_POLL_S = 0.02


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


#: What Tombstones._version holds before the first read.
_UNREAD = object()


class Tombstones:
    """The tombstones of one channel as its worker sees them: a copy in memory, read again
    whenever the erasers' version counter moved (one GET), so that the hot path costs a look
    at an empty dict while nobody was removed."""

    def __init__(self, redis: aioredis.Redis, channel: str) -> None:
        self._redis = redis
        self._key = keys.erased(channel)
        self._tokens_key = keys.erased_tokens(channel)
        self._version_key = keys.erased_version(channel)
        self._consumers_key = keys.consumers(channel)
        #: The erasers' version counter as last read (None: no erasure yet); _UNREAD before.
        self._version: object = _UNREAD
        #: Digest -> token of the live tombstones.
        self._tokens: dict[str, str] = {}
        # One read at a time: a slower read finishing last would put back an older set.
        self._reading = asyncio.Lock()

    def __bool__(self) -> bool:
        return bool(self._tokens)

    async def refresh(self) -> None:
        """Read the live tombstones (a small set: removals during the entries' lifetime)."""
        async with self._reading:
            await self._read()

    async def _read(self) -> None:
        # The version before the set: a set read with an older version is read again later.
        version = await self._redis.get(self._version_key)
        found = await self._redis.zrangebyscore(self._key, time.time(), "+inf")
        digests = [_text(d) for d in found]
        tokens: list[Any] = await self._redis.hmget(self._tokens_key, digests) if digests else []
        self._tokens = {d: _text(t) for d, t in zip(digests, tokens, strict=True) if t}
        self._version = version

    async def check(self) -> None:
        """Read the tombstones again if an erasure happened since the last read (one GET)."""
        async with self._reading:
            if (
                self._version is _UNREAD
                or await self._redis.get(self._version_key) != self._version
            ):
                await self._read()

    async def report(self, consumer: str, *, every_s: float) -> None:
        """Tell the erasers which tombstones `consumer` applies (read every `every_s`)."""
        version = int(self._version) if isinstance(self._version, bytes | str) else 0
        await self._redis.hset(
            self._consumers_key, consumer, f"{version} {time.time():.3f} {every_s:g}"
        )

    async def leave(self, consumer: str) -> None:
        """`consumer` stops: removals no longer wait for it, nor does anyone leave it work."""
        await self._redis.hdel(self._consumers_key, consumer)

    def erased(self, address: str) -> bool:
        """Whether `address` was erased while work for it was pending."""
        return bool(self._tokens) and digest(address) in self._tokens

    def placeholder(self, address: str, alert: str, version: int) -> str | None:
        """What to record instead of `address` for (alert, version); None: not erased."""
        if not self._tokens:
            return None
        token = self._tokens.get(digest(address))
        return None if token is None else placeholder(token, alert, version)


#: The channels whose streams carry each kind of contact.
PHONE_CHANNELS = ("sms", "voice")
EMAIL_CHANNELS = ("email",)


async def erase_contact(
    redis: aioredis.Redis, *, phone: str | None, email: str | None
) -> dict[str, dict[str, str]]:
    """Erase a person's number and e-mail address from every channel's stream; the erasure
    token of each address, per channel (for retention.erase_address)."""
    tokens: dict[str, dict[str, str]] = {}
    made: dict[str, int] = {}
    for channels, address in ((PHONE_CHANNELS, phone), (EMAIL_CHANNELS, email)):
        if address:
            for channel in channels:
                done = await erase(redis, channel=channel, addresses=[address], wait=False)
                tokens.setdefault(address, {})[channel] = done.tokens[address]
                made[channel] = done.version
    # Every channel's consumers at once: the removal is answered once none will send.
    await asyncio.gather(
        *(caught_up(redis, channel=channel, version=v) for channel, v in made.items())
    )
    return tokens
