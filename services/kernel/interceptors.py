"""The one server interceptor: request ids, ServiceError -> gRPC status, per-method metrics."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc.aio import ServerInterceptor

from services.kernel import context
from services.kernel.errors import ServiceError
from services.kernel.metrics import GRPC_DURATION, GRPC_REQUESTS

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"


def _request_id(ctx: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in ctx.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER:
            return str(value)
    return uuid.uuid4().hex[:16]


class ErrorInterceptor(ServerInterceptor):
    """Maps ServiceError to its status, hides unexpected errors behind INTERNAL, counts calls."""

    def __init__(self, *, service: str) -> None:
        self._service = service

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler_call_details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _finish(self, method: str, code: grpc.StatusCode, started: float) -> None:
        GRPC_REQUESTS.labels(self._service, method, code.name).inc()
        GRPC_DURATION.labels(self._service, method).observe(time.perf_counter() - started)

    async def _fail(
        self, ctx: grpc.aio.ServicerContext[Any, Any], exc: Exception, method: str, started: float
    ) -> None:
        """Count the failure, then abort the call with its status (counted first: no race)."""
        if isinstance(exc, ServiceError):
            self._finish(method, exc.code, started)
            logger.info("%s refused: %s %s", method, exc.code.name, exc.details)
            await ctx.abort(exc.code, exc.details)
        self._finish(method, grpc.StatusCode.INTERNAL, started)
        rid = context.request_id.get()
        logger.error("%s failed unexpectedly", method, exc_info=exc)
        await ctx.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {rid})")

    @contextlib.asynccontextmanager
    async def _guard(
        self, ctx: grpc.aio.ServicerContext[Any, Any], method: str
    ) -> AsyncIterator[None]:
        """Around one call: its request id, its status mapped and counted."""
        token = context.request_id.set(_request_id(ctx))
        started = time.perf_counter()
        try:
            yield
        except grpc.aio.AbortError:
            self._finish(method, ctx.code() or grpc.StatusCode.UNKNOWN, started)
            raise
        except Exception as exc:
            await self._fail(ctx, exc, method, started)
            raise  # pragma: no cover - _fail always aborts
        else:
            self._finish(method, grpc.StatusCode.OK, started)
        finally:
            context.request_id.reset(token)

    def _wrap_unary(self, behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def wrapper(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with self._guard(ctx, method):
                return await behaviour(request, ctx)

        return wrapper

    def _wrap_stream(self, behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def wrapper(
            request: Any, ctx: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with self._guard(ctx, method):
                async for item in behaviour(request, ctx):
                    yield item

        return wrapper
