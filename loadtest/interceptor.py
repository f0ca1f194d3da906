"""A sync gRPC client interceptor that reports every call to a request hook (Locust's, in practice).

It imports nothing of Locust, so that it can be tested without gevent: the hook is any callable
taking Locust's `request` event arguments (request_type, name, response_time in ms,
response_length, exception).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grpc


class RequestHook(Protocol):
    """What the interceptor calls once per finished call (Locust's `events.request.fire`)."""

    def __call__(
        self,
        *,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        exception: BaseException | None,
    ) -> None:
        """Record one finished call."""
        ...


#: Locust's request type for every call this interceptor reports.
REQUEST_TYPE = "grpc"


def method_name(full: str) -> str:
    """The short name Locust shows: `/tocsin.alerting.v1.AlertingService/GetAlert` -> `GetAlert`."""
    return full.rsplit("/", 1)[-1]


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Times unary calls to their answer and streaming calls to their last message."""

    def __init__(self, hook: RequestHook) -> None:
        self._hook = hook

    def _report(
        self, method: str, started: float, length: int, exception: BaseException | None
    ) -> None:
        self._hook(
            request_type=REQUEST_TYPE,
            name=method_name(method),
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            exception=exception,
        )

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        started = time.perf_counter()
        outcome = continuation(client_call_details, request)
        # The outcome is a finished call: exception() is None when the status is OK.
        error = outcome.exception()
        length = 0 if error is not None else outcome.result().ByteSize()
        self._report(client_call_details.method, started, length, error)
        return outcome

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        started = time.perf_counter()
        call = continuation(client_call_details, request)
        return _TimedStream(
            call, lambda n, exc: self._report(client_call_details.method, started, n, exc)
        )


class _TimedStream:
    """Wraps a response stream: reports once, at its end, its error, or its cancellation."""

    def __init__(self, call: Any, done: Callable[[int, BaseException | None], None]) -> None:
        self._call = call
        self._done = done
        self._length = 0
        self._reported = False
        self._iter: Iterator[Any] = self._run()

    def _finish(self, exc: BaseException | None) -> None:
        if not self._reported:
            self._reported = True
            self._done(self._length, exc)

    def _run(self) -> Iterator[Any]:
        try:
            for message in self._call:
                self._length += message.ByteSize()
                yield message
        except grpc.RpcError as exc:
            self._finish(exc)
            raise
        self._finish(None)

    def __iter__(self) -> _TimedStream:
        return self

    def __next__(self) -> Any:
        return next(self._iter)

    def cancel(self) -> bool:
        """Cancel the stream; a cancelled stream counts as success up to that point."""
        self._finish(None)
        return bool(self._call.cancel())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)
