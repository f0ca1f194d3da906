"""Service-level signals: backlog in recipients, time to first message, reached in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import progress
from services.alerting.model import Channel
from services.alerting.ports import Sent
from tests.services.alerting.conftest import Harness, spec
from tests.services.alerting.test_ledger import create_and_send


def sample(name: str, **labels: str) -> float:
    """A sample's value, 0 when the series does not exist yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_backlog_first_message_and_reach_follow_the_channel_reports(
    harness: Harness,
) -> None:
    gent = await harness.entity("Stad Gent", postpaid=True)
    client = await harness.issuer(gent.id, "mayor.gent")
    alert = await create_and_send(client, spec(channels=(pb.CHANNEL_SMS,)), "slo-0001")
    targeted = 15  # FakeTargeting: 10 nl + 5 fr SMS recipients
    first_count = sample("tocsin_alert_first_message_seconds_count", channel="sms")
    in_time = sample("tocsin_alert_recipients_final_total", channel="sms", reached="in_time")
    not_reached = sample("tocsin_alert_recipients_final_total", channel="sms", reached="no")

    await progress.settle_live(harness.pool, deliveries=harness.deliveries)
    assert sample("tocsin_channel_backlog_recipients", channel="sms") == targeted
    assert sample("tocsin_alert_first_message_seconds_count", channel="sms") == first_count

    harness.deliveries.reports[alert.id] = {Channel.SMS: Sent(submitted=6, delivered=4, failed=1)}
    await progress.settle_live(harness.pool, deliveries=harness.deliveries)
    assert sample("tocsin_channel_backlog_recipients", channel="sms") == targeted - 7
    assert sample("tocsin_alert_first_message_seconds_count", channel="sms") == first_count + 1
    assert sample("tocsin_alert_recipients_final_total", channel="sms", reached="in_time") == (
        in_time + 4
    )
    assert sample("tocsin_alert_recipients_final_total", channel="sms", reached="no") == (
        not_reached + 1
    )

    # Settling again without news counts nothing twice.
    await progress.settle_live(harness.pool, deliveries=harness.deliveries)
    assert sample("tocsin_alert_first_message_seconds_count", channel="sms") == first_count + 1
    assert sample("tocsin_alert_recipients_final_total", channel="sms", reached="in_time") == (
        in_time + 4
    )


def test_recipients_reached_after_the_target_time_are_late() -> None:
    sent_at = datetime(2026, 1, 1, tzinfo=UTC)
    late = sample("tocsin_alert_recipients_final_total", channel="voice", reached="late")
    progress.observe_outcomes(
        "voice",
        {"submitted": 3, "delivered": 1},
        {"submitted": 5, "delivered": 4, "failed": 0},
        sent_at=sent_at,
        expires_at=sent_at + timedelta(minutes=10),  # expiry before the 45-minute budget
        now=sent_at + timedelta(minutes=11),
    )
    assert sample("tocsin_alert_recipients_final_total", channel="voice", reached="late") == (
        late + 3
    )
