"""One frozen settings object per process, read from the environment once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "TOCSIN_"


class SettingsError(Exception):
    """A setting in the environment is missing or malformed; the message names the variable."""


class ServiceSettings(BaseSettings):
    """Settings every service has; a service subclasses it to add its own fields."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    #: Default gRPC port of the service; subclasses set their own.
    default_grpc_port: ClassVar[int] = 50050
    #: Default metrics port of the service; subclasses set their own.
    default_metrics_port: ClassVar[int] = 9100
    #: Allocations between two young-generation collections once serving (CPython's default is
    #: 700); the kernel sets it after `build`, the one place that does. A service that allocates
    #: per message (a channel worker) sets a larger one.
    gc_young_threshold: ClassVar[int] = 20_000
    #: Whether callers must present a client certificate (mutual TLS): true for services only
    #: other services call; alerting's public API sets it false (users bring a JWT instead).
    require_client_cert: ClassVar[bool] = True

    # PostgreSQL holding the truth (alerts, deliveries, entities, costs).
    database_url: str = Field(validation_alias=AliasChoices("DATABASE_URL", "TOCSIN_DATABASE_URL"))
    # Redis holding the work streams and the rate-limit buckets.
    redis_url: str = Field(validation_alias=AliasChoices("REDIS_URL", "TOCSIN_REDIS_URL"))
    # Address the gRPC server and the metrics endpoint bind to.
    host: str = "127.0.0.1"
    # gRPC port; 0 picks a free one (the log says which). None means the service's default.
    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    # Prometheus /metrics port; 0 picks a free one. None means the service's default.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Logging level name.
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    # Seconds between health probes of PostgreSQL and Redis.
    health_interval_s: float = Field(default=1.0, gt=0)
    # Seconds a dependency probe may take before it counts as down.
    health_timeout_s: float = Field(default=1.0, gt=0)
    # Seconds in-flight work gets to finish on SIGTERM before it is handed back.
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    # Largest number of PostgreSQL connections in the pool.
    pg_pool_size: int = Field(default=10, ge=1)
    # Share the gRPC port with other processes of the same service (SO_REUSEPORT): the kernel
    # spreads connections over them. Off by default, so that a port taken by accident is an error.
    reuse_port: bool = False
    # Folder holding this service's certificate (tls.crt, tls.key) and the CA that signs every
    # service's (ca.crt): a cert-manager Secret mounted as a folder (docs/security.md).
    tls_dir: Path | None = None
    # Plaintext gRPC without identities, for development only; never the default. A service
    # with neither tls_dir nor this flag refuses to start.
    insecure_dev: bool = False
    # Plaintext port serving only the gRPC health service, for probes that cannot speak TLS
    # (Kubernetes gRPC probes); None serves health on the TLS port only.
    health_port: int | None = Field(default=None, ge=0, le=65535)
    # Largest request a server accepts, in bytes (larger ones are refused before parsing).
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)

    @property
    def grpc_bind_port(self) -> int:
        """The gRPC port to bind: the setting, or the service's default."""
        return self.default_grpc_port if self.grpc_port is None else self.grpc_port

    @property
    def metrics_bind_port(self) -> int:
        """The metrics port to bind: the setting, or the service's default."""
        return self.default_metrics_port if self.metrics_port is None else self.metrics_port


S = TypeVar("S", bound=ServiceSettings)


def _variable(cls: type[ServiceSettings], name: str) -> str:
    if name.isupper():  # pydantic reports an aliased field by the alias it looked for
        return name
    field = cls.model_fields.get(name)
    alias = field.validation_alias if field else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"{ENV_PREFIX}{name.upper()}"


def _is_secret(cls: type[ServiceSettings], name: str) -> bool:
    field = cls.model_fields.get(name)
    if field is None:  # reported by its variable's name: find the field it belongs to
        field = next((f for n, f in cls.model_fields.items() if _variable(cls, n) == name), None)
    return field is not None and "Secret" in str(field.annotation)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build the settings from the environment; raise SettingsError naming the bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:
            # A check across fields: its message names the variables; the input (every setting,
            # secrets included) is never echoed.
            raise SettingsError(str(first["msg"]).removeprefix("Value error, ")) from None
        name = str(first["loc"][0])
        variable = _variable(cls, name)
        if first["type"] == "missing":
            raise SettingsError(f"{variable} is not set") from None
        if _is_secret(cls, name):  # a secret is never printed, not even a wrong one
            raise SettingsError(f"{variable} is invalid: {first['msg']}") from None
        raise SettingsError(
            f"{variable}={first.get('input')!r} is invalid: {first['msg']}"
        ) from None
