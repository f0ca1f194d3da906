"""Generate the Grafana dashboards of the chart (charts/tocsin/dashboards/*.json).

Dashboards are written here as code so that layout, data source and variables stay uniform and a
review reads queries, not 2,000 lines of panel JSON. Metric names: docs/metrics.md only.

    python charts/tools/dashboards.py charts/tocsin/dashboards          # write
    python charts/tools/dashboards.py --check charts/tocsin/dashboards  # fail if out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana import RATE, UP_DOWN, Panel, Q, Row, dashboard, quantile, rate, sel, variable

#: Price of one communication unit (SMS segment, voice message), EUR excluding VAT.
UNIT_PRICE_EUR = 0.055
#: The bucket holding the whole SMS budget in the built-in rate-limit rules.
GLOBAL_SMS_BUCKET = "sms:global"


def per_second(
    title: str,
    description: str,
    metric: str,
    by: str,
    *,
    stack: bool = True,
    **matchers: str,
) -> Panel:
    """Return a panel of one counter's rate per `by` labels, named by those labels."""
    legend = " ".join("{{" + label.strip() + "}}" for label in by.split(","))
    query = Q(rate(metric, by, **matchers), legend)
    return Panel(title, description, (query,), unit="ops", stack=stack)


OPERATOR_VARIABLE = variable(
    "operator",
    "Operator",
    'label_values(tocsin_smpp_bind_up{namespace="$namespace"}, operator)',
    multi=True,
)
SERVICE_VARIABLE = variable(
    "service",
    "Service",
    'label_values(tocsin_serving{namespace="$namespace"}, service)',
    multi=True,
)

# A counter has no series until its first increment: "or vector(0)" and "or other * 0" keep a
# ratio defined when, say, nothing has failed yet or nothing was delivered at all.
SMS_DELIVERED = f"(sum(rate(tocsin_sms_delivered_total{sel()}[{RATE}])) or vector(0))"
SMS_FAILED = f"(sum(rate(tocsin_sms_failed_total{sel()}[{RATE}])) or vector(0))"
CHANNEL_FINAL = rate("tocsin_alert_messages_total", "channel", state="~delivered|failed")
CHANNEL_DELIVERED = rate("tocsin_alert_messages_total", "channel", state="delivered")

DISPATCH = dashboard(
    uid="tocsin-dispatch",
    title="Tocsin / Dispatch overview",
    description="Is the alert going out: live alerts, SMS against the limit, delivery, cost.",
    rows=(
        Row(
            "Now",
            (
                Panel(
                    "Live alerts",
                    "Alerts sent and not yet complete, expired or cancelled, by kind.",
                    (Q(f"sum by (kind) (tocsin_alerts_live{sel()})", "{{kind}}"),),
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "SMS delivered",
                    "Delivery receipts DELIVERED over final outcomes (delivered + failed).",
                    (Q(f"{SMS_DELIVERED} / ({SMS_DELIVERED} + {SMS_FAILED})", "delivered"),),
                    kind="gauge",
                    unit="percentunit",
                    width=6,
                    thresholds=((0.0, "red"), (0.9, "orange"), (0.97, "green")),
                ),
                Panel(
                    "SMS per second",
                    "submit_sm answered with success, against the global rate limit.",
                    (
                        Q(f"sum(rate(tocsin_sms_submitted_total{sel()}[{RATE}]))", "submitted"),
                        Q(
                            f"max(tocsin_ratelimit_rate_per_second{sel(bucket=GLOBAL_SMS_BUCKET)})",
                            "limit",
                        ),
                    ),
                    unit="ops",
                    width=12,
                ),
            ),
        ),
        Row(
            "Messages",
            (
                per_second(
                    "Messages per channel and state",
                    "Messages reaching a state (queued, submitted, delivered, failed) per second.",
                    "tocsin_alert_messages_total",
                    "channel, state",
                    stack=False,
                ),
                Panel(
                    "Delivery success per channel",
                    "Delivered over delivered + failed, per channel.",
                    (
                        Q(
                            f"({CHANNEL_DELIVERED} or {CHANNEL_FINAL} * 0) / {CHANNEL_FINAL}",
                            "{{channel}}",
                        ),
                    ),
                    unit="percentunit",
                ),
                per_second(
                    "SMS per operator",
                    "submit_sm successes per operator: how the budget is shared.",
                    "tocsin_sms_submitted_total",
                    "operator",
                ),
                per_second(
                    "Recipients enqueued",
                    "Recipients written to the channel work streams by targeting.",
                    "tocsin_targeting_recipients_enqueued_total",
                    "channel",
                ),
            ),
        ),
        Row(
            "Cost and activity",
            (
                Panel(
                    "Units charged",
                    "Communication units (SMS segments, voice messages) charged in the time range.",
                    (
                        Q(
                            f"sum by (billing) (increase(tocsin_units_charged_total{sel()}"
                            "[$__range]))",
                            "{{billing}}",
                        ),
                    ),
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Cost",
                    f"Units charged in the time range at EUR {UNIT_PRICE_EUR} each, excl. VAT.",
                    (
                        Q(
                            f"sum(increase(tocsin_units_charged_total{sel()}[$__range]))"
                            f" * {UNIT_PRICE_EUR}",
                            "EUR",
                        ),
                    ),
                    kind="stat",
                    unit="currencyEUR",
                    width=6,
                ),
                Panel(
                    "Alert actions",
                    "Alerts created, sent, updated and cancelled in the time range.",
                    (
                        Q(
                            f"sum by (action) (increase(tocsin_alerts_total{sel()}[$__range]))",
                            "{{action}}",
                        ),
                    ),
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Zone resolution p99",
                    "Time targeting takes to resolve a zone completely.",
                    (Q(quantile(0.99, "tocsin_targeting_resolve_seconds", "namespace"), "p99"),),
                    kind="stat",
                    unit="s",
                    width=6,
                    thresholds=((60.0, "orange"), (300.0, "red")),
                ),
            ),
        ),
    ),
)

OPERATOR = "~$operator"
THROTTLED = rate("tocsin_sms_throttled_total", "operator", operator=OPERATOR)
SUBMITTED = rate("tocsin_sms_submitted_total", "operator", operator=OPERATOR)
OPERATORS = dashboard(
    uid="tocsin-operators",
    title="Tocsin / Operator links",
    description="SMPP binds, throttling, failures and receipt latency per mobile operator.",
    variables=[OPERATOR_VARIABLE],
    rows=(
        Row(
            "Binds",
            (
                Panel(
                    "Binds up",
                    "Bound SMPP sessions per operator, over all sms pods.",
                    (
                        Q(
                            f"sum by (operator) (tocsin_smpp_bind_up{sel(operator=OPERATOR)})",
                            "{{operator}}",
                        ),
                    ),
                    kind="stat",
                    width=8,
                    thresholds=(),
                ),
                Panel(
                    "Bind state",
                    "Each bind of each sms pod: a red stretch is a bind down (TocsinSmppBindDown).",
                    (
                        Q(
                            "min by (pod, operator, bind) "
                            f"(tocsin_smpp_bind_up{sel(operator=OPERATOR)})",
                            "{{pod}} {{bind}}",
                        ),
                    ),
                    kind="state-timeline",
                    width=16,
                    mappings=UP_DOWN,
                ),
            ),
        ),
        Row(
            "Throughput",
            (
                Panel(
                    "Submitted and throttled",
                    "submit_sm successes and throttling answers (0x58, 0x14) per second.",
                    (
                        Q(
                            rate("tocsin_sms_submitted_total", "operator", operator=OPERATOR),
                            "{{operator}} submitted",
                        ),
                        Q(
                            rate("tocsin_sms_throttled_total", "operator", operator=OPERATOR),
                            "{{operator}} throttled",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Throttled share",
                    "Throttled over all submit_sm answers: above a few percent, lower the rate.",
                    (
                        Q(
                            f"{THROTTLED} / ({THROTTLED} + ({SUBMITTED} or {THROTTLED} * 0))",
                            "{{operator}}",
                        ),
                    ),
                    unit="percentunit",
                ),
                per_second(
                    "Segments per second",
                    "Segments submitted: communication units going out.",
                    "tocsin_sms_segments_total",
                    "operator",
                    operator=OPERATOR,
                ),
                per_second(
                    "Failures by reason",
                    "Final failures per operator and reason (permanent, temporary, expired).",
                    "tocsin_sms_failed_total",
                    "operator, reason",
                    operator=OPERATOR,
                ),
            ),
        ),
        Row(
            "Receipts",
            (
                Panel(
                    "Receipt latency p50 / p99",
                    "From submit_sm to the delivery receipt, per operator.",
                    (
                        Q(
                            quantile(
                                0.5,
                                "tocsin_sms_receipt_latency_seconds",
                                "operator",
                                operator=OPERATOR,
                            ),
                            "{{operator}} p50",
                        ),
                        Q(
                            quantile(
                                0.99,
                                "tocsin_sms_receipt_latency_seconds",
                                "operator",
                                operator=OPERATOR,
                            ),
                            "{{operator}} p99",
                        ),
                    ),
                    unit="s",
                ),
                per_second(
                    "Delivered per second",
                    "Delivery receipts with state DELIVERED.",
                    "tocsin_sms_delivered_total",
                    "operator",
                    operator=OPERATOR,
                ),
            ),
        ),
        Row(
            "Rate limiter",
            (
                Panel(
                    "Tokens granted against rate",
                    "Tokens granted per second per bucket, and each bucket's configured rate.",
                    (
                        Q(rate("tocsin_ratelimit_tokens_granted_total", "bucket"), "{{bucket}}"),
                        Q(
                            f"max by (bucket) (tocsin_ratelimit_rate_per_second{sel()})",
                            "{{bucket}} rate",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Refusals and wait p99",
                    "Lease requests refused, and the time callers waited for tokens.",
                    (
                        Q(
                            rate("tocsin_ratelimit_refusals_total", "bucket"),
                            "{{bucket}} refused/s",
                        ),
                        Q(
                            quantile(0.99, "tocsin_ratelimit_wait_seconds", "bucket"),
                            "{{bucket}} wait p99 (s)",
                        ),
                    ),
                ),
                Panel(
                    "Fallback",
                    "1 while a bucket runs on the local fallback because Redis does not answer.",
                    (Q(f"max by (bucket) (tocsin_ratelimit_fallback{sel()})", "{{bucket}}"),),
                    kind="state-timeline",
                    mappings=((0, "shared", "green"), (1, "fallback", "red")),
                ),
                per_second(
                    "Script calls to Redis",
                    "Token-bucket script calls by result.",
                    "tocsin_ratelimit_redis_calls_total",
                    "result",
                    stack=False,
                ),
            ),
        ),
        Row(
            "Voice trunks",
            (
                Panel(
                    "Channels held against limit",
                    "Concurrent calls per SIP trunk over every voice pod, and the channels it"
                    " sells: the held count never passes the limit (a Redis lease per call).",
                    (
                        Q(f"max by (trunk) (tocsin_voice_trunk_channels{sel()})", "{{trunk}}"),
                        Q(
                            f"max by (trunk) (tocsin_voice_trunk_channel_limit{sel()})",
                            "{{trunk}} limit",
                        ),
                    ),
                ),
                per_second(
                    "Calls by outcome",
                    "Call attempts per second by outcome; new calls per second are held by the"
                    " rate limiter's voice:trunk bucket (Rate limiter row).",
                    "tocsin_voice_calls_total",
                    "trunk, outcome",
                ),
            ),
        ),
    ),
)

SERVICE = "~$service"
SERVICES = dashboard(
    uid="tocsin-services",
    title="Tocsin / Service health",
    description="gRPC traffic, errors and latency per service and method; dependencies; streams.",
    variables=[SERVICE_VARIABLE],
    rows=(
        Row(
            "Health",
            (
                Panel(
                    "Serving",
                    "Lowest health of each service's pods: NOT_SERVING keeps a pod out of traffic.",
                    (Q(f"min by (service) (tocsin_serving{sel(service=SERVICE)})", "{{service}}"),),
                    kind="state-timeline",
                    mappings=((0, "not serving", "red"), (1, "serving", "green")),
                ),
                Panel(
                    "Dependencies up",
                    "Whether the last health probe of PostgreSQL and Redis reached them.",
                    (
                        Q(
                            "min by (service, dependency) "
                            f"(tocsin_dependency_up{sel(service=SERVICE)})",
                            "{{service}} {{dependency}}",
                        ),
                    ),
                    kind="state-timeline",
                    mappings=UP_DOWN,
                ),
            ),
        ),
        Row(
            "gRPC",
            (
                Panel(
                    "Requests per second",
                    "Finished calls per service and method.",
                    (
                        Q(
                            rate("tocsin_grpc_requests_total", "service, method", service=SERVICE),
                            "{{service}} {{method}}",
                        ),
                    ),
                    unit="reqps",
                    width=8,
                ),
                Panel(
                    "Errors per second",
                    "Calls that did not end OK, by status code.",
                    (
                        Q(
                            rate(
                                "tocsin_grpc_requests_total",
                                "service, method, code",
                                service=SERVICE,
                                code="!OK",
                            ),
                            "{{service}} {{method}} {{code}}",
                        ),
                    ),
                    unit="reqps",
                    width=8,
                ),
                Panel(
                    "Duration p99",
                    "99th percentile call latency per service and method.",
                    (
                        Q(
                            quantile(
                                0.99,
                                "tocsin_grpc_request_duration_seconds",
                                "service, method",
                                service=SERVICE,
                            ),
                            "{{service}} {{method}}",
                        ),
                    ),
                    unit="s",
                    width=8,
                ),
            ),
        ),
        Row(
            "Streams",
            (
                Panel(
                    "Stream length",
                    "XLEN of each work stream.",
                    (Q(f"max by (stream) (tocsin_stream_length{sel()})", "{{stream}}"),),
                    width=8,
                ),
                Panel(
                    "Lag",
                    "Entries not yet delivered to the consumer group: work waiting for a worker.",
                    (
                        Q(
                            f"max by (stream, group) (tocsin_stream_lag{sel()})",
                            "{{stream}} {{group}}",
                        ),
                    ),
                    width=8,
                ),
                Panel(
                    "Pending",
                    "Entries delivered but not acknowledged: work in flight or stuck.",
                    (
                        Q(
                            f"max by (stream, group) (tocsin_stream_pending{sel()})",
                            "{{stream}} {{group}}",
                        ),
                    ),
                    width=8,
                ),
            ),
        ),
    ),
)

#: File name -> dashboard.
DASHBOARDS = {
    "dispatch-overview.json": DISPATCH,
    "operator-links.json": OPERATORS,
    "service-health.json": SERVICES,
}


def main() -> int:
    """Write the dashboards, or with --check report those that differ from the generator."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stale = []
    for name, board in DASHBOARDS.items():
        path = args.directory / name
        text = json.dumps(board, indent=2) + "\n"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(
            f"out of date: {', '.join(stale)}; run `make charts-dashboards` and commit",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
