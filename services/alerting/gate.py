"""The one place every call passes: authenticate the caller, then audit what happened."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc

from services.alerting import audit
from services.alerting.auth import Principal, bearer, load_principal, token_user
from services.kernel import context as kernel_context
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


class Gate:
    """Authenticates each call from its bearer token and appends its outcome to the audit log."""

    def __init__(self, *, pool: asyncpg.Pool, jwt_key: str, token_issuer: str) -> None:
        self._pool = pool
        self.jwt_key = jwt_key
        self.token_issuer = token_issuer

    async def authenticate(self, metadata: Any) -> Principal:
        """The caller named by a valid token in `metadata`."""
        user_id = token_user(token=bearer(metadata), key=self.jwt_key, issuer=self.token_issuer)
        return await load_principal(self._pool, user_id=user_id)

    @asynccontextmanager
    async def call(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        action: str,
        *,
        target: str = "",
        authenticate: bool = True,
    ) -> AsyncIterator[Call]:
        """Authenticate (unless `authenticate` is false: Login), run the body, audit the result."""
        call = Call(action=action, peer=context.peer() or "", target=target)
        token = kernel_context.alert_id.set(target if _is_alert_id(target) else "-")
        try:
            if authenticate:
                call.caller = await self.authenticate(context.invocation_metadata())
            yield call
        except ServiceError as exc:
            await self._record(call, result=exc.code.name, detail=exc.details)
            raise
        except asyncio.CancelledError:
            # The caller hung up (or its deadline passed); what was started may go on.
            await self._record(call, result="CANCELLED", detail=call.detail)
            raise
        except Exception as exc:
            await self._record(call, result="INTERNAL", detail=type(exc).__name__)
            raise
        else:
            await self._record(call, result="OK", detail=call.detail)
        finally:
            kernel_context.alert_id.reset(token)

    async def _record(self, call: Call, *, result: str, detail: str) -> None:
        who = call.caller
        await audit.append(
            self._pool,
            user_id=who.user_id if who else None,
            username=who.username if who else "",
            entity_id=who.entity_id if who else None,
            action=call.action,
            target=call.target,
            peer=call.peer,
            result=result,
            detail=detail,
        )


def _is_alert_id(target: str) -> bool:
    try:
        uuid.UUID(target)
    except ValueError:
        return False
    return True
