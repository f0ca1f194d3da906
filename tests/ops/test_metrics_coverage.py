"""Every metric a dashboard or an alert rule reads is exported by a running stack.

The stack runs as `make run` runs it (its own ports and data), one alert goes through it to
delivery, then every service's /metrics is scraped. A name the chart uses and no service exports
would be a silent hole: an empty panel, or an alert that can never fire. Each dashboard query is
then matched against the exposition itself: a label it filters on that no series has, or a fixed
value no series carries, is a panel that stays empty on a healthy stack.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from tocsin.alerting.v1 import alerting_pb2
from tocsin.targeting.v1 import targeting_pb2, targeting_pb2_grpc

from services.kernel.tls import connect
from stack import pki, seed
from stack.running import RunningStack, running_stack
from stack.services import CAPFEED_PORT
from tests.charts.conftest import CHART
from tests.charts.test_metric_names import contract, dashboard_expressions, metric_names

RULES_TEMPLATE = CHART / "templates" / "prometheusrule.yaml"
#: Suffixes of the series a family exports besides its own name.
SERIES_SUFFIXES = ("_bucket", "_sum", "_count", "_created")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
#: A selector of a tocsin_ series in a query, and its matchers.
SELECTOR = re.compile(r"\b(tocsin_[a-zA-Z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
#: Labels Prometheus adds when it scrapes (the exposition does not have them).
TARGET_LABELS = {"namespace", "release", "pod", "job", "instance"}
#: Names that have samples only once something goes wrong; a healthy delivery never makes them.
ONLY_ON_TROUBLE = {
    "tocsin_sms_failed_total": "a final SMS failure",
    "tocsin_sms_throttled_total": "an SMSC throttling answer",
    "tocsin_ratelimit_refusals_total": "a lease refused by the limiter",
    "tocsin_ratelimit_fallback": "the limiter falling back to local buckets (it then sets 1)",
    "tocsin_email_bounces_total": "a DSN report coming back from the relay",
    "tocsin_email_gave_up_total": "an e-mail recipient ended without the relay",
}
#: Names that have samples only where a deployment configures what they measure; `make run`'s
#: stack does not (they are still checked to be declared by a service).
ONLY_WHEN_CONFIGURED = {
    "tocsin_smpp_sessions_held": "an operator with max_sessions (SMPP session leases)",
    "tocsin_smpp_session_limit": "an operator with max_sessions (SMPP session leases)",
}
#: Label values only trouble makes: (family, label, value).
TROUBLE_VALUES = {
    ("tocsin_cellbroadcast_outcomes_total", "state", "retrying"),
    ("tocsin_cellbroadcast_outcomes_total", "state", "refused"),
}
SUBSCRIBERS = 40
#: Subscribers registered for e-mail only, so that the relay gets transactions.
EMAIL_SUBSCRIBERS = 5
#: Every channel the stack delivers: the alert goes out on each, so each service exports.
CHANNELS = (
    alerting_pb2.CHANNEL_SMS,
    alerting_pb2.CHANNEL_EMAIL,
    alerting_pb2.CHANNEL_CELL_BROADCAST,
    alerting_pb2.CHANNEL_LB_SMS,
    alerting_pb2.CHANNEL_CAP_FEED,
)


@dataclass
class Scrape:
    """What the services' /metrics endpoints exported."""

    #: Family names declared by a `# TYPE` line.
    declared: set[str] = field(default_factory=set)
    #: Family names with at least one sample.
    sampled: set[str] = field(default_factory=set)
    #: Family name -> the label sets of its samples.
    series: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    #: Per service, whether it answered.
    answered: dict[str, bool] = field(default_factory=dict)

    def add(self, text: str) -> None:
        """Fold one exposition into the sets."""
        types: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(maxsplit=3)
                types[name] = kind
                self.declared.add(name)
            elif line and not line.startswith("#"):
                match = SAMPLE.match(line)
                assert match, line
                family = _family(match.group(1), types)
                self.sampled.add(family)
                labels = dict(LABEL.findall(match.group(2) or ""))
                self.series.setdefault(family, []).append(labels)

    def mismatches(self, where: str, expr: str, known: dict[str, str]) -> list[str]:
        """What in a query's tocsin_ selectors no exported series has (label, or fixed value)."""
        problems = []
        for name, matchers in SELECTOR.findall(expr):
            family = next(iter(metric_names(name, known)))
            if family in ONLY_ON_TROUBLE or family in ONLY_WHEN_CONFIGURED:
                continue
            samples = self.series.get(family, [])
            if not samples:
                problems.append(f"{where}: {name} has no series")
                continue
            for label, op, value in MATCHER.findall(matchers):
                if label in TARGET_LABELS:
                    continue
                if not any(label in s for s in samples):
                    problems.append(f"{where}: no {name} series has a label {label}")
                elif (
                    op == "="
                    and "$" not in value
                    and (family, label, value) not in TROUBLE_VALUES
                    and not any(s.get(label) == value for s in samples)
                ):
                    problems.append(f'{where}: no {name} series has {label}="{value}"')
        return problems


def _family(sample: str, types: dict[str, str]) -> str:
    if sample in types:
        return sample
    for suffix in SERIES_SUFFIXES:
        base = sample.removesuffix(suffix)
        if base != sample and base in types:
            return base
    return sample


def used_names() -> dict[str, set[str]]:
    """Metric name -> where the dashboards and alert rules use it."""
    known = contract()
    used: dict[str, set[str]] = {}
    for where, expr in dashboard_expressions():
        for name in metric_names(expr, known):
            used.setdefault(name, set()).add(where)
    # The template's Go actions never hold a metric name; its PromQL does, as written.
    for name in metric_names(RULES_TEMPLATE.read_text(encoding="utf-8"), known):
        used.setdefault(name, set()).add(RULES_TEMPLATE.name)
    return used


async def deliver_one_alert(stack: RunningStack) -> alerting_pb2.ChannelProgress:
    """Admin, entity, issuer, subscribers, then one alert sent and watched to its end."""
    password = seed.new_password()
    await seed.bootstrap_admin(
        database_url=stack.database_url(), username="ops-admin", password=password
    )
    async with (
        connect(stack.grpc("alerting"), settings=pki.client_settings(stack.var)) as alerting,
        connect(
            stack.grpc("targeting"), service="targeting", settings=pki.client_settings(stack.var)
        ) as targeting,
    ):
        admin = seed.bearer(await seed.login(alerting, username="ops-admin", password=password))
        entity_id = await seed.ensure_entity(alerting, admin, place=seed.GENT)
        await seed.ensure_issuer(
            alerting, admin, entity_id=entity_id, username="ops-issuer", password=password
        )
        issuer = seed.bearer(await seed.login(alerting, username="ops-issuer", password=password))
        await seed.register_subscribers(targeting, place=seed.GENT, count=SUBSCRIBERS)
        await register_email_subscribers(targeting, count=EMAIL_SUBSCRIBERS)
        # An emergency: the presence channels (cell broadcast, LB-SMS) are for emergencies only.
        spec = seed.alert_spec(place=seed.GENT, kind=alerting_pb2.ALERT_KIND_EMERGENCY)
        spec.ClearField("channels")
        spec.channels.extend(CHANNELS)
        alert = await seed.create_alert(alerting, issuer, spec=spec, key="ops-metrics-alert")
        # Watched to the final message: the alerting service settles (charges, counts) on it.
        return await seed.deliver(alerting, issuer, alert_id=alert.id, timeout=90)


async def register_email_subscribers(channel: grpc.aio.Channel, *, count: int) -> None:
    """Subscribers at home in Gent who chose e-mail only."""
    stub = targeting_pb2_grpc.TargetingStub(channel)
    rng = random.Random(11)
    for i in range(count):
        lon, lat = seed.GENT.random_point(rng)
        await stub.RegisterSubscriber(
            targeting_pb2.RegisterSubscriberRequest(
                subscriber=targeting_pb2.Subscriber(
                    email=f"citizen{i}@example.test",
                    language="nl",
                    channels=[targeting_pb2.CHANNEL_EMAIL],
                    addresses=[
                        targeting_pb2.Address(
                            kind=targeting_pb2.ADDRESS_KIND_HOME, lon=lon, lat=lat
                        )
                    ],
                )
            ),
            timeout=seed.CALL_TIMEOUT_S,
        )


def capfeed(stack: RunningStack) -> str:
    """Base URL of the stack's CAP feed (HTTP; not in its gRPC services' table)."""
    return f"http://127.0.0.1:{CAPFEED_PORT + stack.offset}"


def scrape(stack: RunningStack) -> Scrape:
    """Every service's /metrics, the CAP feed's included (after one read of the feed)."""
    found = Scrape()
    with urllib.request.urlopen(f"{capfeed(stack)}/cap/feed.atom", timeout=5) as reply:
        assert b"<entry" in reply.read(), "the alert is not in the CAP feed"
    urls = {service: stack.metrics(service) for service in stack.services()}
    urls["capfeed"] = f"{capfeed(stack)}/metrics"
    for service, url in urls.items():
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                found.add(reply.read().decode("utf-8"))
            found.answered[service] = True
        except OSError:
            found.answered[service] = False
    return found


@pytest.mark.timeout(240)
def test_every_metric_of_the_dashboards_and_rules_is_exported(tmp_path: Path) -> None:
    used = used_names()
    assert "tocsin_smpp_bind_up" in used, "the rules template was not read"
    assert len(used) > 15, used
    with running_stack(var=tmp_path / "var") as stack:
        last = asyncio.run(deliver_one_alert(stack))
        assert (last.targeted, last.delivered) == (SUBSCRIBERS, SUBSCRIBERS), last
        found = scrape(stack)
    assert all(found.answered.values()), found.answered
    assert {"email", "cellbroadcast", "capfeed"} <= set(found.answered), found.answered
    missing = {name: sorted(where) for name, where in used.items() if name not in found.declared}
    assert not missing, "used but exported by no service:\n" + json.dumps(missing, indent=2)
    silent = {
        name: sorted(where)
        for name, where in used.items()
        if name not in found.sampled
        and name not in ONLY_ON_TROUBLE
        and name not in ONLY_WHEN_CONFIGURED
    }
    assert not silent, "declared but without a sample after a delivered alert:\n" + json.dumps(
        silent, indent=2
    )
    known = contract()
    empty = [
        p for where, expr in dashboard_expressions() for p in found.mismatches(where, expr, known)
    ]
    assert not empty, "dashboard queries no exported series answers:\n" + "\n".join(empty)


def test_the_query_check_finds_labels_and_values_no_series_has() -> None:
    found = Scrape()
    found.add(
        "# TYPE tocsin_sms_segments_total counter\n"
        'tocsin_sms_segments_total{operator="proximus"} 3.0\n'
    )
    known = {"tocsin_sms_segments_total": "counter"}
    ok = 'sum(rate(tocsin_sms_segments_total{namespace="$namespace", operator=~"$operator"}[5m]))'
    assert found.mismatches("ok", ok, known) == []
    assert found.mismatches("bad", 'tocsin_sms_segments_total{bind="x"}', known) == [
        "bad: no tocsin_sms_segments_total series has a label bind"
    ]
    assert found.mismatches("bad", 'tocsin_sms_segments_total{operator="orange"}', known) == [
        'bad: no tocsin_sms_segments_total series has operator="orange"'
    ]
