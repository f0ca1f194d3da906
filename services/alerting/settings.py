"""Settings of the alerting service process (and of its CLI's direct-to-database commands)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator

from services.alerting.deployment import DEFAULT_ENABLED, parse_channels
from services.alerting.model import Channel
from services.kernel import ServiceSettings


class Settings(ServiceSettings):
    """Settings of the alerting service, read once from TOCSIN_* variables."""

    default_grpc_port: ClassVar[int] = 50051
    default_metrics_port: ClassVar[int] = 9101
    #: Portal, CLI and load test authenticate the server only; their users bring a JWT.
    require_client_cert: ClassVar[bool] = False

    # HMAC key signing the access tokens (HS256); at least 32 characters, kept in a secret store.
    # Its key id (`kid`, a hash of it) is written in every token's header.
    jwt_key: SecretStr = Field(min_length=32)
    # The key signing before the last rotation: its tokens stay valid until they expire
    # (docs/security.md, "Rotating the token key"). Empty: none.
    jwt_previous_key: SecretStr = SecretStr("")
    # HMAC key of the audit chain, kept in the secret store and never in the database; empty
    # chains with plain SHA-256 (development only: whoever writes the database could rewrite it).
    audit_key: SecretStr = SecretStr("")
    # Refused calls of unknown callers audited per second; more are summed into one entry.
    anonymous_audit_per_s: float = Field(default=20.0, gt=0)
    # log2 of scrypt's N for new password hashes (OWASP: 17); older hashes upgrade at login.
    scrypt_log2_n: int = Field(default=17, ge=14, le=20)
    # Password hashes computed at once by this process (128 MiB of memory each at N=2^17).
    login_concurrency: int = Field(default=2, ge=1, le=16)
    # Failed logins from one client address, whatever the user names, before it must wait.
    login_address_max_failures: int = Field(default=100, ge=1)
    # Seconds an access token stays valid after Login.
    token_ttl_s: int = Field(default=3600, ge=60, le=24 * 3600)
    # Failed logins of one user from one address (or from addresses it never logged in from)
    # after which those must wait; the owner still logs in from a known place.
    login_max_failures: int = Field(default=10, ge=1)
    # Seconds a run of failed logins is remembered (and a paused address waits at most).
    login_lockout_s: int = Field(default=900, ge=1)
    # Issuer claim written into and required from every token.
    token_issuer: str = "tocsin-alerting"
    # gRPC address of the targeting service.
    targeting_addr: str = "127.0.0.1:50052"
    # gRPC address of the SMS service (per-alert progress).
    sms_addr: str = "127.0.0.1:50053"
    # gRPC address of the cell broadcast service (cell broadcast and LB-SMS requests).
    cellbroadcast_addr: str = "127.0.0.1:50055"
    # Seconds between progress polls of live alerts (charging, completion, metrics).
    settle_interval_s: float = Field(default=2.0, gt=0)
    # Seconds between progress polls of one WatchAlert stream.
    watch_interval_s: float = Field(default=0.5, gt=0)
    # Seconds a call to targeting or the SMS service may take (Resolve gets 20 times this).
    rpc_timeout_s: float = Field(default=10.0, gt=0)
    # Seconds a Resolve cut by targeting going away (a restart) is tried again before the send
    # stops part-way, to be resumed by SendAlert (0: never tried again).
    resolve_retry_s: float = Field(default=20.0, ge=0)
    # Seconds a checked token (signature, expiry, account enabled) is trusted without checking
    # again: a disabled account's tokens stop within this time on other replicas (0: every call).
    auth_cache_s: float = Field(default=1.0, ge=0, le=10)
    # Most audit entries written in one transaction (entries of concurrent calls are batched).
    audit_batch: int = Field(default=500, ge=1)
    # Seconds a preview's audience counts are shared by identical previews of the same entity
    # (same zone, groups, channels and texts); 0 asks targeting every time.
    preview_cache_s: float = Field(default=2.0, ge=0, le=60)
    # Base URL of the contact-centre provider's HTTP/JSON API (the information line).
    infoline_provider_url: str = "http://127.0.0.1:8780"
    # Seconds between rounds that follow the provider's reports of the live information lines.
    infoline_sync_s: float = Field(default=5.0, gt=0)
    # Seconds one call to the contact-centre provider may take.
    infoline_timeout_s: float = Field(default=10.0, gt=0)
    # EUR (excl. VAT) per operator hour of a D5 line: the provider's tariff, borne by the entity.
    infoline_staff_hour_eur: Decimal = Field(default=Decimal("38.50"), ge=0)
    # EUR (excl. VAT) per minute of handled calls on the information line (telephony).
    infoline_telephony_minute_eur: Decimal = Field(default=Decimal("0.04"), ge=0)
    # Channels this deployment delivers (comma-separated: sms, voice, email, lb_sms,
    # cell_broadcast, cap_feed); CreateAlert refuses an alert naming another (FAILED_PRECONDITION).
    enabled_channels: str = DEFAULT_ENABLED
    # Most SMS segments one language text of an alert may take (CreateAlert and UpdateAlert
    # refuse a longer one, naming its info): each is one submit_sm and one unit per citizen.
    max_sms_segments: int = Field(default=6, ge=1, le=255)

    @field_validator("enabled_channels")
    @classmethod
    def _known_channels(cls, value: str) -> str:
        parse_channels(value)
        return value

    @property
    def channels(self) -> frozenset[Channel]:
        """The enabled channels."""
        return parse_channels(self.enabled_channels)
