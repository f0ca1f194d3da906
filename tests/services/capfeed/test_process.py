"""The feed as its own process: alive at once, ready only once it has loaded its snapshot."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp

from stack.embedded import free_port


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        return response.status


async def test_alive_but_not_ready_while_postgres_is_down_then_ready_when_it_is_up(
    pg_dsn: str,
) -> None:
    down = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    for dsn, ready in ((down, 503), (pg_dsn, 200)):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        env.update(DATABASE_URL=dsn, TOCSIN_CAPFEED_PORT="0", TOCSIN_LOG_LEVEL="ERROR")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.capfeed", env=env, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            line = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout=30))
            url = f"http://127.0.0.1:{line['port']}"
            async with aiohttp.ClientSession() as session:
                assert await _status(session, url + "/healthz") == 200
                async with asyncio.timeout(30):
                    while True:
                        if await _status(session, url + "/readyz") == ready:
                            break
                        await asyncio.sleep(0.1)  # another process: nothing to await on
                assert await _status(session, url + "/cap/feed.atom") == ready
        finally:
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
