"""Rate-limiter fixtures: a Redis the test may restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack.embedded import ManagedProcess, start_redis


class RestartableRedis:
    """A private redis-server on one fixed loopback port, which a test stops and starts again."""

    def __init__(self) -> None:
        self._server: ManagedProcess = start_redis(data_dir=None)
        self.url = self._server.url
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> None:
        """Stop the server (its memory is lost: no persistence)."""
        self._server.stop()

    def start(self) -> None:
        """Start a fresh server on the same port."""
        self._server = start_redis(data_dir=None, port=self.port)


@pytest.fixture
def restartable_redis() -> Iterator[RestartableRedis]:
    """A Redis of this test's own that it may restart."""
    server = RestartableRedis()
    try:
        yield server
    finally:
        server.stop()
