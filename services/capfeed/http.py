"""The HTTP side: pre-rendered bytes, validators compared, 304 when the client has them."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from services.capfeed import metrics, source
from services.capfeed.render import CAP_TYPE, FEED_PATH, Resource, Snapshot, resource
from services.capfeed.source import Watcher

WATCHER = web.AppKey("watcher", Watcher)
POOL = web.AppKey("pool", asyncpg.Pool)
MAX_AGE = web.AppKey("document_max_age_s", int)


def _etag_matches(header: str, etag: str) -> bool:
    # If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/ is ignored.
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def not_modified(request: web.Request, res: Resource) -> bool:
    """Whether the client's copy is current (If-None-Match first, else If-Modified-Since)."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        return _etag_matches(inm, res.etag)
    ims = request.headers.get("If-Modified-Since")
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims)
    except (TypeError, ValueError, IndexError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return res.last_modified.replace(microsecond=0) <= since


def _answer(
    request: web.Request, res: Resource, *, ok: Counter, unchanged: Counter
) -> web.Response:
    if not_modified(request, res):
        unchanged.inc()
        headers = {k: v for k, v in res.headers.items() if k != "Content-Type"}
        return web.Response(status=304, headers=headers)
    ok.inc()
    return web.Response(body=res.body, headers=res.headers)


def _snapshot(request: web.Request) -> Snapshot:
    current = request.app[WATCHER].current
    if current is None:
        raise web.HTTPServiceUnavailable(text="the feed is not loaded yet")
    return current


async def feed(request: web.Request) -> web.Response:
    """GET the Atom index of alerts in force."""
    return _answer(
        request, _snapshot(request).feed, ok=metrics.FEED_OK, unchanged=metrics.FEED_NOT_MODIFIED
    )


async def document(request: web.Request) -> web.Response:
    """GET one CAP document by its stable URL."""
    snap = _snapshot(request)
    found = snap.documents.get(request.path)
    if found is None:
        identifier = request.match_info["identifier"]
        old = await source.old_document(request.app[POOL], identifier=identifier)
        if old is None:
            metrics.DOCUMENT_NOT_FOUND.inc()
            raise web.HTTPNotFound(text=f"no CAP document {identifier}")
        found = resource(
            old.xml.encode(),
            content_type=CAP_TYPE,
            last_modified=old.sent,
            max_age_s=request.app[MAX_AGE],
        )
    return _answer(request, found, ok=metrics.DOCUMENT_OK, unchanged=metrics.DOCUMENT_NOT_MODIFIED)


async def exposition(request: web.Request) -> web.Response:
    """Prometheus exposition of this process's metrics."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def live(request: web.Request) -> web.Response:
    """Liveness: the process answers (never the database's health)."""
    return web.Response(text="ok")


async def ready(request: web.Request) -> web.Response:
    """Readiness: a snapshot is loaded (later PostgreSQL outages keep serving the last one)."""
    watcher = request.app[WATCHER]
    if watcher.current is None:
        raise web.HTTPServiceUnavailable(text="not loaded")
    return web.Response(text=f"ok {watcher.renders} renders at {datetime.now(UTC).isoformat()}")


def application(
    *, watcher: Watcher, pool: asyncpg.Pool, document_max_age_s: int
) -> web.Application:
    """The aiohttp application with its routes."""
    app = web.Application()
    app[WATCHER] = watcher
    app[POOL] = pool
    app[MAX_AGE] = document_max_age_s
    app.router.add_get(FEED_PATH, feed)
    app.router.add_get("/cap/{identifier}.xml", document)
    app.router.add_get("/healthz", live)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/metrics", exposition)
    return app
