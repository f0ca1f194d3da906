"""Settings of the SMTP relay simulator: what it accepts and how it misbehaves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """One simulated relay. Patterns are regular expressions searched in the recipient address."""

    name: str = "relay"  # for logs
    host: str = "127.0.0.1"  # loopback only
    port: int = 0  # 0 picks a free port
    temporary_pattern: str = ""  # recipients answered 451 at RCPT
    temporary_times: int = 0  # 451 only this many times per address, then accepted (0: always)
    permanent_pattern: str = ""  # recipients answered 550 at RCPT
    bounce_pattern: str = ""  # recipients accepted, then bounced with a DSN to the return path
    bounce_to: str = ""  # host:port of the bounce receiver the DSNs go to
    delay_s: float = 0.0  # delay before each answer to RCPT and DATA (a slow relay)
    drop_every: int = 0  # drop the connection at every Nth DATA (0: never)
    drop_after_data: bool = True  # drop after taking the message (worst case) or before
    max_recipients: int = 1000  # RCPTs per transaction above which 452 is answered
    username: str = ""  # require AUTH with this account (empty: no AUTH)
    password: str = ""
    tls_cert: str = ""  # PEM certificate: offer STARTTLS (required when AUTH is)
    tls_key: str = ""  # its private key
    keep_messages: bool = False  # keep every message's bytes (tests only)
