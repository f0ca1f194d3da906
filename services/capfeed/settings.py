"""Settings of the CAP feed: where it listens, what it calls itself, how long answers are cached.

The kernel's settings give it `DATABASE_URL`, `TOCSIN_HOST`, `TOCSIN_LOG_LEVEL`,
`TOCSIN_REUSE_PORT` and `TOCSIN_TLS_DIR`; its own are `TOCSIN_CAPFEED_*`. It serves HTTP, not
gRPC, and needs no Redis.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field

from services.kernel import ServiceSettings


class Settings(ServiceSettings):
    """One frozen object per process, from the environment."""

    # Unused: the feed reads PostgreSQL only (kept optional so that no deployment must set it).
    redis_url: str = Field(
        default="", validation_alias=AliasChoices("REDIS_URL", "TOCSIN_REDIS_URL")
    )
    # HTTP port of the feed (0 picks a free one).
    capfeed_port: int = Field(default=8090, ge=0, le=65535)
    # Public URL prefix of the feed, as partners reach it (links in the feed are absolute).
    capfeed_base_url: str = "http://127.0.0.1:8090"
    # Name of the feed and of its author (the platform).
    capfeed_title: str = "BE-Alert: alerts in force"
    capfeed_author: str = "BE-Alert"
    # Most entries in the feed (the most recent first): aggregators want it well under 100 KB.
    capfeed_max_entries: int = Field(default=50, ge=1, le=500)
    # Longest summary of an entry, in characters (the full text is in the CAP document).
    capfeed_summary_chars: int = Field(default=280, ge=0)
    # Seconds screens may cache the feed at most (less when an alert expires sooner).
    capfeed_feed_max_age_s: int = Field(default=30, ge=0)
    # Seconds a CAP document may be cached at most (it never changes; its alert may end).
    capfeed_document_max_age_s: int = Field(default=3600, ge=0)
    # Seconds between checks of the change counter, in case a notification was missed.
    capfeed_poll_s: float = Field(default=5.0, gt=0)
    # Days a document stays in memory after its alert expired (older ones come from PostgreSQL).
    capfeed_retention_days: int = Field(default=7, ge=0)
