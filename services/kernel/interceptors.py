"""The one server interceptor: caller identity checked against `access`, request ids, text
free of control characters (`inputs`), ServiceError -> gRPC status, per-method metrics."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from grpc.aio import ServerInterceptor

from services.kernel import context
from services.kernel.access import RULES, Rule, rule_for
from services.kernel.errors import PermissionDenied, ServiceError, Unauthenticated
from services.kernel.inputs import check_request
from services.kernel.metrics import GRPC_DURATION, GRPC_REQUESTS

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
#: Caller name believed in insecure development only (there is no certificate to read it from).
DEV_CALLER_HEADER = "x-tocsin-caller"
#: Request ids only tell log lines apart: they need not be unpredictable (Mersenne Twister).
_random_bits = random.Random().getrandbits


def _request_id(ctx: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in ctx.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER:
            return str(value)
    # 64 random bits as 16 hex digits, like a truncated uuid4 but without a system call.
    return f"{_random_bits(64):016x}"


def _dev_caller(ctx: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in ctx.invocation_metadata() or ():
        if key == DEV_CALLER_HEADER:
            return str(value)
    return ""


def _admit(ctx: grpc.aio.ServicerContext[Any, Any], rule: Rule, method: str) -> str:
    """The caller's identity if `rule` admits it; the refusal otherwise."""
    identities = [i.decode() for i in ctx.peer_identities() or ()]
    who = rule.admits(identities)
    if who is not None:
        return who
    if not identities:
        raise Unauthenticated(f"{method} needs a client certificate of an allowed service")
    raise PermissionDenied(f"{identities[0]} may not call {method}")


class ErrorInterceptor(ServerInterceptor):
    """Maps ServiceError to its status, hides unexpected errors behind INTERNAL, counts calls.

    Wrapped handlers are built once per method and kept: the interceptor runs on every call.
    """

    def __init__(
        self,
        *,
        service: str,
        authorize: bool = False,
        rules: Any = RULES,
    ) -> None:
        self._service = service
        #: Check callers' certificates against `rules` (off only in insecure development and
        #: in tests of a servicer alone).
        self._authorize = authorize
        self._rules = rules
        #: full method name -> the handler as wrapped (health and reflection are never wrapped).
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        #: method -> its duration histogram child.
        self._durations: dict[str, Any] = {}
        #: (method, status name) -> its request counter child.
        self._counters: dict[tuple[str, str], Any] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        full = handler_call_details.method
        wrapped = self._wrapped.get(full)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or full.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        wrapped = self._wrap(handler, full)
        if wrapped is not handler:
            self._wrapped[full] = wrapped
        return wrapped

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], full: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = full.rsplit("/", 1)[-1]
        rule = rule_for(full, self._rules) if self._authorize else None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, rule),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, rule),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _finish(self, method: str, code: grpc.StatusCode, started: float) -> None:
        counter = self._counters.get((method, code.name))
        if counter is None:
            counter = self._counters[method, code.name] = GRPC_REQUESTS.labels(
                self._service, method, code.name
            )
        counter.inc()
        duration = self._durations.get(method)
        if duration is None:
            duration = self._durations[method] = GRPC_DURATION.labels(self._service, method)
        duration.observe(time.perf_counter() - started)

    async def _fail(
        self, ctx: grpc.aio.ServicerContext[Any, Any], exc: Exception, method: str, started: float
    ) -> NoReturn:
        """Count the failure, then abort the call with its status (counted first: no race)."""
        if isinstance(exc, ServiceError):
            self._finish(method, exc.code, started)
            logger.info("%s refused: %s %s", method, exc.code.name, exc.details)
            await ctx.abort(exc.code, exc.details)
        self._finish(method, grpc.StatusCode.INTERNAL, started)
        rid = context.request_id.get()
        logger.error("%s failed unexpectedly", method, exc_info=exc)
        await ctx.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {rid})")

    def _wrap_unary(
        self, behaviour: Callable[..., Any], method: str, rule: Rule | None
    ) -> Callable[..., Any]:
        async def wrapper(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with _Guard(self, ctx, method, rule):
                check_request(request)
                return await behaviour(request, ctx)

        return wrapper

    def _wrap_stream(
        self, behaviour: Callable[..., Any], method: str, rule: Rule | None
    ) -> Callable[..., Any]:
        async def wrapper(
            request: Any, ctx: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with _Guard(self, ctx, method, rule):
                check_request(request)
                async for item in behaviour(request, ctx):
                    yield item

        return wrapper


class _Guard:
    """Around one call: its caller admitted, its request id, its status mapped and counted.

    A class rather than a generator-based context manager: it runs on every call.
    """

    __slots__ = ("_caller", "_ctx", "_method", "_owner", "_rule", "_started", "_token")

    def __init__(
        self,
        owner: ErrorInterceptor,
        ctx: grpc.aio.ServicerContext[Any, Any],
        method: str,
        rule: Rule | None,
    ) -> None:
        self._owner = owner
        self._ctx = ctx
        self._method = method
        self._rule = rule

    async def __aenter__(self) -> None:
        self._token = context.request_id.set(_request_id(self._ctx))
        self._started = time.perf_counter()
        try:
            who = (
                _dev_caller(self._ctx)
                if self._rule is None
                else _admit(self._ctx, self._rule, self._method)
            )
        except ServiceError as exc:
            try:
                await self._owner._fail(self._ctx, exc, self._method, self._started)
            finally:
                context.request_id.reset(self._token)
        self._caller = context.caller.set(who)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        try:
            if exc is None:
                self._owner._finish(self._method, grpc.StatusCode.OK, self._started)
            elif isinstance(exc, grpc.aio.AbortError):
                code = self._ctx.code() or grpc.StatusCode.UNKNOWN
                self._owner._finish(self._method, code, self._started)
            elif isinstance(exc, Exception):
                await self._owner._fail(self._ctx, exc, self._method, self._started)
        finally:
            context.caller.reset(self._caller)
            context.request_id.reset(self._token)
