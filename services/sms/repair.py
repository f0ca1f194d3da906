"""SMS API batches after Redis lost its data (issue 16): the shared repair of a channel's API
batches (services/channel/apirepair.py, which says how) over the SMS channel's
(services/sms/batches.py), under the SMS service's own marker and lock (services/sms/keys.py).
"""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

from services.channel import apirepair
from services.channel.apirepair import LOCK_TTL_S, Repaired, run_repair
from services.sms import batches

__all__ = ["LOCK_TTL_S", "ApiRepair", "Repaired", "run_repair"]


class ApiRepair(apirepair.ApiRepair):
    """Writes the lost stream entries of SMS API batches again, once per Redis data loss."""

    def __init__(
        self, *, pool: asyncpg.Pool, redis: aioredis.Redis, lock_ttl_s: float = LOCK_TTL_S
    ) -> None:
        super().__init__(batches.BATCHES, pool=pool, redis=redis, lock_ttl_s=lock_ttl_s)
