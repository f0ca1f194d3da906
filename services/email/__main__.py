"""E-mail service process: `python -m services.email`.

The one place that picks the concrete SMTP gateway behind the service's ports.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from pathlib import Path

import redis.asyncio as aioredis
from tocsin.email.v1 import email_pb2_grpc

from gateways.smtp import (
    BounceReceiver,
    Content,
    DkimKey,
    RelayConfig,
    SmtpPool,
    compose,
    sign,
    tagged_address,
)
from services.channel.retention import run_retention
from services.channel.worker import ChannelWorker, make_recorder
from services.email import metrics
from services.email.bounces import LateAnswers
from services.email.channel import NAME, EmailChannel
from services.email.letters import Letter, Letters
from services.email.servicer import EmailServicer
from services.email.settings import Settings
from services.kernel import Kernel, run_service
from services.kernel.keys import alert_cancelled, alert_version

logger = logging.getLogger(__name__)

#: The relay's name as a route (metrics label, `operator` column).
ROUTE = "relay"


def composer(settings: Settings) -> functools.partial[bytes]:
    """compose (+ DKIM sign once, when configured) with the deployment's sender."""
    key = None
    if settings.dkim_key_file:
        key = DkimKey(
            domain=settings.dkim_domain,
            selector=settings.dkim_selector,
            private_key=Path(settings.dkim_key_file).read_bytes(),
        )
    return functools.partial(
        _compose,
        from_name=settings.mail_from_name,
        from_address=settings.mail_from,
        footer=settings.mail_footer,
        key=key,
    )


def _compose(
    *,
    subject: str,
    text: str,
    language: str,
    message_id: str,
    date: datetime,
    from_name: str,
    from_address: str,
    footer: str,
    key: DkimKey | None,
) -> bytes:
    message = compose(
        Content(
            from_name=from_name,
            from_address=from_address,
            subject=subject,
            text=text,
            language=language,
            message_id=message_id,
            date=date,
            footer=footer,
        )
    )
    return message if key is None else sign(message, key=key)


async def _current(redis: aioredis.Redis, alert: str, version: int) -> bool:
    """Whether an alert version is still to be sent: not cancelled, not superseded."""
    cancelled, latest = await redis.mget(alert_cancelled(alert), alert_version(alert))
    return cancelled is None and (latest is None or int(latest) <= version)


async def build(kernel: Kernel[Settings]) -> None:
    """Wire the relay pool, the channel on the worker, the bounce receiver and the API."""
    settings = kernel.settings
    recorder = make_recorder(channel=NAME, settings=settings, pool=kernel.pg)
    relay = SmtpPool(
        RelayConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            connections=settings.smtp_connections,
            timeout_s=settings.smtp_timeout_s,
            helo_name=settings.smtp_helo,
            ca_file=settings.smtp_ca_file,
            verify_tls=settings.smtp_verify_tls,
        )
    )
    metrics.CONNECTIONS.labels(ROUTE, "busy").set_function(lambda: relay.busy)
    metrics.CONNECTIONS.labels(ROUTE, "limit").set(settings.smtp_connections)
    letters = Letters(kernel.pg)
    late = LateAnswers(receipt=recorder.receipt, route=ROUTE)

    async def letter(alert: str, version: int, language: str, text: str) -> Letter:
        return await letters.letter(alert=alert, version=version, language=language, text=text)

    channel = EmailChannel(
        relay=relay,
        compose=composer(settings),
        return_path=functools.partial(
            _return_path, local=settings.bounce_local, domain=settings.bounce_domain
        ),
        letter=letter,
        current=functools.partial(_current, kernel.redis),
        accepted=late.accepted,
        route=ROUTE,
        connections=settings.smtp_connections,
        batch=settings.smtp_batch,
        linger_s=settings.smtp_linger_s,
        message_domain=settings.mail_from.rpartition("@")[2],
        default_sender=settings.default_sender,
    )
    worker = ChannelWorker(
        channel=channel,
        settings=settings,
        pool=kernel.pg,
        redis=kernel.redis,
        recorder=recorder,
    )
    kernel.add_background(worker.run(), name="email-worker")
    kernel.add_background(
        run_retention(kernel.pg, settings, channel=channel.name),
        name="email-retention",
    )
    if settings.bounce_port >= 0:
        receiver = BounceReceiver(
            on_bounces=late.bounced,
            host=settings.bounce_host,
            port=settings.bounce_port,
        )
        await receiver.start()
        kernel.on_shutdown(receiver.stop)
    email_pb2_grpc.add_EmailServiceServicer_to_server(EmailServicer(pool=kernel.pg), kernel.server)
    kernel.add_service_name("tocsin.email.v1.EmailService")

    async def drain() -> None:
        await worker.drain(timeout=settings.shutdown_grace_s)
        await channel.close()
        await relay.close()

    kernel.on_shutdown(drain)


def _return_path(tag: str, *, local: str, domain: str) -> str:
    return tagged_address(local=local, tag=tag, domain=domain)


def main() -> None:
    """Run the e-mail service until SIGTERM."""
    run_service(name="email", settings_cls=Settings, build=build)


if __name__ == "__main__":
    main()
