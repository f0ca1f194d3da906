"""Errors that carry their gRPC status; the interceptor maps them once, at the boundary."""

from __future__ import annotations

from typing import ClassVar

import asyncpg
import grpc

#: What PostgreSQL, through asyncpg, raises while it is away or restarting: worth a retry, never
#: a reason to stop a worker. InternalClientError is a connection left mid-operation by a server
#: that went away ("cannot switch to state 12; another operation is in progress", seen after a
#: restart): it killed the SMS worker in bench-faults' pg_restart.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


class ServiceError(Exception):
    """A refusal meant for the caller, with its gRPC status and, where it applies, the field."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def details(self) -> str:
        """The text sent to the caller: the field first, so a form can point at it."""
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidArgument(ServiceError):
    """The request is malformed; `field` names the culprit."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


class NotFound(ServiceError):
    """The named thing does not exist (or is not visible to the caller)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    """The thing to create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ServiceError):
    """The caller is known but may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ServiceError):
    """The caller did not prove who they are."""

    code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(ServiceError):
    """The system is not in a state that allows this (e.g. updating a cancelled alert)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    """Throttled: try again later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    """A dependency is down; the call may be retried."""

    code = grpc.StatusCode.UNAVAILABLE


class PeerDown(Unavailable):
    """A service this one calls could not be reached or went away mid-call (its process
    restarting): worth trying again shortly, unlike a peer that answered with an error."""


class Unimplemented(ServiceError):
    """The call is declared in the API but its channel is not built yet."""

    code = grpc.StatusCode.UNIMPLEMENTED
