"""Behaviour of a simulated SIP trunk."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """How the simulated trunk answers; shares are drawn per (number, attempt)."""

    host: str = "127.0.0.1"  #: listen address (loopback only)
    port: int = 0  #: SIP UDP port; 0 picks a free one
    answer_share: float = 1.0  #: share of INVITEs answered (200 OK, then RTP expected)
    busy_share: float = 0.0  #: share answered 486 Busy Here
    no_answer_share: float = 0.0  #: share left ringing until the caller CANCELs
    reject_share: float = 0.0  #: share answered 404 Not Found
    ring_delay: float = 0.05  #: seconds between 180 Ringing and the final answer
    channels: int = 1000  #: concurrent calls; above it INVITEs get 503
    retry_after: int = 1  #: Retry-After seconds on a 503; 0: no Retry-After header
    username: str = ""  #: when set, INVITEs must carry digest credentials (401 otherwise)
    password: str = ""  #: the account's secret
    realm: str = "siptrunk.test"  #: digest realm
    drop_invites: int = 0  #: drop the first N INVITE datagrams (lossy network)
    drop_pracks: int = 0  #: drop the first N PRACK datagrams (lossy network)
    garbage: bool = False  #: send a non-SIP datagram before every response
    keep_audio: bool = False  #: keep every received RTP payload (tests decode it)
    seed: int = 0  #: seed of the share draw
    t1: float = 0.5  #: retransmission base of our 200 OK until the ACK comes
    reliable: bool = False
    """Ring with a reliable 183 (RFC 3262 `Require: 100rel`) to callers that support it, resent
    until their PRACK; no PRACK within 64*T1 ends the call with 504."""
    redirects: dict[str, str] = field(default_factory=dict)
    """Per number, the number its calls are redirected to (302 Moved Temporarily, Contact)."""
    scripts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per number, the outcome of attempt 1, 2, ... (`answer`, `busy`, `no_answer`, `reject`,
    `unavailable` for 503); overrides the shares while it lasts."""
