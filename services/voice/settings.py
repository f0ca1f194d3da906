"""Settings of the voice service: trunks, calling policy, the channel worker's part."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from services.channel.settings import ChannelSettings


@dataclass(frozen=True, slots=True)
class TrunkSpec:
    """One SIP trunk."""

    name: str  # route name (metrics label, rate-limit bucket voice:trunk:<name>)
    host: str  # the trunk's SIP address
    port: int  # its UDP port
    channels: int  # concurrent calls it sells, across every replica


class Settings(ChannelSettings):
    """Settings of the voice service (env prefix TOCSIN_)."""

    default_grpc_port: ClassVar[int] = 50054
    default_metrics_port: ClassVar[int] = 9104

    # SIP trunks: `trunkA=127.0.0.1:5060,trunkB=10.0.0.7:5060`; the first one takes the calls,
    # the next ones take them over while it is in trouble (5xx, no answer at all).
    trunks: str = "trunkA=127.0.0.1:5060"
    # Concurrent channels each trunk sells, held across every replica (a Redis lease per call).
    trunk_channels: int = Field(default=1000, ge=1)
    # Host part of our Request-URIs (the trunk's domain); empty: the trunk's host:port.
    trunk_domain: str = ""
    # Digest account for trunks that challenge (401/407); empty: none.
    trunk_username: str = ""
    trunk_password: str = ""
    # User part of our From (the calling line the trunk presents).
    caller: str = "BE-Alert"
    # Address our SIP and RTP sockets bind to and advertise in Via, Contact and SDP.
    sip_host: str = "127.0.0.1"
    # UDP port of our SIP socket; 0: a free one (replicas on one host need distinct ports).
    sip_port: int = Field(default=0, ge=0, le=65535)
    # RFC 3261 T1 (seconds): first retransmission interval; timer B is 64 * T1.
    sip_t1_s: float = Field(default=0.5, gt=0)
    # Seconds a call may ring before we CANCEL it (no answer).
    ring_timeout_s: float = Field(default=30.0, gt=0)
    # Times the message is played to whoever answers.
    repeat: int = Field(default=2, ge=1, le=5)
    # Calls per recipient while busy or unanswered (permanent rejections are never retried).
    max_attempts: int = Field(default=3, ge=1, le=10)
    # Busy and unanswered calls are tried again after this, doubling up to retry_max_s.
    retry_min_s: float = Field(default=60.0, gt=0)
    retry_max_s: float = Field(default=600.0, gt=0)
    # A trunk in trouble is passed over for the next one for this long (or its 503's Retry-After).
    failover_hold_s: float = Field(default=30.0, gt=0)
    # Longest a call may hold a trunk channel; a crashed replica's channels free after it.
    channel_lease_s: float = Field(default=600.0, gt=0)
    # Rate-limit rules file; empty: the built-in rules (bucket voice:trunk:*).
    ratelimit_rules: Path | None = None
    # Messages (alert version and language) kept rendered in this process.
    prompt_cache: int = Field(default=64, ge=1)
    # Seconds between two looks at whether Redis lost its data (the voice service's marker key,
    # one EXISTS): then the stream entries of API batches with calls still queued are written
    # again from PostgreSQL (services/channel/apirepair.py). The first look is at start-up.
    api_repair_interval_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        self.trunk_specs()
        return self

    def trunk_specs(self) -> list[TrunkSpec]:
        """The trunks, the calling one first; ValueError names the problem."""
        specs: list[TrunkSpec] = []
        for part in filter(None, (p.strip() for p in self.trunks.split(","))):
            name, sep, address = part.partition("=")
            host, colon, port = address.rpartition(":")
            if not sep or not name.strip() or not colon or not port.isdigit():
                raise ValueError(f"trunks: {part!r} is not `name=host:port`")
            specs.append(TrunkSpec(name.strip(), host, int(port), self.trunk_channels))
        if not specs:
            raise ValueError("trunks: at least one `name=host:port` is needed")
        return specs
