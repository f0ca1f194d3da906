"""Settings of the e-mail service: the relay, the message, bounces and batching."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.channel.settings import ChannelSettings


class Settings(ChannelSettings):
    """One frozen object per process, from the environment (prefix TOCSIN_)."""

    default_grpc_port: ClassVar[int] = 50056
    default_metrics_port: ClassVar[int] = 9106

    # The deployment's SMTP relay.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=1, le=65535)
    # `auto` (STARTTLS when offered), `starttls` (required), `tls` (implicit), `none`.
    smtp_tls: str = Field(default="auto", pattern="^(auto|starttls|tls|none)$")
    # Account on the relay (empty: no AUTH).
    smtp_username: str = ""
    smtp_password: str = ""
    # CA bundle (PEM) to trust for the relay's certificate (empty: the system's).
    smtp_ca_file: str = ""
    # Check the relay's certificate (turn off only for a private relay on a trusted network).
    smtp_verify_tls: bool = True
    # Connections kept open to the relay; one transaction at a time on each.
    smtp_connections: int = Field(default=8, ge=1, le=200)
    # Seconds for each SMTP answer (DATA included).
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    # Name in EHLO (empty: the host name).
    smtp_helo: str = ""
    # Recipients per transaction: RFC 5321 servers accept at least 100.
    smtp_batch: int = Field(default=100, ge=1, le=1000)
    # Seconds a transaction waits for more recipients of the same message before it goes.
    smtp_linger_s: float = Field(default=0.02, ge=0)
    # Sender of the messages: display name and address (From), and the Message-ID domain.
    mail_from_name: str = "BE-Alert"
    mail_from: str = "alert@be-alert.test"
    # Footer of every message: why the reader gets it.
    mail_footer: str = "You receive this message because you registered this address for BE-Alert."
    # Return path `<local>+<tag>@<domain>`: bounces come back to the bounce receiver.
    bounce_local: str = "bounces"
    bounce_domain: str = "be-alert.test"
    # Where the bounce receiver (SMTP) listens; port 0 picks a free one, -1 turns it off.
    bounce_host: str = "127.0.0.1"
    bounce_port: int = Field(default=2526, ge=-1, le=65535)
    # DKIM signing (once per message): domain, selector, and the PEM private key's file.
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim_key_file: str = ""
