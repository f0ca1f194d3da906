"""Credentials and tokens: scrypt-hashed passwords, short-lived HS256 tokens, who is calling."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
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

#: scrypt cost parameters (RFC 7914), OWASP's current guidance: N=2^17, r=8, p=1 (128 MiB per
#: hash). A stored hash of a lower cost is replaced at its user's next login.
SCRYPT_LOG2_N = 17
SCRYPT_R = 8
SCRYPT_P = 1
#: Shortest password accepted.
MIN_PASSWORD_LENGTH = 12
#: Longest user name and password looked at (longer ones are refused before any hashing).
MAX_USERNAME_LENGTH = 64
MAX_PASSWORD_LENGTH = 256
#: The one message for a wrong user or password: it does not say which.
BAD_CREDENTIALS = "unknown user or wrong password"
ALGORITHM = "HS256"
#: Shortest signing key accepted, in characters (256 bits of base64url-encoded randomness).
MIN_KEY_LENGTH = 32


@dataclass
class _Cost:
    """The scrypt cost new hashes get; set once at start-up (`use_cost`)."""

    log2_n: int = SCRYPT_LOG2_N


_cost = _Cost()


def use_cost(log2_n: int) -> None:
    """Set the scrypt cost of new hashes (the service's setting; tests use a cheaper one)."""
    if not 10 <= log2_n <= 20:
        raise ValueError("scrypt log2(N) must be between 10 and 20")
    _cost.log2_n = log2_n


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, their entity (None for an admin without one) and role."""

    user_id: int
    username: str
    entity_id: int | None
    role: Role
    #: Generation of the account's tokens (bumped by a password change or a disable).
    generation: int = 0

    @property
    def is_admin(self) -> bool:
        """Whether the caller has the crisis centre's admin role."""
        return self.role is Role.ADMIN


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, *, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL refuses more than maxmem bytes; scrypt needs 128 * r * N (and a little more).
    maxmem = 129 * r * n * p + 1024 * 1024
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def hash_password_sync(password: str, *, log2_n: int | None = None) -> str:
    """Hash a password with a fresh salt: `scrypt$N$r$p$salt$hash`."""
    n = 2 ** (log2_n or _cost.log2_n)
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def needs_rehash(stored: str) -> bool:
    """Whether a stored hash is of a lower cost than new hashes get."""
    try:
        scheme, n, r, p, _, _ = stored.split("$")
        return scheme != "scrypt" or (int(n), int(r), int(p)) < (
            2**_cost.log2_n,
            SCRYPT_R,
            SCRYPT_P,
        )
    except ValueError:
        return True


def verify_password_sync(password: str, stored: str) -> bool:
    """Whether `password` matches the stored scrypt hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        if int(n) > 2**20 or int(r) > 32 or int(p) > 4:
            return False  # a stored cost nobody here wrote: refuse rather than exhaust memory
        actual = _scrypt(
            password,
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


async def hash_password(password: str) -> str:
    """Hash a password off the event loop, after checking its length."""
    check_password(password)
    return await asyncio.to_thread(hash_password_sync, password)


def check_password(password: str, *, field: str = "password") -> None:
    """Refuse a password that is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(field, f"at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidArgument(field, f"at most {MAX_PASSWORD_LENGTH} characters")


@functools.cache
def _dummy_hash(log2_n: int) -> str:
    """A real hash to check against when the user does not exist, so that timing does not tell."""
    return hash_password_sync(secrets.token_urlsafe(16), log2_n=log2_n)


def key_id(key: str) -> str:
    """The `kid` of a signing key: the first 8 bytes of its SHA-256, as hex (not the key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TokenKeys:
    """The key that signs new tokens and every key still accepted, by key id (rotation)."""

    signing_kid: str
    keys: dict[str, str]

    @classmethod
    def of(cls, current: str, *previous: str) -> TokenKeys:
        """Sign with `current`; also accept tokens signed with a `previous` key."""
        for key in (current, *previous):
            if len(key) < MIN_KEY_LENGTH:
                raise ValueError(f"a signing key needs at least {MIN_KEY_LENGTH} characters")
        return cls(key_id(current), {key_id(k): k for k in (current, *previous) if k})

    @property
    def signing_key(self) -> str:
        """The key new tokens are signed with."""
        return self.keys[self.signing_kid]


def issue_token(
    *,
    principal: Principal,
    keys: TokenKeys,
    issuer: str,
    ttl_s: int,
    now: float | None = None,
) -> tuple[str, datetime]:
    """A signed token for `principal` (of its current generation) and the moment it expires."""
    issued = time.time() if now is None else now
    expires = int(issued) + ttl_s
    claims = {
        "sub": str(principal.user_id),
        "iss": issuer,
        "iat": int(issued),
        "exp": expires,
        "gen": principal.generation,
        "jti": secrets.token_hex(8),
    }
    token = jwt.encode(
        claims, keys.signing_key, algorithm=ALGORITHM, headers={"kid": keys.signing_kid}
    )
    return token, datetime.fromtimestamp(expires, UTC)


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token says."""

    user_id: int
    expires: int
    generation: int


def token_claims(*, token: str, keys: TokenKeys, issuer: str) -> Claims:
    """The claims of a valid, unexpired token signed by a key still accepted; else
    Unauthenticated."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = keys.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthenticated("invalid token: unknown signing key, log in again")
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=issuer,
            options={"require": ["sub", "exp", "iat", "iss", "gen"]},
        )
        return Claims(int(claims["sub"]), int(claims["exp"]), int(claims["gen"]))
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired: log in again") from None
    except (jwt.InvalidTokenError, ValueError, TypeError):
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


async def load_principal(pool: asyncpg.Pool, *, claims: Claims) -> Principal:
    """The current identity of a token's user: refused if the account was disabled or its
    password changed since the token was issued (the token's generation is no longer current)."""
    row = await pool.fetchrow(
        "SELECT id, username, entity_id, role, disabled, token_generation FROM users WHERE id = $1",
        claims.user_id,
    )
    if row is None or row["disabled"]:
        raise Unauthenticated("account unknown or disabled")
    if row["token_generation"] != claims.generation:
        raise Unauthenticated("token revoked (password changed): log in again")
    return _principal(row)


def _principal(row: asyncpg.Record) -> Principal:
    return Principal(
        row["id"], row["username"], row["entity_id"], Role(row["role"]), row["token_generation"]
    )


#: One login attempt, counted BEFORE the password is checked (so that parallel guesses cannot
#: pass the limit), against three counters: this user from this address (KEYS[1]), this user
#: from anywhere (KEYS[2], not applied from an address the user logged in from before: KEYS[3]
#: is that set), this address for any user (KEYS[4]). Answers {0, 0} when admitted, else
#: {which counter, its milliseconds left}.
ATTEMPT = """
local function full(key, limit)
  return tonumber(redis.call('GET', key) or '0') >= tonumber(limit)
end
if full(KEYS[1], ARGV[3]) then return {1, redis.call('PTTL', KEYS[1])} end
if full(KEYS[4], ARGV[5]) then return {4, redis.call('PTTL', KEYS[4])} end
local known = redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1
if (not known) and full(KEYS[2], ARGV[4]) then return {2, redis.call('PTTL', KEYS[2])} end
for _, key in ipairs({KEYS[1], KEYS[2], KEYS[4]}) do
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, ARGV[2]) end
end
return {0, 0}
"""
#: A correct password: the attempt was no failure (undo its count), this user at this address
#: starts afresh, and the address becomes a known place of the user (ARGV[2] seconds).
SUCCEEDED = """
for _, key in ipairs({KEYS[2], KEYS[4]}) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
redis.call('DEL', KEYS[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 0
"""
_WHY = {
    1: "too many failed logins of this user from this address",
    2: "too many failed logins of this user from new places",
    4: "too many failed logins from this address",
}
#: Days an address stays a known place of a user after a login from it.
KNOWN_PLACE_DAYS = 90


def client_address(peer: str) -> str:
    """The client's address without its port, from a gRPC peer (`ipv4:10.0.0.1:5000`)."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rsplit(":", 1)[0]
        return host.strip("[]")
    return peer[:100]


@dataclass(frozen=True)
class LoginGuard:
    """Limits password guesses per user and address, per user, and per address, atomically.

    Every attempt is counted before its password is checked. A user locked out by guesses from
    elsewhere still logs in from an address where they logged in before (a known place): an
    attacker can slow an account down, not lock its owner out. Hashing runs at most
    `concurrent_hashes` at a time, so logins cannot exhaust the CPU or memory (128 MiB each).
    """

    redis: aioredis.Redis
    #: Failures of one user from one address (and from new places) before a pause.
    max_failures: int
    #: Seconds a run of failures is remembered.
    window_s: int
    #: Failures from one address, whatever the user names, before a pause.
    address_max_failures: int = 100
    #: Password hashes computed at once by this process.
    concurrent_hashes: int = 2
    _hashing: asyncio.Semaphore = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hashing", asyncio.Semaphore(self.concurrent_hashes))

    def _keys(self, username: str, address: str) -> list[str]:
        user = hashlib.sha256(username.encode()).hexdigest()[:32]
        place = hashlib.sha256(address.encode()).hexdigest()[:32]
        return [
            keys.login_failures(f"user-at:{user}:{place}"),
            keys.login_failures(f"user:{user}"),
            keys.login_places(user),
            keys.login_failures(f"address:{place}"),
        ]

    async def attempt(self, *, username: str, address: str) -> None:
        """Count an attempt; ResourceExhausted (saying for how long) when a limit is reached."""
        which, ms = await self.redis.eval(
            ATTEMPT,
            4,
            *self._keys(username, address),
            address,
            self.window_s,
            self.max_failures,
            self.max_failures,
            self.address_max_failures,
        )
        if which:
            wait = max(int(ms) // 1000, 1)
            raise ResourceExhausted(f"{_WHY[int(which)]}: try again in {wait} s")

    async def succeeded(self, *, username: str, address: str) -> None:
        """The password was right: undo its count and remember the place."""
        await self.redis.eval(
            SUCCEEDED, 4, *self._keys(username, address), address, KNOWN_PLACE_DAYS * 86400
        )

    async def verify(self, password: str, stored: str) -> bool:
        """Check a password against a stored hash off the event loop, a few at a time."""
        async with self._hashing:
            return await asyncio.to_thread(verify_password_sync, password, stored)


def check_username(username: str) -> None:
    """Refuse an empty, overlong or control-character user name before any work is done."""
    if not username or len(username) > MAX_USERNAME_LENGTH:
        raise InvalidArgument("username", f"1 to {MAX_USERNAME_LENGTH} characters")
    if any(not c.isprintable() for c in username):
        raise InvalidArgument("username", "must not contain control characters")


async def login(
    pool: asyncpg.Pool, *, guard: LoginGuard, username: str, password: str, address: str
) -> Principal:
    """Check a user's own credential; Unauthenticated with one message for every failure.

    A hash of a lower cost than today's is replaced by one of today's cost.
    """
    check_username(username)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise Unauthenticated(BAD_CREDENTIALS)
    await guard.attempt(username=username, address=address)
    row = await pool.fetchrow(
        "SELECT id, username, entity_id, role, disabled, password_hash, token_generation"
        " FROM users WHERE username = $1",
        username,
    )
    stored = _dummy_hash(_cost.log2_n) if row is None else row["password_hash"]
    ok = await guard.verify(password, stored)
    if row is None or not ok or row["disabled"]:
        raise Unauthenticated(BAD_CREDENTIALS)
    await guard.succeeded(username=username, address=address)
    if needs_rehash(stored):
        await pool.execute(
            "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
            row["id"],
            stored,
            await asyncio.to_thread(hash_password_sync, password),
        )
    return _principal(row)


async def change_password(
    pool: asyncpg.Pool,
    *,
    guard: LoginGuard,
    principal: Principal,
    current: str,
    new: str,
    address: str,
) -> None:
    """Replace the caller's own password after checking the current one (guesses limited as
    logins are); every token issued before stops working."""
    check_password(new, field="new_password")
    await guard.attempt(username=principal.username, address=address)
    stored = await pool.fetchval("SELECT password_hash FROM users WHERE id = $1", principal.user_id)
    if (
        stored is None
        or len(current) > MAX_PASSWORD_LENGTH
        or not await guard.verify(current, stored)
    ):
        raise PermissionDenied("current password is wrong")
    await guard.succeeded(username=principal.username, address=address)
    hashed = await hash_password(new)
    await pool.execute(
        "UPDATE users SET password_hash = $2, token_generation = token_generation + 1"
        " WHERE id = $1",
        principal.user_id,
        hashed,
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
