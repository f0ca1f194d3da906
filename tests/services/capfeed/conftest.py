"""The CAP feed over HTTP from this test's PostgreSQL; alerts made by the alerting service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from multidict import CIMultiDict

from services.capfeed.http import application
from services.capfeed.render import FeedInfo
from services.capfeed.source import Watcher
from tests.services.alerting.conftest import harness  # noqa: F401  (the fixture, re-used)

INFO = FeedInfo(
    base_url="http://feed.test",
    title="BE-Alert: alerts in force",
    author="BE-Alert",
    max_entries=50,
    summary_chars=280,
    feed_max_age_s=30,
    document_max_age_s=3600,
)


@dataclass
class Feed:
    """A running feed: its watcher, an HTTP client, and its URL."""

    watcher: Watcher
    http: aiohttp.ClientSession
    url: str

    async def get(self, path: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
        """GET `path`; status, headers (case-insensitive) and body."""
        async with self.http.get(self.url + path, headers=headers) as response:
            return response.status, response.headers.copy(), await response.read()


@pytest.fixture
async def feed(pg_pool: asyncpg.Pool, pg_dsn: str) -> AsyncIterator[Feed]:
    """The feed app on a free port, following this test's database."""
    import asyncio

    watcher = Watcher(pool=pg_pool, dsn=pg_dsn, info=INFO, retention=timedelta(days=7), poll_s=30.0)
    await watcher.refresh()
    watching = asyncio.create_task(watcher.run())
    runner = web.AppRunner(
        application(watcher=watcher, pool=pg_pool, document_max_age_s=3600), access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession()
    try:
        yield Feed(watcher, session, f"http://127.0.0.1:{port}")
    finally:
        await session.close()
        await runner.cleanup()
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
