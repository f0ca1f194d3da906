"""Logins: atomic limits per user, address and place; revocation; key rotation; scrypt cost."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import admin, auth
from services.alerting.auth import LoginGuard, Principal, TokenKeys, issue_token, token_claims
from services.alerting.model import Role
from services.alerting.settings import Settings
from services.kernel.errors import InvalidArgument, ResourceExhausted, Unauthenticated
from services.kernel.settings import SettingsError, load_settings
from tests.services.alerting.conftest import ISSUER, JWT_KEY, PASSWORD, Harness

GUESSES = 50
LIMIT = 5


@pytest.fixture
async def owner(pg_pool: asyncpg.Pool) -> str:
    """An issuer-less admin account `owner` with PASSWORD, at the cheap test cost."""
    auth.use_cost(14)
    await admin.bootstrap_admin(pg_pool, username="owner", password=PASSWORD)
    return "owner"


def _guard(redis: aioredis.Redis) -> LoginGuard:
    return LoginGuard(redis=redis, max_failures=LIMIT, window_s=60, address_max_failures=30)


async def _outcome(coro: object) -> str:
    try:
        await coro  # type: ignore[misc]
    except (Unauthenticated, ResourceExhausted) as exc:
        return type(exc).__name__
    return "ok"


async def test_parallel_guesses_cannot_pass_the_limit(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, owner: str
) -> None:
    guard = _guard(redis_client)
    outcomes = await asyncio.gather(
        *(
            _outcome(
                auth.login(
                    pg_pool, guard=guard, username=owner, password=f"guess {i}!", address="6.6.6.6"
                )
            )
            for i in range(GUESSES)
        )
    )
    assert outcomes.count("Unauthenticated") == LIMIT
    assert outcomes.count("ResourceExhausted") == GUESSES - LIMIT


async def test_an_attacker_elsewhere_does_not_lock_the_owner_out_of_a_known_place(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, owner: str
) -> None:
    guard = _guard(redis_client)
    home, attacker, new_place = "10.0.0.7", "6.6.6.6", "192.0.2.1"
    await auth.login(pg_pool, guard=guard, username=owner, password=PASSWORD, address=home)
    for i in range(LIMIT):
        with pytest.raises(Unauthenticated):
            await auth.login(
                pg_pool, guard=guard, username=owner, password=f"guess {i}!", address=attacker
            )
    # The attacker's address is paused, even with the right password...
    with pytest.raises(ResourceExhausted, match="this user from this address"):
        await auth.login(pg_pool, guard=guard, username=owner, password=PASSWORD, address=attacker)
    # ...and so is any place the owner never logged in from,
    with pytest.raises(ResourceExhausted, match="from new places"):
        await auth.login(pg_pool, guard=guard, username=owner, password=PASSWORD, address=new_place)
    # but the owner at home logs in.
    who = await auth.login(pg_pool, guard=guard, username=owner, password=PASSWORD, address=home)
    assert who.username == owner


async def test_one_address_cannot_spray_many_names(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, owner: str
) -> None:
    guard = _guard(redis_client)
    outcomes = [
        await _outcome(
            auth.login(
                pg_pool, guard=guard, username=f"user{i}", password="guess!!", address="6.6.6.6"
            )
        )
        for i in range(32)
    ]
    assert outcomes[:30] == ["Unauthenticated"] * 30
    assert outcomes[30:] == ["ResourceExhausted"] * 2


async def test_bad_user_names_are_refused_before_any_work(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    guard = _guard(redis_client)
    for name in ("x" * 256 * 1024, "nul\x00name", ""):
        with pytest.raises(InvalidArgument) as info:
            await auth.login(pg_pool, guard=guard, username=name, password="p" * 12, address="a")
        assert info.value.field == "username"


async def test_an_old_hash_is_upgraded_to_todays_cost_at_login(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, owner: str
) -> None:
    before = await pg_pool.fetchval("SELECT password_hash FROM users WHERE username = $1", owner)
    assert before.startswith(f"scrypt${2**14}$8$1$")
    auth.use_cost(auth.SCRYPT_LOG2_N)
    try:
        await auth.login(
            pg_pool, guard=_guard(redis_client), username=owner, password=PASSWORD, address="a"
        )
    finally:
        auth.use_cost(14)
    after = await pg_pool.fetchval("SELECT password_hash FROM users WHERE username = $1", owner)
    assert after.startswith(f"scrypt${2**17}$8$1$")
    assert auth.verify_password_sync(PASSWORD, after)


def test_tokens_carry_a_key_id_and_a_previous_key_stays_valid_after_rotation() -> None:
    old, new = "o" * 40, "n" * 40
    who = Principal(7, "someone", None, Role.ADMIN, generation=3)
    token, _ = issue_token(principal=who, keys=TokenKeys.of(old), issuer=ISSUER, ttl_s=60)
    rotated = TokenKeys.of(new, old)
    claims = token_claims(token=token, keys=rotated, issuer=ISSUER)
    assert (claims.user_id, claims.generation) == (7, 3)
    fresh, _ = issue_token(principal=who, keys=rotated, issuer=ISSUER, ttl_s=60)
    assert token_claims(token=fresh, keys=TokenKeys.of(new), issuer=ISSUER).user_id == 7
    # Once the old key is dropped, its tokens end.
    with pytest.raises(Unauthenticated, match="unknown signing key"):
        token_claims(token=token, keys=TokenKeys.of(new), issuer=ISSUER)


async def test_a_password_change_revokes_live_tokens_and_is_guess_limited(
    harness: Harness,
) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    second = await harness.login("mayor.gent")
    new_password = "a brand new passphrase"
    await client.auth.ChangePassword(
        pb.ChangePasswordRequest(current_password=PASSWORD, new_password=new_password),
        metadata=client.metadata,
    )
    for old in (client, second):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await old.alerts.ListAlerts(pb.ListAlertsRequest(), metadata=old.metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (info.value.details() or "")
    fresh = await harness.login("mayor.gent", new_password)
    codes = []
    for i in range(5):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await fresh.auth.ChangePassword(
                pb.ChangePasswordRequest(
                    current_password=f"guess number {i}", new_password="whatever it is now"
                ),
                metadata=fresh.metadata,
            )
        codes.append(info.value.code())
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert grpc.StatusCode.PERMISSION_DENIED in codes


def test_a_too_short_key_is_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOCSIN_JWT_KEY", "short-secret-value")
    with pytest.raises(SettingsError) as info:
        load_settings(Settings, DATABASE_URL="postgresql://x", REDIS_URL="redis://x")
    assert "TOCSIN_JWT_KEY" in str(info.value)
    assert "short-secret-value" not in str(info.value)
    assert JWT_KEY not in str(info.value)
