"""Platform teams on the SMS API: who may send, with which sender names, how much per day.

A team calls with its own client certificate (`api-<team>`, admitted by the kernel's access
table); its identity reaches the API in `services.kernel.context.caller`. Each team has an
allow-list of sender names (never the government's alert sender unless listed) and a daily
quota of recipients, counted atomically in Redis before anything is queued. Only insecure
development has an anonymous caller; it keeps the service's default sender and no quota.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.kernel.errors import InvalidArgument, PermissionDenied, ResourceExhausted

logger = logging.getLogger(__name__)

#: Count `ARGV[1]` more recipients for today if that stays within the quota `ARGV[2]`;
#: answers the new count, or -1 (nothing counted) when it would not.
TAKE_QUOTA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return -1 end
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 172800)
return n
"""


@dataclass(frozen=True)
class Client:
    """One platform team's rights."""

    #: Sender names it may use; the first is used when a request names none.
    senders: tuple[str, ...]
    #: Recipients per UTC day.
    daily_quota: int


def parse_clients(text: str) -> dict[str, Client]:
    """`{"api-police": {"senders": ["POLICE"], "daily_quota": 10000}}`; ValueError if malformed."""
    doc = json.loads(text or "{}")
    if not isinstance(doc, dict):
        raise ValueError("expected an object of client name -> {senders, daily_quota}")
    clients = {}
    for name, spec in doc.items():
        senders = tuple(spec.get("senders") or ())
        quota = int(spec.get("daily_quota", 0))
        if not name.startswith("api-") or not senders or quota < 1:
            raise ValueError(f"{name}: an api-* name, at least one sender, a positive daily_quota")
        clients[name] = Client(senders, quota)
    return clients


class ApiClients:
    """Checks a caller's sender and quota, and records what it sent (the API's audit)."""

    def __init__(self, *, redis: aioredis.Redis, clients: dict[str, Client]) -> None:
        self._redis = redis
        self._clients = clients

    def sender(self, *, caller: str, asked: str, default: str) -> str:
        """The sender to use; refused unless on the caller's allow-list."""
        if not caller:
            return asked or default
        client = self._clients.get(caller)
        if client is None:
            raise PermissionDenied(f"{caller} has no SMS API account")
        if not asked:
            return client.senders[0]
        if asked not in client.senders:
            raise InvalidArgument("sender", f"not one of the sender names allowed to {caller}")
        return asked

    async def take(self, *, caller: str, recipients: int) -> None:
        """Count `recipients` against today's quota; RESOURCE_EXHAUSTED when it is used up."""
        if not caller:
            return
        client = self._clients[caller]
        day = time.strftime("%Y%m%d", time.gmtime())
        key = f"tocsin:sms:api-quota:{caller}:{day}"
        used = await self._redis.eval(TAKE_QUOTA, 1, key, recipients, client.daily_quota)
        if int(used) < 0:
            raise ResourceExhausted(
                f"daily quota of {client.daily_quota} recipients reached for {caller}"
            )

    @staticmethod
    def audit(*, caller: str, batch_id: str, recipients: int, sender: str) -> None:
        """One line per accepted send: who, which batch, how many, which sender; no numbers."""
        logger.info(
            "api send caller=%s batch=%s recipients=%d sender=%s",
            caller or "-",
            batch_id,
            recipients,
            sender,
        )
