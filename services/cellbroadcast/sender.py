"""Works through the queued requests: every operator at once, each retried on its own.

One task per open request. A task leases its row, makes one attempt, records the outcome, and if
the operator failed or did not answer waits (doubling from `retry_min_s` to `retry_max_s`) and
tries again until the alert expires, so a CBC that is down never holds back the others. Requests
to one operator about one alert go one at a time (an update's delete-then-post must not cross a
withdrawal's delete). A sweep takes over open requests whose lease ran out (a dead process's).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime

import asyncpg

from services.cellbroadcast import store
from services.cellbroadcast.metrics import ATTEMPTS, OUTCOMES
from services.cellbroadcast.model import Action, Channel, Request, State
from services.cellbroadcast.ports import Cbc, CbsPayload, LbSms, Outcome, Reply

logger = logging.getLogger(__name__)


class Retry(Exception):
    """This attempt did not finish; try again after the backoff (the text says why)."""


class Refused(Exception):
    """The operator refused for good (the text says why)."""


def _why(reply: Reply) -> str:
    status = f"HTTP {reply.status}" if reply.status else "no answer"
    return f"{status}: {reply.text}".strip().rstrip(":")


class Sender:
    """Sends the queued requests to the operators' CBCs and LB-SMS platforms."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        cbcs: Mapping[str, Cbc],
        lbsms: Mapping[str, LbSms],
        retry_min_s: float,
        retry_max_s: float,
        lease_s: float,
        owner: str | None = None,
    ) -> None:
        self._pool = pool
        self._cbcs = cbcs
        self._lbsms = lbsms
        self._retry_min = retry_min_s
        self._retry_max = retry_max_s
        self._lease = lease_s
        self._owner = owner or f"{socket.gethostname()}-{os.getpid()}"
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._answered: dict[int, asyncio.Event] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    def start(self, ids: list[int]) -> None:
        """Work on these requests (those already being worked on are left alone)."""
        for request_id in ids:
            if request_id in self._tasks:
                continue
            self._answered.setdefault(request_id, asyncio.Event())
            task = asyncio.create_task(self._run(request_id), name=f"cb-request-{request_id}")
            self._tasks[request_id] = task
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        request_id = int(task.get_name().rsplit("-", 1)[1])
        self._tasks.pop(request_id, None)
        event = self._answered.pop(request_id, None)
        if event is not None:
            event.set()

    async def first_answers(self, ids: list[int], *, timeout_s: float) -> None:
        """Wait until every request had one answer (or the timeout; those keep going)."""
        events = [self._answered[i] for i in ids if i in self._answered]
        if not events:
            return
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, timeout=timeout_s)
        finally:
            for w in waits:
                w.cancel()

    async def sweep(self) -> None:
        """Take over open requests nobody holds (after a restart, or a dead process's)."""
        self.start(await store.open_unleased(self._pool))

    async def run_sweeps(self, *, every_s: float) -> None:
        """Sweep at start and then every `every_s` seconds, for the life of the process."""
        while True:
            try:
                await self.sweep()
            except (OSError, asyncpg.PostgresError) as exc:
                logger.warning("sweep of open cell broadcast requests failed: %s", exc)
            await asyncio.sleep(every_s)

    async def stop(self) -> None:
        """Stop working (the rows stay open and leased briefly: a restart picks them up)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for cbc in self._cbcs.values():
            await cbc.close()
        for lbsms in self._lbsms.values():
            await lbsms.close()

    async def _run(self, request_id: int) -> None:
        failures = 0
        while True:
            request = await store.claim(
                self._pool, request_id=request_id, owner=self._owner, lease_s=self._lease
            )
            if request is None:
                return
            if request.expires <= datetime.now(UTC):
                await self._record(request, State.REFUSED, "the alert expired first", None, 0)
                return
            key = (request.alert_id, request.operator, request.channel.value)
            lock = self._locks.setdefault(key, asyncio.Lock())
            phones: int | None = None
            ATTEMPTS.labels(request.operator, request.channel.value, request.action.value).inc()
            try:
                async with lock:
                    phones = await self._attempt(request)
            except Retry as exc:
                failures += 1
                delay = min(self._retry_max, self._retry_min * 2 ** (failures - 1))
                left = (request.expires - datetime.now(UTC)).total_seconds()
                await self._record(request, State.RETRYING, str(exc), None, delay + self._lease)
                event = self._answered.get(request_id)
                if event is not None:
                    event.set()
                await asyncio.sleep(max(0.0, min(delay, left)))
                continue
            except Refused as exc:
                await self._record(request, State.REFUSED, str(exc), None, 0)
                return
            await self._record(request, State.ACCEPTED, "", phones, 0)
            return

    async def _record(
        self, request: Request, state: State, reason: str, phones: int | None, hold_s: float
    ) -> None:
        OUTCOMES.labels(request.operator, request.channel.value, state.value).inc()
        if state is not State.ACCEPTED:
            logger.warning(
                "%s %s of alert %s at %s: %s (%s)",
                request.channel.value,
                request.action.value,
                request.alert_id,
                request.operator,
                state.value,
                reason,
            )
        await store.record(
            self._pool,
            request_id=request.id,
            state=state,
            reason=reason,
            phones=phones,
            hold_s=hold_s,
        )

    async def _attempt(self, request: Request) -> int | None:
        """One attempt; the phones reached for LB-SMS. Raises Retry or Refused."""
        if request.channel is Channel.CELL_BROADCAST:
            cbc = self._cbcs[request.operator]
            if request.action is Action.BROADCAST:
                await self._broadcast(cbc, request)
            else:
                await self._withdraw(cbc, request)
            return None
        lbsms = self._lbsms[request.operator]
        if request.action is Action.BROADCAST:
            return await self._submit(lbsms, request)
        await self._cancel(lbsms, request)
        return None

    async def _broadcast(self, cbc: Cbc, request: Request) -> None:
        """Post the version's messages; an older version's are deleted first (no replace)."""
        await store.end_broadcasts(
            self._pool,
            alert_id=request.alert_id,
            channel=request.channel,
            operator=request.operator,
            below_version=request.version,
            state=State.SUPERSEDED,
            reason=f"replaced by version {request.version}",
        )
        active = await store.active(self._pool, operator=request.operator)
        for message_id, (alert_id, version) in sorted(active.items()):
            if alert_id == request.alert_id and version < request.version:
                await self._delete(cbc, request, message_id)
        payload = request.payload
        messages = [
            CbsPayload(int(m["message_id"]), int(m["dcs"]), tuple(map(bytes.fromhex, m["pages"])))
            for m in payload["messages"]
        ]
        for message in messages:
            holder = active.get(message.message_id)
            if holder == (request.alert_id, request.version):
                continue  # posted by an earlier attempt of this request
            reply = await cbc.create(
                message=message,
                msg_code=int(payload["msg_code"]),
                update_nr=int(payload["update_nr"]),
                cells=tuple(payload["cells"]),
                warning_period_s=int(payload["warning_period_s"]),
            )
            if reply.outcome is Outcome.CONFLICT:
                if holder is not None and holder[0] != request.alert_id:
                    raise Retry(
                        f"identifier {message.message_id} busy with alert {holder[0]}:"
                        f" {_why(reply)}"
                    )
                if holder is None and request.attempts <= 1:
                    raise Retry(f"identifier {message.message_id} busy at the CBC: {_why(reply)}")
                # Ours: an earlier attempt (maybe cut short by a crash) sent it, its answer lost.
            elif reply.outcome is Outcome.REFUSED:
                raise Refused(f"identifier {message.message_id}: {_why(reply)}")
            elif reply.outcome is not Outcome.ACCEPTED:
                raise Retry(f"identifier {message.message_id}: {_why(reply)}")
            await store.set_active(
                self._pool,
                operator=request.operator,
                message_id=message.message_id,
                alert_id=request.alert_id,
                version=request.version,
            )

    async def _delete(self, cbc: Cbc, request: Request, message_id: int) -> None:
        reply = await cbc.delete(message_id=message_id)
        if reply.outcome not in (Outcome.ACCEPTED, Outcome.UNKNOWN):
            raise Retry(f"delete of identifier {message_id}: {_why(reply)}")
        await store.clear_active(
            self._pool,
            operator=request.operator,
            message_id=message_id,
            alert_id=request.alert_id,
        )

    async def _withdraw(self, cbc: Cbc, request: Request) -> None:
        """Delete every message of the alert at this CBC, then close its broadcasts."""
        active = await store.active(self._pool, operator=request.operator)
        for message_id, (alert_id, _version) in sorted(active.items()):
            if alert_id == request.alert_id:
                await self._delete(cbc, request, message_id)
        await self._withdrawn(request)

    async def _withdrawn(self, request: Request) -> None:
        """Close the alert's broadcasts at the request's operator on its channel: withdrawn."""
        await store.end_broadcasts(
            self._pool,
            alert_id=request.alert_id,
            channel=request.channel,
            operator=request.operator,
            below_version=None,
            state=State.WITHDRAWN,
            reason="withdrawn",
        )

    async def _submit(self, lbsms: LbSms, request: Request) -> int | None:
        payload = request.payload
        reply = await lbsms.submit(
            request_id=str(payload["request_id"]),
            texts=dict(payload["texts"]),
            cells=tuple(payload["cells"]),
            validity_s=int(payload["validity_s"]),
            sender=str(payload["sender"]),
            polygon=json.dumps(payload["polygon"]) if payload.get("polygon") else "",
        )
        if reply.outcome in (Outcome.ACCEPTED, Outcome.CONFLICT):
            return reply.phones
        if reply.outcome in (Outcome.REFUSED, Outcome.UNKNOWN):
            raise Refused(_why(reply))
        raise Retry(_why(reply))

    async def _cancel(self, lbsms: LbSms, request: Request) -> None:
        for earlier in await store.of_alert(self._pool, alert_id=request.alert_id):
            if (
                earlier.channel is Channel.LB_SMS
                and earlier.operator == request.operator
                and earlier.action is Action.BROADCAST
                and earlier.state is State.ACCEPTED
            ):
                reply = await lbsms.cancel(request_id=str(earlier.payload["request_id"]))
                if reply.outcome not in (Outcome.ACCEPTED, Outcome.UNKNOWN):
                    raise Retry(f"cancel of {earlier.payload['request_id']}: {_why(reply)}")
        await self._withdrawn(request)
