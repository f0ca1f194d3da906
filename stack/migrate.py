"""Apply the SQL migrations in `migrations/` with yoyo-migrations (see docs/decisions.md)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def yoyo_url(dsn: str) -> str:
    """Turn a postgresql:// DSN into yoyo's psycopg 3 URL form."""
    parts = urlsplit(dsn)
    scheme = "postgresql+psycopg"
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def apply_migrations(dsn: str, *, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet applied, under yoyo's lock; return the ids applied."""
    with warnings.catch_warnings():
        # yoyo imports pkg-level helpers that emit deprecation warnings on 3.11; not ours to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url(dsn))
    try:
        migrations = read_migrations(str(directory))
        with backend.lock():
            pending = backend.to_apply(migrations)
            ids = [m.id for m in pending]
            backend.apply_migrations(pending)
        if ids:
            logger.info("applied migrations %s", ", ".join(ids))
        return ids
    finally:
        backend.connection.close()
