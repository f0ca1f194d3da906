"""Prompts rendered once per (alert, version, language) and kept, never on a call's path twice."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import OrderedDict
from typing import Generic

from services.voice import metrics
from services.voice.ports import P, Speech


class PromptCache(Generic[P]):
    """Renders each message once (in one thread: the speech engine is not reentrant), keeps the
    most recent `size` of them; concurrent callers of a message await the same rendering."""

    def __init__(self, speech: Speech[P], *, size: int = 64) -> None:
        self._speech = speech
        self._size = size
        self._prompts: OrderedDict[tuple[str, int, str], asyncio.Future[P]] = OrderedDict()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tts")

    async def get(self, *, alert: str, version: int, language: str, text: str) -> P:
        """The prompt of this alert version in `language`; ValueError for a language it lacks."""
        key = (alert, version, language)
        future = self._prompts.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = asyncio.ensure_future(
                loop.run_in_executor(
                    self._pool, lambda: self._speech.render(text=text, language=language)
                )
            )
            self._prompts[key] = future
            metrics.PROMPTS_RENDERED.labels(language=language).inc()
            while len(self._prompts) > self._size:
                self._prompts.popitem(last=False)
        else:
            self._prompts.move_to_end(key)
        try:
            return await asyncio.shield(future)
        except ValueError:
            self._prompts.pop(key, None)
            raise

    def close(self) -> None:
        """Stop the rendering thread."""
        self._pool.shutdown(wait=False, cancel_futures=True)
