"""Shared fixtures: real PostgreSQL and Redis, cleaned per test.

Where DATABASE_URL / REDIS_URL are set, the tests use those servers (a database per test is created
on the PostgreSQL server, so the URL's user must be allowed CREATE DATABASE); otherwise they start
embedded servers for the session, on loopback.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import prometheus_client
import psycopg
import pytest
import redis
import redis.asyncio as aioredis

from services.kernel.redis_client import connect as connect_redis
from stack.embedded import ManagedProcess, start_postgres, start_redis
from stack.migrate import apply_migrations


def _with_database(dsn: str, database: str) -> str:
    head, _, _ = dsn.rpartition("/")
    return f"{head}/{database}"


@pytest.fixture(scope="session")
def pg_server_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of a PostgreSQL server the tests may create databases on."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    server = start_postgres(data_dir=tmp_path_factory.mktemp("pg") / "data", fast_unsafe=True)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server_dsn: str) -> Iterator[str]:
    """Name of a template database with every migration applied."""
    name = f"tocsin_tmpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    apply_migrations(_with_database(pg_server_dsn, name))
    try:
        yield name
    finally:
        with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_dsn(pg_server_dsn: str, pg_template: str) -> Iterator[str]:
    """DSN of a fresh database for this test, with every migration applied."""
    name = f"tocsin_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield _with_database(pg_server_dsn, name)
    finally:
        with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pg_pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool on this test's database."""
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """URL of the Redis server for the session."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    server = start_redis(data_dir=None)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """URL of a Redis database flushed for this test."""
    client = redis.Redis.from_url(redis_server_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server_url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A redis.asyncio client on this test's (flushed) database."""
    # As the services connect: cancellations that hold (services/kernel/redis_client.py).
    client = connect_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[ManagedProcess]:
    """A Redis server of this test's own, which the test may stop and restart."""
    server = start_redis(data_dir=None)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tls_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA's TLS folder (tls.crt, tls.key, ca.crt) per service and development client."""
    from stack import pki
    from stack.services import SERVICES

    root = tmp_path_factory.mktemp("pki")
    return pki.stack_identities(root, tuple(s.name for s in SERVICES))


@pytest.fixture
def metrics_servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Services served in the test's own process: the kernel shuts its metrics server down
    without closing its socket, so each one it starts is closed here when the test ends."""
    servers: list[Any] = []

    def start_http_server(*args: Any, **kwargs: Any) -> Any:
        server, thread = prometheus_client.start_http_server(*args, **kwargs)
        servers.append(server)
        return server, thread

    monkeypatch.setattr(
        importlib.import_module("services.kernel.serve"), "start_http_server", start_http_server
    )
    yield servers
    for server in servers:
        server.server_close()
