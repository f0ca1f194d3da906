"""Re-reading the rules file while the process runs (e.g. a Kubernetes ConfigMap being updated)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ratelimit.config import Rules, RulesError
from ratelimit.limiter import Limiter

logger = logging.getLogger(__name__)


class RulesFileWatcher:
    """Hands the rules file to the limiter again whenever its text changes and is valid."""

    def __init__(self, limiter: Limiter, path: str | Path, *, interval: float = 2.0) -> None:
        self._limiter = limiter
        self._path = Path(path)
        #: Seconds between two reads of the file.
        self.interval = interval
        self._text: str | None = None

    async def check(self) -> bool:
        """Read the file; return whether it changed and its new rules are now in force."""
        try:
            text = await asyncio.to_thread(self._path.read_text, encoding="utf-8")
        except OSError as exc:
            logger.error(
                "rate limiter: cannot read %s, keeping the rules in force: %s", self._path, exc
            )
            return False
        if self._text is None:
            self._text = text
            return False
        if text == self._text:
            return False
        self._text = text
        try:
            rules = Rules.from_toml(text, source=str(self._path))
        except RulesError as exc:
            logger.error("rate limiter: keeping the rules in force: %s", exc)
            return False
        self._limiter.update_rules(rules)
        logger.info("rate limiter: rules re-read from %s", self._path)
        return True

    async def run(self) -> None:
        """Check the file every `interval` seconds until cancelled."""
        await self.check()
        while True:
            await asyncio.sleep(self.interval)
            await self.check()
