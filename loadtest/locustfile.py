"""Locust users for the alerting API and the SMS API, over gRPC (sync API under gevent).

Run by `make loadtest` (`python -m loadtest.run`), which starts a stack, seeds it and writes the
seed file named by LOADTEST_SEED (addresses, issuers' tokens, drafts, numbers). Against a stack
seeded by `loadtest.run.seed_stack`, on its own:

    LOADTEST_SEED=seed.json locust -f loadtest/locustfile.py --headless -u 70 -t 60s

Every call goes through LocustInterceptor, so Locust sees one request per gRPC call, named after
the method, with its latency in milliseconds and the RpcError of a non-OK status as its failure.
At the end of the test the summary (rate, p50, p99, failures, overall and for the
preview/get/create mix) goes to the file named by LOADTEST_SUMMARY.
"""

from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

# grpc's core must poll through gevent before any channel exists (Locust has monkey-patched).
grpc_gevent.init_gevent()

import gc  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import grpc  # noqa: E402
from locust import User, between, constant_throughput, events, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.runners import WorkerRunner  # noqa: E402
from tocsin.alerting.v1 import alerting_pb2, alerting_pb2_grpc  # noqa: E402
from tocsin.sms.v1 import sms_pb2, sms_pb2_grpc  # noqa: E402

from loadtest.interceptor import LocustInterceptor  # noqa: E402
from loadtest.summary import summarize  # noqa: E402
from services.kernel.tls import load_material  # noqa: E402

#: Per-call deadline: a call slower than this is a failure, not a hang.
CALL_TIMEOUT_S = float(os.environ.get("LOADTEST_CALL_TIMEOUT_S", "5"))
#: Calls per second each user aims at (0: as fast as it can, with no wait).
USER_RATE = float(os.environ.get("LOADTEST_USER_RATE", "20"))
#: Numbers per SendBatch call of the SMS API users.
SMS_BATCH = int(os.environ.get("LOADTEST_SMS_BATCH", "10"))


def _seed() -> dict[str, Any]:
    path = os.environ.get("LOADTEST_SEED")
    if not path:
        raise SystemExit("LOADTEST_SEED must name the seed file written by python -m loadtest.run")
    seed: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return seed


SEED = _seed()
#: The development certificate each service's users present (alerting asks for none).
IDENTITY = {"alerting": "registration", "sms": "api-loadtest"}


def _channel(service: str) -> grpc.Channel:
    """A TLS channel to `service` with its users' certificate; a connection of its own."""
    options: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]
    if "pki" not in SEED:
        return grpc.insecure_channel(SEED[service], options=options)
    material = load_material(Path(SEED["pki"]) / IDENTITY[service])
    creds = grpc.ssl_channel_credentials(material.ca, material.key, material.cert)
    options.append(("grpc.ssl_target_name_override", service))
    return grpc.secure_channel(SEED[service], creds, options=options)


# What Locust itself adds to each call's latency, kept out of the measure:
# - Each blocking gRPC call waits for its completion in a thread of gevent's hub threadpool, which
#   holds 10 threads by default: more users than that queue inside Locust. One thread per user
#   (LOADTEST_THREADS, default 128).
# - Collector pauses: the young generation is collected less often (as in the services,
#   services/kernel/serve.py).
gevent.get_hub().threadpool.maxsize = int(os.environ.get("LOADTEST_THREADS", "128"))
gc.set_threshold(20_000, *gc.get_threshold()[1:])
_tokens = itertools.cycle(SEED["tokens"])
#: The draft every CreateAlert asks for (the seed's zone, SMS, kind test).
SPEC = alerting_pb2.AlertSpec.FromString(bytes.fromhex(SEED["spec_hex"]))


def _wait() -> Any:
    return constant_throughput(USER_RATE) if USER_RATE > 0 else between(0, 0)


class GrpcUser(User):
    """A user with one gRPC channel whose calls are reported to Locust."""

    abstract = True
    #: Which service of the seed file the channel goes to.
    service = "alerting"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        interceptor = LocustInterceptor(self._fire)
        # A connection of its own, as separate clients have: gRPC would otherwise share one
        # between all the channels to a target, and every call would reach one process.
        self.raw_channel = _channel(self.service)
        self.channel = grpc.intercept_channel(self.raw_channel, interceptor)

    def _fire(self, **kwargs: Any) -> None:
        self.environment.events.request.fire(response=None, context={}, **kwargs)

    def on_stop(self) -> None:
        self.raw_channel.close()


class AlertingUser(GrpcUser):
    """An issuer on the portal: looks at alerts, previews them, drafts new ones."""

    weight = int(os.environ.get("LOADTEST_WEIGHT_ALERTING", "10"))
    wait_time = _wait()

    def on_start(self) -> None:
        self.metadata = (("authorization", f"Bearer {next(_tokens)}"),)
        self.alerts = alerting_pb2_grpc.AlertingServiceStub(self.channel)
        self.known: list[str] = list(SEED["draft_ids"])

    @task(5)
    def get(self) -> None:
        """GetAlert of a draft this entity owns."""
        request = alerting_pb2.GetAlertRequest(alert_id=random.choice(self.known))
        _call(self.alerts.GetAlert, request, self.metadata)

    @task(3)
    def preview(self) -> None:
        """PreviewAlert: audience and cost from targeting."""
        request = alerting_pb2.PreviewAlertRequest(alert_id=random.choice(self.known))
        _call(self.alerts.PreviewAlert, request, self.metadata)

    @task(2)
    def create(self) -> None:
        """CreateAlert: a new draft with a fresh idempotency key."""
        request = alerting_pb2.CreateAlertRequest(idempotency_key=uuid.uuid4().hex, spec=SPEC)
        reply = _call(self.alerts.CreateAlert, request, self.metadata)
        if reply is not None and len(self.known) < 1000:
            self.known.append(reply.id)


class WatchUser(GrpcUser):
    """A crisis cell watching a sent alert's progress until its final message."""

    weight = int(os.environ.get("LOADTEST_WEIGHT_WATCH", "1"))
    wait_time = constant_throughput(1)

    def on_start(self) -> None:
        self.metadata = (("authorization", f"Bearer {next(_tokens)}"),)
        self.alerts = alerting_pb2_grpc.AlertingServiceStub(self.channel)

    @task
    def watch(self) -> None:
        """WatchAlert to the end: the server closes the stream after the final message."""
        request = alerting_pb2.WatchAlertRequest(alert_id=random.choice(SEED["sent_ids"]))
        try:
            for _progress in self.alerts.WatchAlert(
                request, metadata=self.metadata, timeout=CALL_TIMEOUT_S
            ):
                pass
        except grpc.RpcError:
            pass  # reported to Locust by the interceptor


class SmsApiUser(GrpcUser):
    """A platform team sending ad-hoc texts through the SMS API and checking on them."""

    weight = int(os.environ.get("LOADTEST_WEIGHT_SMS", "2"))
    wait_time = _wait()
    service = "sms"

    def on_start(self) -> None:
        self.sms = sms_pb2_grpc.SmsServiceStub(self.channel)
        self.batches: list[str] = []

    @task(1)
    def send_batch(self) -> None:
        """SendBatch with an idempotency key, to a few numbers."""
        request = sms_pb2.SendBatchRequest(
            idempotency_key=f"loadtest-{uuid.uuid4().hex}",
            to=random.sample(SEED["numbers"], min(SMS_BATCH, len(SEED["numbers"]))),
            text="tocsin load test: please ignore",
            ttl_seconds=600,
        )
        reply = _call(self.sms.SendBatch, request, ())
        if reply is not None and len(self.batches) < 1000:
            self.batches.append(reply.batch_id)

    @task(3)
    def get_batch(self) -> None:
        """GetBatch: counts per state of one of this user's batches."""
        if not self.batches:
            return
        request = sms_pb2.GetBatchRequest(batch_id=random.choice(self.batches))
        _call(self.sms.GetBatch, request, ())


def _call(method: Any, request: Any, metadata: tuple[tuple[str, str], ...]) -> Any:
    """Call a unary method; None on a non-OK status (already reported by the interceptor)."""
    try:
        return method(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError:
        return None


def _write_summary(environment: Environment, **_kwargs: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    path = os.environ.get("LOADTEST_SUMMARY")
    if path:
        Path(path).write_text(
            json.dumps(summarize(environment.stats), indent=2) + "\n", encoding="utf-8"
        )


# Locust's EventHook.add_listener is not annotated.
events.test_stop.add_listener(_write_summary)  # type: ignore[no-untyped-call]
