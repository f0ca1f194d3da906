"""SMS service process: `python -m services.sms`.

The one place that picks the concrete SMPP gateway and rate limiter behind the service's ports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tocsin.sms.v1 import sms_pb2, sms_pb2_grpc

from gateways.smpp import (
    BindConfig,
    DeliveryReceipt,
    IdFormat,
    SessionGate,
    SmppClient,
    SubmitOutcome,
    SubmitRequest,
    segment_count,
)
from ratelimit.limiter import Limiter, LimiterSettings
from services.channel.recorder import Recorder
from services.channel.retention import run_retention
from services.channel.units import Units
from services.channel.worker import DRAIN_WRITE_S, ChannelWorker, make_recorder
from services.kernel import Kernel, SettingsError, load_settings, run_service
from services.kernel.process import dies_with_parent
from services.sms import batches, metrics
from services.sms.api import SmsApi
from services.sms.channel import NAME, SmsChannel, receipt_row
from services.sms.clients import ApiClients
from services.sms.model import SmsJob
from services.sms.ports import Outcome, Submission, SubmitAnswer
from services.sms.repair import ApiRepair, run_repair
from services.sms.routing import Router
from services.sms.servicer import SmsServicer
from services.sms.sessions import SessionLeases
from services.sms.settings import BindSpec, Settings
from services.sms.tokens import OperatorPacer

logger = logging.getLogger(__name__)

#: command_status answered for a text the gateway cannot encode (ESME_RINVMSGLEN).
INVALID_LENGTH = 0x01
#: The gateway's outcome as the service's (a dict lookup, not an Enum call, per submission).
_OUTCOMES = {outcome: Outcome(outcome.value) for outcome in SubmitOutcome}


class SmppBind:
    """A gateways.smpp client seen through the service's Bind port."""

    def __init__(self, client: SmppClient) -> None:
        self.client = client
        self.name = client.config.name
        self.window = client.config.window

    @property
    def is_bound(self) -> bool:
        """Whether the bind is up."""
        return self.client.is_bound

    @property
    def outstanding(self) -> int:
        """submit_sm not yet answered."""
        return self.client.outstanding

    async def submit(self, submission: Submission) -> SubmitAnswer:
        """Submit through the client; a text it cannot encode is a permanent failure."""
        try:
            result = await self.client.submit(
                SubmitRequest(
                    destination=submission.destination,
                    source=submission.source,
                    text=submission.text,
                    reference=submission.reference,
                    segments=submission.segments,
                    pace=submission.pace,
                    expires_at=submission.expires_at,
                )
            )
        except ValueError:
            return SubmitAnswer(Outcome.PERMANENT, [], INVALID_LENGTH, 0, frozenset())
        return SubmitAnswer(
            _OUTCOMES[result.outcome],
            result.message_ids,
            result.command_status,
            result.reference,
            result.missing(),
        )


def receipt_handler(
    recorder: Recorder, operator: str
) -> Callable[[DeliveryReceipt], Awaitable[None]]:
    """The bind's receipt callback: hand the receipt to the recorder, under its operator."""

    def handle(receipt: DeliveryReceipt) -> Awaitable[None]:
        return recorder.receipt(operator, receipt.message_id, receipt_row(receipt.state))

    return handle


def bind_state(operator: str, bind: str) -> Callable[[bool], None]:
    """The bind's state callback: the bind-up gauge."""

    def changed(up: bool) -> None:
        metrics.BIND_UP.labels(operator, bind).set(1 if up else 0)

    return changed


# -- shutdown budget (ops, issue 18) -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ShutdownBudget:
    """Shares of TOCSIN_SHUTDOWN_GRACE_S, spent one after the other; they add up to it."""

    #: Work in hand finishing (the worker stops reading at once).
    work_s: float
    #: Writing the last states, acknowledging, handing the rest back to the group.
    write_s: float
    #: Every bind unbinding, all at once (outstanding submit_sm answered first).
    unbind_s: float
    #: What is left for the gRPC server's last calls (serve.py stops it with the remainder).
    server_s: float


def shutdown_budget(grace_s: float) -> ShutdownBudget:
    """Split the grace: a tenth each to unbinding and the server, then the writes, then the work.

    The writes come before the work in hand: handing unfinished entries back is what lets
    another pod go on at once, while work cut short is only resent (its durability window).
    """
    unbind_s = server_s = min(5.0, grace_s * 0.1)
    write_s = min(DRAIN_WRITE_S, grace_s - unbind_s - server_s)
    return ShutdownBudget(grace_s - unbind_s - server_s - write_s, write_s, unbind_s, server_s)


# -- end shutdown budget ----------------------------------------------------------------------


def smpp_bind(
    spec: BindSpec,
    *,
    operator: str,
    recorder: Recorder,
    unbind_s: float = 5.0,
    session_gate: SessionGate | None = None,
) -> SmppBind:
    """An SMPP client for one configured bind (its sessions opened inside `session_gate`)."""
    config = BindConfig(
        name=spec.name,
        host=spec.host,
        port=spec.port,
        system_id=spec.system_id,
        password=spec.password,
        window=spec.window,
        unbind_timeout_s=unbind_s,
        submit_id_format=IdFormat(spec.submit_id_format),
        receipt_id_format=IdFormat(spec.receipt_id_format),
    )
    metrics.BIND_UP.labels(operator, spec.name).set(0)
    return SmppBind(
        SmppClient(
            config,
            on_receipt=receipt_handler(recorder, operator),
            on_bind_state=bind_state(operator, spec.name),
            session_gate=session_gate,
        )
    )


async def build(kernel: Kernel[Settings]) -> None:
    """Binds, limiter, channel worker and API of one SMS process."""
    settings = kernel.settings
    budget = shutdown_budget(settings.shutdown_grace_s)
    recorder = make_recorder(channel=NAME, settings=settings, pool=kernel.pg)
    operators = settings.operators()
    leases = SessionLeases(
        kernel.redis,
        limits={op.name: op.max_sessions for op in operators if op.max_sessions is not None},
        lease_s=settings.smpp_session_lease_s,
    )
    binds = {
        op.name: [
            smpp_bind(
                b,
                operator=op.name,
                recorder=recorder,
                unbind_s=budget.unbind_s,
                session_gate=leases.gate(op.name),
            )
            for b in op.binds
        ]
        for op in operators
    }
    limiter = Limiter.from_rules(
        kernel.redis, settings.ratelimit_rules, settings=LimiterSettings(replica_group="sms")
    )
    await limiter.start()
    units = Units(segment_count)
    router = Router(routes=[(op.name, op.prefixes) for op in operators], default=operators[0].name)
    channel = SmsChannel(
        router=router,
        binds=binds,
        pacers={
            op.name: OperatorPacer(
                source=limiter,
                operator=op.name,
                lease_size=settings.lease_size,
                throttle_min_s=settings.throttle_min_s,
                throttle_max_s=settings.throttle_max_s,
            )
            for op in operators
        },
        units=units,
        default_sender=settings.default_sender,
    )
    recorder.on_receipts = channel.receipts_recorded
    worker: ChannelWorker[SmsJob] = ChannelWorker(
        channel=channel, settings=settings, pool=kernel.pg, redis=kernel.redis, recorder=recorder
    )
    channel.verdict = worker.control.verdict
    channel.erased = worker.tombstones.erased
    for op_binds in binds.values():
        for bind in op_binds:
            await bind.client.start()
    kernel.add_background(worker.run(), name="sms-worker")
    api = SmsApi(
        pool=kernel.pg,
        redis=kernel.redis,
        router=router,
        segment_count=units.sms,
        default_sender=settings.default_sender,
        progress_cache_s=settings.progress_cache_s,
        clients=ApiClients(redis=kernel.redis, clients=settings.clients()),
    )
    sms_pb2_grpc.add_SmsServiceServicer_to_server(SmsServicer(api), kernel.server)
    kernel.add_background(
        run_retention(kernel.pg, settings, channel="sms"),
        name="sms-retention",
    )
    # API batches whose stream entries Redis lost: at start-up, then whenever its marker is gone.
    kernel.add_background(
        run_repair(
            ApiRepair(pool=kernel.pg, redis=kernel.redis),
            interval_s=settings.api_repair_interval_s,
        ),
        name="sms-api-repair",
    )
    kernel.add_background(
        batches.BATCHES.run_retention(kernel.pg, interval_s=settings.retention_interval_s),
        name="sms-api-batch-retention",
    )
    kernel.add_service_name(sms_pb2.DESCRIPTOR.services_by_name["SmsService"].full_name)

    async def shutdown() -> None:
        await worker.drain(timeout=budget.work_s, write_timeout=budget.write_s)
        # All binds at once: one at a time, 24 binds at up to 5 s each outlive any grace period.
        await asyncio.gather(*(b.client.close() for op_binds in binds.values() for b in op_binds))
        await limiter.close()

    kernel.on_shutdown(shutdown)


def start_workers(settings: Settings) -> list[subprocess.Popen[bytes]]:
    """Start `workers - 1` more SMS processes on the same group, each with its own binds."""
    base = settings.metrics_bind_port
    workers = []
    for i in range(1, settings.workers):
        env = dict(os.environ)
        env.update(
            TOCSIN_WORKERS="1",
            TOCSIN_GRPC_PORT="0",
            TOCSIN_METRICS_PORT=str(base + i if base else 0),
        )
        workers.append(
            subprocess.Popen(dies_with_parent([sys.executable, "-m", "services.sms"]), env=env)
        )
    return workers


def main() -> None:
    """Run the SMS service (and its worker processes) until SIGTERM."""
    try:
        workers = start_workers(load_settings(Settings))
    except SettingsError:
        workers = []  # run_service reports the bad variable and exits
    try:
        run_service(name="sms", settings_cls=Settings, build=build)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()


if __name__ == "__main__":
    main()
