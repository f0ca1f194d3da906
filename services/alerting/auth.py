"""Credentials and tokens: scrypt-hashed passwords, short-lived HS256 tokens, who is calling."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import jwt
import redis.asyncio as aioredis

from services.alerting import keys
from services.alerting.model import Role
from services.kernel.errors import (
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)

#: scrypt cost parameters (RFC 7914): 16 MiB of memory per hash, about 50 ms.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
#: Shortest password accepted.
MIN_PASSWORD_LENGTH = 12
#: The one message for a wrong user or password: it does not say which.
BAD_CREDENTIALS = "unknown user or wrong password"
ALGORITHM = "HS256"
#: Count one failed login; the first failure of a window sets its expiry (atomic in Redis 6 too).
COUNT_FAILURE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, their entity (None for an admin without one) and role."""

    user_id: int
    username: str
    entity_id: int | None
    role: Role

    @property
    def is_admin(self) -> bool:
        """Whether the caller has the crisis centre's admin role."""
        return self.role is Role.ADMIN


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password_sync(password: str) -> str:
    """Hash a password with a fresh salt: `scrypt$N$r$p$salt$hash`."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password_sync(password: str, stored: str) -> bool:
    """Whether `password` matches the stored scrypt hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


async def hash_password(password: str) -> str:
    """Hash a password off the event loop, after checking its length."""
    check_password(password)
    return await asyncio.to_thread(hash_password_sync, password)


def check_password(password: str, *, field: str = "password") -> None:
    """Refuse a password that is too short."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(field, f"at least {MIN_PASSWORD_LENGTH} characters")


#: A real hash to check against when the user does not exist, so that timing does not tell.
_DUMMY_HASH = hash_password_sync(secrets.token_urlsafe(16))


def issue_token(
    *, principal: Principal, key: str, issuer: str, ttl_s: int, now: float | None = None
) -> tuple[str, datetime]:
    """A signed token for `principal` and the moment it expires."""
    issued = time.time() if now is None else now
    expires = int(issued) + ttl_s
    claims = {
        "sub": str(principal.user_id),
        "iss": issuer,
        "iat": int(issued),
        "exp": expires,
        "jti": secrets.token_hex(8),
    }
    token = jwt.encode(claims, key, algorithm=ALGORITHM)
    return token, datetime.fromtimestamp(expires, UTC)


def token_user(*, token: str, key: str, issuer: str) -> int:
    """The user id of a valid, unexpired token; Unauthenticated otherwise."""
    return token_claims(token=token, key=key, issuer=issuer)[0]


def token_claims(*, token: str, key: str, issuer: str) -> tuple[int, int]:
    """The user id and expiry (Unix seconds) of a valid, unexpired token; else Unauthenticated."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=issuer,
            options={"require": ["sub", "exp", "iat", "iss"]},
        )
        return int(claims["sub"]), int(claims["exp"])
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired: log in again") from None
    except (jwt.InvalidTokenError, ValueError):
        raise Unauthenticated("invalid token") from None


def bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    """The token of the `authorization: Bearer ...` metadata entry; Unauthenticated without one."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
    raise Unauthenticated("missing authorization: Bearer <token> (AuthService.Login)")


async def load_principal(pool: asyncpg.Pool, *, user_id: int) -> Principal:
    """The current identity of a token's user: refused if the account was disabled since."""
    row = await pool.fetchrow(
        "SELECT id, username, entity_id, role, disabled FROM users WHERE id = $1", user_id
    )
    if row is None or row["disabled"]:
        raise Unauthenticated("account unknown or disabled")
    return Principal(row["id"], row["username"], row["entity_id"], Role(row["role"]))


@dataclass(frozen=True)
class LoginGuard:
    """Refuses a user name after too many failed logins in a window (guessing passwords)."""

    redis: aioredis.Redis
    max_failures: int
    window_s: int

    async def check(self, username: str) -> None:
        """ResourceExhausted while the name is locked out."""
        failures = await self.redis.get(keys.login_failures(username))
        if failures is not None and int(failures) >= self.max_failures:
            ttl = await self.redis.ttl(keys.login_failures(username))
            raise ResourceExhausted(
                f"too many failed logins: try again in {max(ttl, 1)} s or ask an admin"
            )

    async def failed(self, username: str) -> None:
        """Count a failure; the window starts at the first one."""
        await self.redis.eval(COUNT_FAILURE, 1, keys.login_failures(username), self.window_s)

    async def succeeded(self, username: str) -> None:
        """Forget the failures of a name that logged in."""
        await self.redis.delete(keys.login_failures(username))


async def login(
    pool: asyncpg.Pool, *, guard: LoginGuard, username: str, password: str
) -> Principal:
    """Check a user's own credential; Unauthenticated with one message for every failure."""
    await guard.check(username)
    try:
        who = await _check_credential(pool, username=username, password=password)
    except Unauthenticated:
        await guard.failed(username)
        raise
    await guard.succeeded(username)
    return who


async def _check_credential(pool: asyncpg.Pool, *, username: str, password: str) -> Principal:
    row = await pool.fetchrow(
        "SELECT id, username, entity_id, role, disabled, password_hash FROM users"
        " WHERE username = $1",
        username,
    )
    stored = _DUMMY_HASH if row is None else row["password_hash"]
    ok = await asyncio.to_thread(verify_password_sync, password, stored)
    if row is None or not ok or row["disabled"]:
        raise Unauthenticated(BAD_CREDENTIALS)
    return Principal(row["id"], row["username"], row["entity_id"], Role(row["role"]))


async def change_password(
    pool: asyncpg.Pool, *, principal: Principal, current: str, new: str
) -> None:
    """Replace the caller's own password after checking the current one."""
    stored = await pool.fetchval("SELECT password_hash FROM users WHERE id = $1", principal.user_id)
    if stored is None or not await asyncio.to_thread(verify_password_sync, current, stored):
        raise PermissionDenied("current password is wrong")
    check_password(new, field="new_password")
    hashed = await hash_password(new)
    await pool.execute(
        "UPDATE users SET password_hash = $2 WHERE id = $1", principal.user_id, hashed
    )


def require_admin(principal: Principal) -> None:
    """Refuse a caller without the admin role."""
    if not principal.is_admin:
        raise PermissionDenied("administration calls need the admin role (crisis centre)")


def require_entity(principal: Principal) -> int:
    """The caller's entity; refused for an account without one."""
    if principal.entity_id is None:
        raise PermissionDenied("this account belongs to no entity and cannot issue alerts")
    return principal.entity_id
