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
#: The chart's default SLOs (values.yaml alerts.slo), for the burn panels.
FIRST_MESSAGE_BUCKET = "60.0"
FIRST_MESSAGE_OBJECTIVE = 0.99
REACH_OBJECTIVE = 0.95
#: The e-mail service's work stream (services/kernel/keys.py EMAIL_STREAM).
EMAIL_STREAM = "tocsin:stream:email"


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
CHANNEL_FINAL = rate("tocsin_alert_messages_total", "channel", state="~delivered|failed")
CHANNEL_DELIVERED = rate("tocsin_alert_messages_total", "channel", state="delivered")


def sms_in_range(state: str) -> str:
    """SMS of the alerting service's counts reaching `state` in the dashboard's time range."""
    selector = sel(channel="sms", state=state)
    return f"(sum(increase(tocsin_alert_messages_total{selector}[$__range])) or vector(0))"


#: Recipients waiting per channel: a global gauge every alerting replica sets alike (max).
BACKLOG = f"max by (channel) (tocsin_channel_backlog_recipients{sel()})"
#: Recipients leaving the backlog per second (handed to an operator, or failed).
DRAIN = rate("tocsin_alert_messages_total", "channel", state="~submitted|failed")
#: redis_exporter: each group behind its stream, with the time its last taken entry was written.
BEHIND = (
    f"max by (stream, group) (redis_stream_group_last_delivered_id{sel()})"
    f" < on (stream) group_left max by (stream) (redis_stream_last_generated_id{sel()})"
)


def burn(bad: str, total: str, window: str, objective: float) -> str:
    """Error-budget burn rate over `window`: the share of bad events over the budget's share."""
    budget = round(1 - objective, 6)
    return f"({bad.replace('WINDOW', window)}) / ({total.replace('WINDOW', window)}) / {budget}"


FIRST_ALL = f"sum by (channel) (increase(tocsin_alert_first_message_seconds_count{sel()}[WINDOW]))"
FIRST_BAD = (
    f"{FIRST_ALL} - sum by (channel) (increase(tocsin_alert_first_message_seconds_bucket"
    f"{sel(le=FIRST_MESSAGE_BUCKET)}[WINDOW]))"
)
REACH_ALL = f"sum by (channel) (increase(tocsin_alert_recipients_final_total{sel()}[WINDOW]))"
REACH_BAD = (
    "sum by (channel) (increase(tocsin_alert_recipients_final_total"
    f"{sel(reached='~late|no')}[WINDOW]))"
)

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
                    "Alerts sent and not yet complete, expired or cancelled, by kind. Every"
                    " alerting replica counts them all alike: max, not sum.",
                    (Q(f"max by (kind) (tocsin_alerts_live{sel()})", "{{kind}}"),),
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "SMS delivered of submitted",
                    "SMS with a DELIVERED receipt over all SMS handed to operators in the time"
                    " range: those still awaiting a receipt count as not (yet) delivered.",
                    (Q(f"{sms_in_range('delivered')} / {sms_in_range('submitted')}", "delivered"),),
                    kind="gauge",
                    unit="percentunit",
                    width=6,
                    thresholds=((0.9, "orange"), (0.97, "green")),
                    base="red",
                ),
                Panel(
                    "SMS segments per second against the limit",
                    "Segments submitted (what operators and the rate limiter count: one token"
                    " per submit_sm), against the global bucket's rate.",
                    (
                        Q(f"sum(rate(tocsin_sms_segments_total{sel()}[{RATE}]))", "segments"),
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
            "Backlog",
            (
                Panel(
                    "Recipients waiting",
                    "Recipients of live alerts not yet handed to an operator, per channel (from"
                    " the alerts' rows: it stays up when consumers are dead).",
                    (Q(BACKLOG, "{{channel}}"),),
                    width=8,
                ),
                Panel(
                    "Time to drain",
                    "Recipients waiting over the rate they leave at: when the last one goes out"
                    " if nothing changes (TocsinBacklogDrainSlow above 1 h).",
                    (Q(f"{BACKLOG} / {DRAIN}", "{{channel}}"),),
                    unit="s",
                    width=8,
                ),
                Panel(
                    "Oldest waiting entry",
                    "Age of the entry each consumer group last took, for groups with newer"
                    " entries waiting (redis_exporter, independent of the consumers).",
                    (Q(f"time() - ({BEHIND}) / 1000", "{{stream}} {{group}}"),),
                    unit="s",
                    width=8,
                ),
            ),
        ),
        Row(
            "Alerts",
            (
                Panel(
                    "Time to first message p50 / p99",
                    "From SendAlert to the alert's first message handed to an operator, per"
                    " channel. Per alert: `python -m services.alerting.cli watch <alert>`"
                    " (metrics never carry an alert id).",
                    (
                        Q(
                            quantile(0.5, "tocsin_alert_first_message_seconds", "channel"),
                            "{{channel}} p50",
                        ),
                        Q(
                            quantile(0.99, "tocsin_alert_first_message_seconds", "channel"),
                            "{{channel}} p99",
                        ),
                    ),
                    unit="s",
                    width=8,
                ),
                Panel(
                    "Live alerts' progress",
                    "Messages per second per channel handed to operators and delivered: the"
                    " live alerts' progress together.",
                    (
                        Q(
                            rate("tocsin_alert_messages_total", "channel", state="submitted"),
                            "{{channel}} submitted",
                        ),
                        Q(CHANNEL_DELIVERED, "{{channel}} delivered"),
                    ),
                    unit="ops",
                    width=8,
                ),
                Panel(
                    "SLO burn rate",
                    f"Error-budget burn over 1 h and 6 h: first message within"
                    f" {FIRST_MESSAGE_BUCKET} s ({FIRST_MESSAGE_OBJECTIVE:.0%} of alerts),"
                    f" recipients reached in time ({REACH_OBJECTIVE:.0%}). 1 spends the budget"
                    " exactly; the pages fire at 14.4 (1 h) and 6 (6 h).",
                    (
                        Q(
                            burn(FIRST_BAD, FIRST_ALL, "1h", FIRST_MESSAGE_OBJECTIVE),
                            "{{channel}} first message 1h",
                        ),
                        Q(
                            burn(FIRST_BAD, FIRST_ALL, "6h", FIRST_MESSAGE_OBJECTIVE),
                            "{{channel}} first message 6h",
                        ),
                        Q(
                            burn(REACH_BAD, REACH_ALL, "1h", REACH_OBJECTIVE),
                            "{{channel}} reach 1h",
                        ),
                        Q(
                            burn(REACH_BAD, REACH_ALL, "6h", REACH_OBJECTIVE),
                            "{{channel}} reach 6h",
                        ),
                    ),
                    width=8,
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
                    "Time targeting takes to resolve a zone completely. The histogram's top"
                    " bucket is 60 s: a p99 at 60 means 60 s or more.",
                    (Q(quantile(0.99, "tocsin_targeting_resolve_seconds", "namespace"), "p99"),),
                    kind="stat",
                    unit="s",
                    width=6,
                    thresholds=((10.0, "orange"), (30.0, "red")),
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
                    "Bound SMPP sessions per operator, over all sms pods: red at none"
                    " (TocsinOperatorBindsDown).",
                    (
                        Q(
                            f"sum by (operator) (tocsin_smpp_bind_up{sel(operator=OPERATOR)})",
                            "{{operator}}",
                        ),
                    ),
                    kind="stat",
                    width=8,
                    thresholds=((1.0, "green"),),
                    base="red",
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
                Panel(
                    "SMPP sessions held",
                    "Sessions each operator has open with us over all sms pods, against its"
                    " max_sessions (a lease per session in Redis, docs/sms.md 'Session limit');"
                    " only operators with a limit. Held at the limit, a pod that starts binds"
                    " nothing for that operator until another lets a session go.",
                    (
                        Q(
                            "sum by (operator) "
                            f"(tocsin_smpp_sessions_held{sel(operator=OPERATOR)})",
                            "{{operator}} held",
                        ),
                        Q(
                            "max by (operator) "
                            f"(tocsin_smpp_session_limit{sel(operator=OPERATOR)})",
                            "{{operator}} limit",
                        ),
                    ),
                    width=24,
                    stack=False,
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
                Panel(
                    "Segments per second against the operator's bucket",
                    "Segments submitted per operator (what the operator counts), against the"
                    " rate of its bucket sms:op:<operator>: the lines should touch during a"
                    " large alert.",
                    (
                        Q(
                            rate("tocsin_sms_segments_total", "operator", operator=OPERATOR),
                            "{{operator}} segments",
                        ),
                        Q(
                            "label_replace(max by (bucket) (tocsin_ratelimit_rate_per_second"
                            f'{sel(bucket="~sms:op:.*")}), "operator", "$1", "bucket",'
                            ' "sms:op:(.*)")',
                            "{{operator}} bucket rate",
                        ),
                    ),
                    unit="ops",
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
                    "Forfeited tokens",
                    "Send slots of a lease nobody took in time (CPU-starved sender, full"
                    " window): the link under-sends rather than burst. Steady: give sms CPU.",
                    "tocsin_ratelimit_tokens_forfeited_total",
                    "bucket",
                    stack=False,
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
            "Capacity",
            (
                Panel(
                    "Replicas",
                    "Available against desired replicas per Deployment (kube-state-metrics).",
                    (
                        Q(
                            "sum by (deployment) (kube_deployment_status_replicas_available"
                            '{namespace="$namespace", deployment=~"$release-.*"})',
                            "{{deployment}} available",
                        ),
                        Q(
                            "sum by (deployment) (kube_deployment_spec_replicas"
                            '{namespace="$namespace", deployment=~"$release-.*"})',
                            "{{deployment}} desired",
                        ),
                    ),
                ),
                Panel(
                    "CPU throttling",
                    "Share of CFS periods each pod was throttled (cAdvisor): a throttled sms"
                    " pod forfeits send slots, a throttled consumer lags.",
                    (
                        Q(
                            "sum by (pod) (rate(container_cpu_cfs_throttled_periods_total"
                            f'{{namespace="$namespace", pod=~"$release-.*"}}[{RATE}]))'
                            " / sum by (pod) (rate(container_cpu_cfs_periods_total"
                            f'{{namespace="$namespace", pod=~"$release-.*"}}[{RATE}]))',
                            "{{pod}}",
                        ),
                    ),
                    unit="percentunit",
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

# --- infoline (docs/infoline.md): the emergency information line's board ---
INFOLINE = dashboard(
    uid="tocsin-infoline",
    title="Tocsin / Information line",
    description="The emergency information line: the one-hour promise, calls, operators.",
    rows=(
        Row(
            "Promise",
            (
                Panel(
                    "Lines not open in time",
                    "Lines not open one hour after their request (or their desired opening):"
                    " TocsinInfoLineNotOpen pages while this is above 0.",
                    (Q(f"max(tocsin_infoline_overdue_lines{sel()})", "overdue"),),
                    kind="stat",
                    width=6,
                    thresholds=((1, "red"),),
                ),
                Panel(
                    "Lines by state",
                    "Requested, acknowledged, open, reduced and closing lines.",
                    (Q(f"max by (state) (tocsin_infoline_lines{sel()})", "{{state}}"),),
                    width=9,
                ),
                Panel(
                    "Opened late",
                    "Lines that opened after their promised time, in the range shown.",
                    (
                        Q(
                            f"sum(increase(tocsin_infoline_opened_late_total{sel()}[$__range]))"
                            " or vector(0)",
                            "late",
                        ),
                    ),
                    kind="stat",
                    width=9,
                ),
            ),
        ),
        Row(
            "Calls and staffing",
            (
                Panel(
                    "Calls per hour",
                    "Calls the provider reported per language line and outcome, per hour.",
                    (
                        Q(
                            "sum by (language, outcome)"
                            f" (increase(tocsin_infoline_calls_total{sel()}[1h]))",
                            "{{language}} {{outcome}}",
                        ),
                    ),
                ),
                Panel(
                    "Operators: actual and recommended",
                    "Operators of the latest hour per language line next to what Erlang C"
                    " recommends for 80 % of calls answered within 20 s.",
                    (
                        Q(
                            f"max by (language, staffing) (tocsin_infoline_operators{sel()})",
                            "{{language}} {{staffing}}",
                        ),
                    ),
                ),
            ),
        ),
    ),
)
# --- end infoline ---

# --- channels: e-mail, cell broadcast and LB-SMS, the CAP feed (voice: Operator links) ---
EMAIL = sel(channel="email")
EMAIL_BEHIND = (
    f"max by (stream, group) (redis_stream_group_last_delivered_id{sel(stream=EMAIL_STREAM)})"
    " < on (stream) group_left max by (stream)"
    f" (redis_stream_last_generated_id{sel(stream=EMAIL_STREAM)})"
)
CBC_OUTCOMES = "tocsin_cellbroadcast_outcomes_total"
CHANNELS = dashboard(
    uid="tocsin-channels",
    title="Tocsin / E-mail, cell broadcast, CAP feed",
    description="The channels besides SMS and voice: the SMTP relay, the operators' CBCs and"
    " LB-SMS platforms, the public CAP feed.",
    rows=(
        Row(
            "E-mail",
            (
                Panel(
                    "Recipients per second by the relay's answer",
                    "Each RCPT of a transaction by the relay's answer: accepted (sent),"
                    " temporary (tried again until the alert expires), permanent, unknown.",
                    (
                        Q(
                            rate("tocsin_email_recipients_total", "relay, disposition"),
                            "{{relay}} {{disposition}}",
                        ),
                    ),
                    unit="ops",
                    stack=True,
                    width=8,
                ),
                Panel(
                    "Transactions per second and their size",
                    "SMTP transactions (one message, up to TOCSIN_SMTP_BATCH recipients) per"
                    " second, and the mean recipients per transaction: one recipient each means"
                    " the batching does nothing.",
                    (
                        Q(
                            "sum by (relay) (rate(tocsin_email_transaction_recipients_count"
                            f"{sel()}[{RATE}]))",
                            "{{relay}} transactions/s",
                        ),
                        Q(
                            "sum by (relay) (rate(tocsin_email_transaction_recipients_sum"
                            f"{sel()}[{RATE}])) / sum by (relay)"
                            f" (rate(tocsin_email_transaction_recipients_count{sel()}[{RATE}]))",
                            "{{relay}} recipients per transaction",
                        ),
                    ),
                    width=8,
                ),
                Panel(
                    "Bounces and recipients given up",
                    "DSN reports that came back, by action (failed, delayed, ...), and"
                    " recipients ended without the relay (invalid address, alert expired,"
                    " temporary answers until it expired).",
                    (
                        Q(
                            rate("tocsin_email_bounces_total", "relay, action"),
                            "{{relay}} bounce {{action}}",
                        ),
                        Q(
                            rate("tocsin_email_gave_up_total", "relay, reason"),
                            "{{relay}} gave up {{reason}}",
                        ),
                    ),
                    unit="ops",
                    width=8,
                ),
                Panel(
                    "E-mail recipients waiting and in flight",
                    "Recipients of live alerts not yet handed to the relay (alerting service,"
                    " every replica alike: max) and those read by an e-mail pod without a"
                    " durable outcome yet (per pod: summed).",
                    (
                        Q(f"max(tocsin_channel_backlog_recipients{EMAIL})", "waiting"),
                        Q(f"sum(tocsin_channel_in_flight{EMAIL})", "in flight"),
                    ),
                    width=6,
                ),
                Panel(
                    "Oldest e-mail entry waiting",
                    "Age of the entry the e-mail group last took while newer ones wait"
                    " (redis_exporter; empty while the group is caught up)."
                    " TocsinStreamOldestEntryOld pages above 50 minutes.",
                    (Q(f"time() - ({EMAIL_BEHIND}) / 1000", "{{group}}"),),
                    unit="s",
                    width=6,
                ),
                Panel(
                    "Time to first e-mail p50 / p99",
                    "From SendAlert to the alert's first e-mail accepted by the relay.",
                    (
                        Q(
                            quantile(
                                0.5,
                                "tocsin_alert_first_message_seconds",
                                "channel",
                                channel="email",
                            ),
                            "p50",
                        ),
                        Q(
                            quantile(
                                0.99,
                                "tocsin_alert_first_message_seconds",
                                "channel",
                                channel="email",
                            ),
                            "p99",
                        ),
                    ),
                    unit="s",
                    width=6,
                ),
                Panel(
                    "Relay connections busy",
                    "Connections of the e-mail pods to the relay running a transaction, against"
                    " the pools' size (TOCSIN_SMTP_CONNECTIONS per pod): at the limit, the relay's"
                    " answers set the pace; more pods add connections, if the relay takes them.",
                    (
                        Q(
                            f"sum by (relay, state) (tocsin_email_relay_connections{sel()})",
                            "{{relay}} {{state}}",
                        ),
                    ),
                    width=6,
                ),
            ),
        ),
        Row(
            "Cell broadcast and LB-SMS",
            (
                Panel(
                    "Requests per operator",
                    "Broadcast (a new or updated alert version) and withdraw requests sent to"
                    " each operator's CBC or LB-SMS platform, retries included.",
                    (
                        Q(
                            f"sum by (operator, channel, action) (increase("
                            f"tocsin_cellbroadcast_attempts_total{sel()}[$__range]))",
                            "{{operator}} {{channel}} {{action}}",
                        ),
                    ),
                    kind="stat",
                    width=8,
                ),
                Panel(
                    "Outcomes per operator",
                    "Accepted, refused (the operator's answer, final) and retrying (no answer:"
                    " sent again with backoff until the alert expires) in the time range.",
                    (
                        Q(
                            f"sum by (operator, channel, state) (increase({CBC_OUTCOMES}"
                            f"{sel()}[$__range]))",
                            "{{operator}} {{channel}} {{state}}",
                        ),
                    ),
                    kind="stat",
                    width=8,
                ),
                Panel(
                    "Operators retrying",
                    "Retries per second per operator and channel: a line that does not fall"
                    " back to zero is an operator whose platform does not answer; its"
                    " subscribers get no cell broadcast or LB-SMS until it does.",
                    (
                        Q(
                            rate(CBC_OUTCOMES, "operator, channel", state="retrying"),
                            "{{operator}} {{channel}}",
                        ),
                    ),
                    unit="ops",
                    width=8,
                ),
                Panel(
                    "Accepted per second per operator",
                    "Broadcast and withdraw requests each operator's platform accepted per"
                    " second. (The time from SendAlert to each operator's acceptance is not"
                    " exported yet; `make bench-cellbroadcast` measures it.)",
                    (
                        Q(
                            rate(CBC_OUTCOMES, "operator, channel", state="accepted"),
                            "{{operator}} {{channel}}",
                        ),
                    ),
                    unit="ops",
                    width=12,
                ),
                Panel(
                    "Refused share per operator",
                    "Refused over accepted + refused answers per operator and channel in the"
                    " time range: the operator turns our requests down (cells, message"
                    " identifier, the CAP content).",
                    (
                        Q(
                            f"(sum by (operator, channel) (increase({CBC_OUTCOMES}"
                            f"{sel(state='refused')}[$__range])) or sum by (operator, channel)"
                            f" (increase({CBC_OUTCOMES}{sel(state='accepted')}[$__range])) * 0)"
                            f" / sum by (operator, channel) (increase({CBC_OUTCOMES}"
                            f"{sel(state='~accepted|refused')}[$__range]))",
                            "{{operator}} {{channel}}",
                        ),
                    ),
                    unit="percentunit",
                    width=12,
                ),
            ),
        ),
        Row(
            "CAP feed",
            (
                Panel(
                    "Feed requests per second",
                    "Requests answered by the feed's pods, by resource (the Atom feed, a CAP"
                    " document) and HTTP status: 304 is a partner polling with its ETag.",
                    (
                        Q(
                            rate("tocsin_capfeed_requests_total", "resource, status"),
                            "{{resource}} {{status}}",
                        ),
                    ),
                    unit="reqps",
                    stack=True,
                    width=8,
                ),
                Panel(
                    "Alerts in the feed",
                    "Alerts in force in the feed (every feed pod renders the same: max).",
                    (Q(f"max(tocsin_capfeed_entries{sel()})", "entries"),),
                    kind="stat",
                    width=4,
                ),
                Panel(
                    "Feed size",
                    "Size of the Atom feed; aggregators want it well under 100 KB.",
                    (Q(f"max(tocsin_capfeed_feed_bytes{sel()})", "bytes"),),
                    kind="stat",
                    unit="bytes",
                    width=4,
                    thresholds=((100_000.0, "orange"),),
                ),
                Panel(
                    "Snapshots rendered",
                    "Renders per second over the feed's pods: one per alert change and pod,"
                    " never per request.",
                    (Q(f"sum(rate(tocsin_capfeed_renders_total{sel()}[{RATE}]))", "renders"),),
                    unit="ops",
                    width=8,
                ),
            ),
        ),
    ),
)
# --- end channels ---

#: File name -> dashboard.
DASHBOARDS = {
    "dispatch-overview.json": DISPATCH,
    "operator-links.json": OPERATORS,
    "service-health.json": SERVICES,
    "infoline.json": INFOLINE,
    "channels.json": CHANNELS,
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
