"""The append-only audit log: each entry chained to the previous one by SHA-256."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

#: prev_hash of the first entry.
GENESIS = "0" * 64
#: Advisory lock key serialising appends (one chain, one writer at a time).
APPEND_LOCK = 0x70C517A0D17


@dataclass(frozen=True)
class Entry:
    """One audited action: who, what, when, from where, with what result."""

    seq: int
    at: datetime
    user_id: int | None
    username: str
    entity_id: int | None
    action: str
    target: str
    peer: str
    result: str
    detail: str


@dataclass(frozen=True)
class Verdict:
    """Outcome of walking the chain."""

    ok: bool
    entries: int
    first_broken_seq: int = 0
    reason: str = ""


def canonical(entry: Entry) -> bytes:
    """Canonical JSON of an entry: sorted keys, no spaces, UTC time with microseconds."""
    doc: dict[str, Any] = {
        "seq": entry.seq,
        "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "user_id": entry.user_id,
        "username": entry.username,
        "entity_id": entry.entity_id,
        "action": entry.action,
        "target": entry.target,
        "peer": entry.peer,
        "result": entry.result,
        "detail": entry.detail,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, entry: Entry) -> str:
    """SHA-256 over the previous hash and the entry's canonical JSON, as hex."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(entry)).hexdigest()


async def append(
    pool: asyncpg.Pool,
    *,
    user_id: int | None,
    username: str,
    entity_id: int | None,
    action: str,
    target: str,
    peer: str,
    result: str,
    detail: str = "",
) -> Entry:
    """Append one entry at the end of the chain (serialised by an advisory lock)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        seq, prev = (1, GENESIS) if last is None else (last["seq"] + 1, last["hash"])
        # Microseconds: what timestamptz keeps, so the stored entry hashes the same when re-read.
        at = datetime.now(UTC)
        entry = Entry(
            seq, at, user_id, username, entity_id, action, target, peer, result, detail[:2000]
        )
        await conn.execute(
            "INSERT INTO audit_log (seq, at, user_id, username, entity_id, action, target, peer,"
            " result, detail, prev_hash, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
            entry.seq,
            entry.at,
            entry.user_id,
            entry.username,
            entry.entity_id,
            entry.action,
            entry.target,
            entry.peer,
            entry.result,
            entry.detail,
            prev,
            chain_hash(prev, entry),
        )
        return entry


async def verify(pool: asyncpg.Pool, *, batch: int = 5000) -> Verdict:
    """Walk the chain from the first entry; name the first entry that does not fit."""
    prev, expected_seq, count = GENESIS, 1, 0
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        cursor = conn.cursor("SELECT * FROM audit_log ORDER BY seq", prefetch=batch)
        async for row in cursor:
            entry = Entry(
                row["seq"],
                row["at"],
                row["user_id"],
                row["username"],
                row["entity_id"],
                row["action"],
                row["target"],
                row["peer"],
                row["result"],
                row["detail"],
            )
            if entry.seq != expected_seq:
                return Verdict(False, count, expected_seq, f"entry {expected_seq} is missing")
            if row["prev_hash"] != prev:
                return Verdict(
                    False, count, entry.seq, "prev_hash does not match the previous entry's hash"
                )
            if chain_hash(prev, entry) != row["hash"]:
                return Verdict(
                    False, count, entry.seq, "entry was altered: its hash does not match"
                )
            prev, expected_seq, count = row["hash"], expected_seq + 1, count + 1
    return Verdict(True, count)
