"""Settings of the CAP feed: where it listens, what it calls itself, how long answers are cached."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.kernel.settings import ENV_PREFIX


class Settings(BaseSettings):
    """One frozen object per process, from the environment (`TOCSIN_CAPFEED_*`, `DATABASE_URL`)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX + "CAPFEED_", frozen=True)

    # PostgreSQL holding the alerts and their CAP messages (read only).
    database_url: str = Field(validation_alias=AliasChoices("DATABASE_URL", "TOCSIN_DATABASE_URL"))
    # Address and port the HTTP server binds to.
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    # Share the port with other processes of the feed (SO_REUSEPORT): the kernel spreads
    # connections over them. Off by default, so that a port taken by accident is an error.
    reuse_port: bool = False
    # A folder with tls.crt and tls.key (a cert-manager Secret): serve HTTPS. Unset: plain HTTP,
    # for a feed behind an ingress that terminates TLS.
    tls_dir: Path | None = None
    # Public URL prefix of the feed, as partners reach it (links in the feed are absolute).
    base_url: str = "http://127.0.0.1:8090"
    # Name of the feed and of its author (the platform).
    title: str = "BE-Alert: alerts in force"
    author: str = "BE-Alert"
    # Most entries in the feed (the most recent first): aggregators want it well under 100 KB.
    max_entries: int = Field(default=50, ge=1, le=500)
    # Longest summary of an entry, in characters (the full text is in the CAP document).
    summary_chars: int = Field(default=280, ge=0)
    # Seconds screens may cache the feed at most (less when an alert expires sooner).
    feed_max_age_s: int = Field(default=30, ge=0)
    # Seconds a CAP document may be cached at most (it never changes; its alert may end).
    document_max_age_s: int = Field(default=3600, ge=0)
    # Seconds between checks of the change counter, in case a notification was missed.
    poll_s: float = Field(default=5.0, gt=0)
    # Days a document stays in memory after its alert expired (older ones come from PostgreSQL).
    retention_days: int = Field(default=7, ge=0)
    # Logging level name.
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
