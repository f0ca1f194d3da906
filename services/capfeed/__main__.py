"""The CAP feed process: `python -m services.capfeed` (HTTP; docs/capfeed.md).

Several processes may share the port (`TOCSIN_REUSE_PORT=true`): each renders its own
snapshot from PostgreSQL when an alert changes and answers from memory.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import ssl
import sys
from datetime import timedelta

import asyncpg
import uvloop
from aiohttp import web

from services.capfeed.http import application
from services.capfeed.render import FeedInfo
from services.capfeed.settings import Settings
from services.capfeed.source import Watcher
from services.kernel import SettingsError, load_settings

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    """Load, serve, follow changes; stop on SIGTERM/SIGINT."""
    info = FeedInfo(
        base_url=settings.capfeed_base_url.rstrip("/"),
        title=settings.capfeed_title,
        author=settings.capfeed_author,
        max_entries=settings.capfeed_max_entries,
        summary_chars=settings.capfeed_summary_chars,
        feed_max_age_s=settings.capfeed_feed_max_age_s,
        document_max_age_s=settings.capfeed_document_max_age_s,
    )
    # No connection at creation: the feed starts (and says it is alive) while PostgreSQL is down.
    pool = await asyncpg.create_pool(settings.database_url, min_size=0, max_size=4)
    watcher = Watcher(
        pool=pool,
        dsn=settings.database_url,
        info=info,
        retention=timedelta(days=settings.capfeed_retention_days),
        poll_s=settings.capfeed_poll_s,
    )
    watching = asyncio.create_task(watcher.run())
    app = application(
        watcher=watcher, pool=pool, document_max_age_s=settings.capfeed_document_max_age_s
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    context = None
    if settings.tls_dir is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.tls_dir / "tls.crt", settings.tls_dir / "tls.key")
    site = web.TCPSite(
        runner,
        settings.host,
        settings.capfeed_port,
        reuse_port=settings.reuse_port,
        ssl_context=context,
    )
    await site.start()
    port = runner.addresses[0][1]
    print(json.dumps({"event": "listening", "service": "capfeed", "port": port}), flush=True)
    log.info("CAP feed on http://%s:%s/cap/feed.atom", settings.host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    watching.cancel()
    await asyncio.gather(watching, return_exceptions=True)
    await pool.close()


def main() -> int:
    """Read the settings, serve until a signal, return the exit code."""
    try:
        settings = load_settings(Settings)
    except SettingsError as exc:
        print(f"tocsin-capfeed: invalid setting: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, stream=sys.stderr)
    # The answers are pre-rendered: few allocations per request, so cycle collections are rare.
    gc.freeze()
    uvloop.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
