"""The one place every call passes: authenticate the caller, then audit what happened."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc

from services.alerting import audit
from services.alerting.auth import Principal, TokenKeys, bearer, load_principal, token_claims
from services.kernel import context as kernel_context
from services.kernel.cache import TtlCache
from services.kernel.errors import ServiceError

logger = logging.getLogger(__name__)


@dataclass
class Call:
    """One call in progress: its caller once known, and what the audit entry will say."""

    action: str
    peer: str
    target: str = ""
    detail: str = ""
    caller: Principal | None = None

    @property
    def principal(self) -> Principal:
        """The authenticated caller (set before the handler body runs)."""
        assert self.caller is not None, "call not authenticated"
        return self.caller


#: Tokens remembered at most; past this, the expired ones are dropped (all, if none had expired).
MAX_CACHED_TOKENS = 10_000


class Gate:
    """Authenticates each call from its bearer token and appends its outcome to the audit log."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        jwt_key: str,
        token_issuer: str,
        previous_jwt_keys: tuple[str, ...] = (),
        audit_key: bytes = b"",
        anonymous_audit_per_s: float = 20.0,
        auth_cache_s: float = 1.0,
        audit_batch: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        #: The key signing new tokens and the keys still accepted (rotation), by key id.
        self.keys = TokenKeys.of(jwt_key, *previous_jwt_keys)
        self.token_issuer = token_issuer
        #: token -> the caller it named, until `auth_cache_s` passed or the token expired (Unix
        #: seconds: a token's expiry is one).
        self._callers: TtlCache[str, Principal] = TtlCache(
            ttl_s=auth_cache_s, max_entries=MAX_CACHED_TOKENS, clock=clock
        )
        #: Key of the audit chain (kept out of the database).
        self.audit_key = audit_key
        self._audit = audit.Writer(pool, max_batch=audit_batch, key=audit_key)
        #: Refusals of callers nobody knows are audited at this rate; the rest are counted and
        #: written as one summary entry, so that an anonymous caller cannot fill the disk.
        self._anonymous = _Budget(rate=anonymous_audit_per_s, clock=clock)
        self._suppressed: dict[tuple[str, str], int] = {}

    async def authenticate(self, metadata: Any) -> Principal:
        """The caller named by a valid token in `metadata`.

        A token checked (signature, expiry, account enabled) less than `auth_cache_s` ago is
        trusted without checking again, so a disabled account's tokens stop within that time
        (at once in this process: DisableUser calls `forget_user`).
        """
        token = bearer(metadata)
        cached = self._callers.get(token)
        if cached is not None:
            return cached
        claims = token_claims(token=token, keys=self.keys, issuer=self.token_issuer)
        who = await load_principal(self._pool, claims=claims)
        self._callers.put(token, who, until=claims.expires)
        return who

    def forget_user(self, user_id: int) -> None:
        """Check the user's tokens afresh at their next call (the account changed)."""
        self._callers.forget_if(lambda who: who.user_id == user_id)

    def call(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        action: str,
        *,
        target: str = "",
        authenticate: bool = True,
    ) -> _GateCall:
        """Authenticate (unless `authenticate` is false: Login), run the body, audit the result.

        `async with gate.call(context, "GetAlert", target=id) as call:` gives the `Call`.
        """
        return _GateCall(self, context, Call(action=action, peer="", target=target), authenticate)

    async def record(self, call: Call, *, result: str, detail: str) -> None:
        """Append the call's audit entry (its caller, if known, and its result)."""
        who = call.caller
        if who is None and result != "OK":
            if not self._anonymous.take():
                key = (call.action, result)
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            if self._suppressed:
                await self._summarise()
        draft = audit.Draft(
            user_id=who.user_id if who else None,
            username=who.username if who else "",
            entity_id=who.entity_id if who else None,
            action=call.action,
            target=call.target,
            peer=call.peer,
            result=result,
            detail=detail,
        )
        if result == "OK" and call.action in WRITTEN_BEHIND:
            await self._audit.append_behind(draft)
        else:
            await self._audit.append(draft)

    async def drain(self) -> None:
        """Write the audit entries still pending (the service stops)."""
        await self._audit.drain()

    async def _summarise(self) -> None:
        suppressed, self._suppressed = self._suppressed, {}
        for (action, result), count in sorted(suppressed.items()):
            await self._audit.append(
                audit.Draft(
                    user_id=None,
                    username="",
                    entity_id=None,
                    action=action,
                    target="",
                    peer="(many)",
                    result=result,
                    detail=f"{count} more anonymous refusals, not written one by one",
                )
            )


#: Calls whose intent is audited BEFORE they act (their outcome is audited after, as every
#: call's): a crash in the middle still leaves a trace of what was attempted, by whom.
AUDITED_BEFORE = frozenset(
    {
        "SendAlert",
        "UpdateAlert",
        "CancelAlert",
        "ChangePassword",
        "CreateEntity",
        "SetBilling",
        "CreateUser",
        "DisableUser",
        "AddGroupMember",
        "RemoveGroupMember",
        "AddPrepaidPackage",
    }
)


#: Calls that change nothing, whose successful outcome is audited behind the answer: the entry
#: joins the next batch (within 50 ms) instead of the caller waiting for its commit. Waiting
#: for it cost 30-40 % of the read throughput of the alerting service (commit latency, and a
#: batch of two or three entries per insert). Refusals and failures of these, and every outcome
#: of any other call, are still committed before the answer (docs/security.md).
WRITTEN_BEHIND = frozenset(
    {"GetAlert", "ListAlerts", "PreviewAlert", "WatchAlert", "ListEntities", "ListUsers"}
)


@dataclass
class _Budget:
    """A token bucket: `rate` per second, bursts of as many."""

    rate: float
    clock: Callable[[], float]
    tokens: float = 0.0
    at: float = 0.0

    def take(self) -> bool:
        """Whether one more may go now."""
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class _GateCall:
    """One call through the gate, as an async context manager (a class: it runs on every call)."""

    __slots__ = ("_authenticate", "_call", "_context", "_gate", "_token")

    def __init__(
        self,
        gate: Gate,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Call,
        authenticate: bool,
    ) -> None:
        self._gate = gate
        self._context = context
        self._call = call
        self._authenticate = authenticate

    async def __aenter__(self) -> Call:
        call = self._call
        call.peer = self._context.peer() or ""
        target = call.target
        self._token = kernel_context.alert_id.set(target if _is_alert_id(target) else "-")
        if self._authenticate:
            try:
                call.caller = await self._gate.authenticate(self._context.invocation_metadata())
                if call.action in AUDITED_BEFORE:
                    await self._gate.record(call, result="STARTED", detail="")
            except BaseException as exc:
                await self.__aexit__(type(exc), exc, None)
                raise
        return call

    async def __aexit__(
        self, _type: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        call = self._call
        try:
            if exc is None:
                await self._gate.record(call, result="OK", detail=call.detail)
            elif isinstance(exc, ServiceError):
                await self._gate.record(call, result=exc.code.name, detail=exc.details)
            elif isinstance(exc, asyncio.CancelledError):
                # The caller hung up (or its deadline passed); what was started may go on.
                await self._gate.record(call, result="CANCELLED", detail=call.detail)
            elif isinstance(exc, Exception):
                await self._gate.record(call, result="INTERNAL", detail=type(exc).__name__)
        finally:
            kernel_context.alert_id.reset(self._token)


def _is_alert_id(target: str) -> bool:
    try:
        uuid.UUID(target)
    except ValueError:
        return False
    return True
