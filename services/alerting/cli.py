"""Operators' command line over the alerting gRPC API: `python -m services.alerting.cli --help`.

Credentials: TOCSIN_USER and TOCSIN_PASSWORD (or a prompt), or TOCSIN_TOKEN from `login`.
The one command that bypasses the API is `bootstrap-admin`: it writes the first admin straight
into PostgreSQL (DATABASE_URL), and refuses once an admin exists.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from tocsin.alerting.v1 import alerting_pb2 as pb
from tocsin.alerting.v1 import alerting_pb2_grpc, infoline_pb2_grpc

from services.alerting import admin, audit
from services.alerting.infoline import cli as infoline_cli
from services.kernel.errors import ServiceError
from services.kernel.settings import SettingsError
from services.kernel.tls import connect

console = Console()
CHANNELS = {
    "sms": pb.CHANNEL_SMS,
    "voice": pb.CHANNEL_VOICE,
    "email": pb.CHANNEL_EMAIL,
    "lb-sms": pb.CHANNEL_LB_SMS,
    "cell-broadcast": pb.CHANNEL_CELL_BROADCAST,
    "cap": pb.CHANNEL_CAP_FEED,
}
CHANNEL_NAMES = {v: k for k, v in CHANNELS.items()}
KINDS = {"test": pb.ALERT_KIND_TEST, "exercise": pb.ALERT_KIND_EXERCISE}
ROLES = {"issuer": pb.ROLE_ISSUER, "admin": pb.ROLE_ADMIN}
STATE_NAMES = {
    v.number: v.name.removeprefix("ALERT_STATE_").lower() for v in pb.AlertState.DESCRIPTOR.values
}


class Api:
    """Stubs of the alerting API on one channel, with the caller's token."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self.auth = alerting_pb2_grpc.AuthServiceStub(channel)
        self.alerts = alerting_pb2_grpc.AlertingServiceStub(channel)
        self.admin = alerting_pb2_grpc.AdminServiceStub(channel)
        self.infoline = infoline_pb2_grpc.InfoLineServiceStub(channel)
        self.md = (("authorization", f"Bearer {token}"),)


def _secret(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    return value if value else getpass.getpass(prompt)


def prepare(args: argparse.Namespace) -> None:
    """Read files and ask for secrets before the event loop starts (both block)."""
    args.territory_text = (
        Path(args.territory).read_text() if getattr(args, "territory", None) else ""
    )
    args.zone_text = Path(args.zone).read_text() if getattr(args, "zone", None) else ""
    needs_new = args.command == "bootstrap-admin" or (
        args.command == "user" and args.action == "create"
    )
    name = getattr(args, "username", None)
    args.new_password = (
        _secret("TOCSIN_NEW_PASSWORD", f"new password for {name}: ") if needs_new else ""
    )
    args.token = os.environ.get("TOCSIN_TOKEN", "")
    offline_only = args.command == "bootstrap-admin" or (
        args.command == "audit-verify" and args.offline
    )
    if args.token or offline_only:
        return
    args.user = args.user or os.environ.get("TOCSIN_USER") or input("user: ")
    args.password = _secret("TOCSIN_PASSWORD", f"password for {args.user}: ")


async def _token(channel: grpc.aio.Channel, args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    reply = await alerting_pb2_grpc.AuthServiceStub(channel).Login(
        pb.LoginRequest(username=args.user, password=args.password)
    )
    return reply.token


async def cmd_login(api: Api, args: argparse.Namespace) -> int:
    """Print a token for `export TOCSIN_TOKEN=...`."""
    print(api.md[0][1].removeprefix("Bearer "))
    return 0


async def cmd_entity(api: Api, args: argparse.Namespace) -> int:
    """Create, list or change the billing of entities."""
    if args.action == "create":
        entity = await api.admin.CreateEntity(
            pb.CreateEntityRequest(
                name=args.name,
                type=args.type,
                territory_kind=args.territory_kind or "",
                territory_geojson=args.territory_text,
                postpaid=args.postpaid,
            ),
            metadata=api.md,
        )
        console.print(f"entity {entity.id} created: {entity.name} (type {entity.type})")
        return 0
    if args.action == "billing":
        entity = await api.admin.SetBilling(
            pb.SetBillingRequest(entity_id=args.entity, postpaid=args.postpaid), metadata=api.md
        )
        console.print(f"entity {entity.id}: postpaid={entity.postpaid}")
        return 0
    listed = await api.admin.ListEntities(pb.ListEntitiesRequest(), metadata=api.md)
    table = Table("id", "name", "type", "territory", "postpaid", "prepaid units")
    for e in listed.entities:
        table.add_row(
            str(e.id),
            e.name,
            str(e.type),
            e.territory_kind or "-",
            str(e.postpaid),
            f"{e.prepaid_units:,}",
        )
    console.print(table)
    return 0


async def cmd_user(api: Api, args: argparse.Namespace) -> int:
    """Create, list or disable users."""
    if args.action == "create":
        user = await api.admin.CreateUser(
            pb.CreateUserRequest(
                username=args.username,
                password=args.new_password,
                entity_id=args.entity or 0,
                role=ROLES[args.role],
            ),
            metadata=api.md,
        )
        console.print(f"user {user.id} created: {user.username}")
        return 0
    if args.action == "disable":
        user = await api.admin.DisableUser(pb.DisableUserRequest(user_id=args.id), metadata=api.md)
        console.print(f"user {user.id} ({user.username}) disabled")
        return 0
    listed = await api.admin.ListUsers(
        pb.ListUsersRequest(entity_id=args.entity or 0), metadata=api.md
    )
    table = Table("id", "username", "entity", "role", "disabled")
    for u in listed.users:
        table.add_row(
            str(u.id), u.username, str(u.entity_id or "-"), pb.Role.Name(u.role), str(u.disabled)
        )
    console.print(table)
    return 0


async def cmd_group(api: Api, args: argparse.Namespace) -> int:
    """Create groups, add and remove members, list an entity's groups."""
    if args.action == "create":
        group = await api.admin.CreateGroup(
            pb.CreateGroupRequest(entity_id=args.entity, name=args.name, kind=args.kind),
            metadata=api.md,
        )
        console.print(f"group {group.id} created: {group.name}")
    elif args.action == "add-member":
        reply = await api.admin.AddGroupMember(
            pb.AddGroupMemberRequest(
                group_id=args.group,
                name=args.name,
                phone=args.phone or "",
                email=args.email or "",
                language=args.language,
                channels=[CHANNELS[c] for c in args.channel],
            ),
            metadata=api.md,
        )
        console.print(f"member {reply.member_id} added to group {args.group}")
    elif args.action == "remove-member":
        await api.admin.RemoveGroupMember(
            pb.RemoveGroupMemberRequest(group_id=args.group, member_id=args.member),
            metadata=api.md,
        )
        console.print(f"member {args.member} removed from group {args.group}, and erased")
    else:
        listed = await api.admin.ListGroups(
            pb.ListGroupsRequest(entity_id=args.entity), metadata=api.md
        )
        table = Table("id", "name", "kind", "members")
        for g in listed.groups:
            table.add_row(str(g.id), g.name, g.kind, str(g.members))
        console.print(table)
    return 0


async def cmd_package(api: Api, args: argparse.Namespace) -> int:
    """Sell a prepaid package to an entity."""
    entity = await api.admin.AddPrepaidPackage(
        pb.AddPrepaidPackageRequest(entity_id=args.entity, units=args.units), metadata=api.md
    )
    console.print(f"entity {entity.id}: {entity.prepaid_units:,} prepaid units")
    return 0


def _eur(cents: int) -> str:
    return f"EUR {cents // 100:,}.{cents % 100:02d}"


async def cmd_usage(api: Api, args: argparse.Namespace) -> int:
    """Print an entity's monthly usage report."""
    month = args.month or datetime.now(UTC).strftime("%Y-%m")
    report = await api.admin.GetUsageReport(
        pb.GetUsageReportRequest(entity_id=args.entity, month=month), metadata=api.md
    )
    table = Table(
        "item", "quantity", "amount (excl. VAT)", title=f"entity {report.entity_id}, {month}"
    )
    for line in report.lines:
        table.add_row(line.item, f"{line.quantity:,}", _eur(line.amount_cents))
    table.add_row("total", "", _eur(report.total_cents))
    console.print(table)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.alerts_by_kind.items())) or "none"
    console.print(f"alerts sent: {report.alerts_sent} ({kinds})")
    console.print(
        f"units: {report.units_prepaid:,} prepaid, {report.units_postpaid:,} postpaid;"
        f" {report.prepaid_units_left:,} prepaid units left"
    )
    return 0


async def watch(api: Api, alert_id: str) -> int:
    """Follow an alert with one progress bar per channel until it ends."""
    columns = (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
    )
    with Progress(*columns, console=console) as bars:
        tasks: dict[int, Any] = {}
        last = None
        async for update in api.alerts.WatchAlert(
            pb.WatchAlertRequest(alert_id=alert_id), metadata=api.md
        ):
            last = update
            for c in update.channels:
                if c.channel not in tasks:
                    tasks[c.channel] = bars.add_task(
                        CHANNEL_NAMES[c.channel], total=None, counts=""
                    )
                counts = (
                    f"targeted {c.targeted:,} queued {c.queued:,} submitted {c.submitted:,}"
                    f" delivered {c.delivered:,} failed {c.failed:,} units {c.units:,}"
                )
                done = c.delivered + c.failed + c.dropped
                bars.update(
                    tasks[c.channel], total=c.targeted or None, completed=done, counts=counts
                )
    if last is not None:
        console.print(f"alert {alert_id}: {STATE_NAMES[last.state]}, {last.units:,} units charged")
    return 0


async def cmd_watch(api: Api, args: argparse.Namespace) -> int:
    """Watch an alert."""
    return await watch(api, args.alert)


async def cmd_test_alert(api: Api, args: argparse.Namespace) -> int:
    """Create, preview, send and watch a test (or exercise) alert."""
    expires = Timestamp()
    expires.FromDatetime(datetime.now(UTC) + timedelta(minutes=args.expires_minutes))
    spec = pb.AlertSpec(
        kind=KINDS[args.kind],
        category="Other",
        urgency="Unknown",
        severity="Minor",
        certainty="Observed",
        infos=[
            pb.Info(language=lang, event="Test", headline=args.headline) for lang in args.language
        ],
        zone_geojson=args.zone_text,
        area_description=args.area or "",
        group_ids=args.group or [],
        channels=[CHANNELS[c] for c in args.channel],
        expires=expires,
    )
    alert = await api.alerts.CreateAlert(
        pb.CreateAlertRequest(idempotency_key=args.key or f"cli-{uuid.uuid4()}", spec=spec),
        metadata=api.md,
    )
    preview = await api.alerts.PreviewAlert(
        pb.PreviewAlertRequest(alert_id=alert.id), metadata=api.md
    )
    table = Table("channel", "language", "recipients", "units", title=f"alert {alert.id}")
    for a in preview.audiences:
        table.add_row(CHANNEL_NAMES[a.channel], a.language, f"{a.recipients:,}", f"{a.units:,}")
    console.print(table)
    console.print(
        f"estimated {preview.estimated_units:,} units, {_eur(preview.estimated_cost_cents)}"
    )
    if preview.would_be_refused:
        console.print(f"[red]would be refused:[/red] {preview.refusal}")
        return 1
    await api.alerts.SendAlert(pb.SendAlertRequest(alert_id=alert.id), metadata=api.md)
    return 0 if args.no_watch else await watch(api, alert.id)


async def cmd_audit_verify(api: Api, args: argparse.Namespace) -> int:
    """Walk the audit chain through the API."""
    verdict = await api.admin.VerifyAudit(pb.VerifyAuditRequest(), metadata=api.md)
    return _verdict(verdict.ok, verdict.entries, verdict.first_broken_seq, verdict.reason)


def _verdict(ok: bool, entries: int, broken: int, reason: str) -> int:
    if ok:
        console.print(f"audit chain intact: {entries:,} entries")
        return 0
    console.print(
        f"[red]audit chain broken at entry {broken}[/red]: {reason} ({entries:,} entries before it)"
    )
    return 1


def _database_url(args: argparse.Namespace) -> str:
    url = (
        args.database_url or os.environ.get("DATABASE_URL") or os.environ.get("TOCSIN_DATABASE_URL")
    )
    if not url:
        raise SystemExit("set DATABASE_URL or pass --database-url")
    return url


async def offline(args: argparse.Namespace) -> int:
    """The commands that talk to PostgreSQL directly: bootstrap-admin, audit-verify --offline."""
    pool = await asyncpg.create_pool(_database_url(args), min_size=1, max_size=2)
    # The audit chain's key, as the service has it (docs/security.md); empty: unkeyed chain.
    key = os.environ.get("TOCSIN_AUDIT_KEY", "").encode()
    try:
        if args.command == "bootstrap-admin":
            user = await admin.bootstrap_admin(
                pool, username=args.username, password=args.new_password
            )
            await audit.append(
                pool,
                user_id=user.id,
                username=user.username,
                entity_id=None,
                action="BootstrapAdmin",
                target=f"user:{user.id}",
                peer="cli",
                result="OK",
                key=key,
            )
            console.print(f"admin {user.username} created (user {user.id})")
            return 0
        verdict = await audit.verify(pool, key=key)
        return _verdict(verdict.ok, verdict.entries, verdict.first_broken_seq, verdict.reason)
    finally:
        await pool.close()


COMMANDS: dict[str, Callable[[Api, argparse.Namespace], Awaitable[int]]] = {
    "login": cmd_login,
    "entity": cmd_entity,
    "user": cmd_user,
    "group": cmd_group,
    "package": cmd_package,
    "usage": cmd_usage,
    "watch": cmd_watch,
    "test-alert": cmd_test_alert,
    "audit-verify": cmd_audit_verify,
    "infoline": infoline_cli.cmd_infoline,
}


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m services.alerting.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--target", default=os.environ.get("TOCSIN_ALERTING_ADDR", "127.0.0.1:50051"))
    p.add_argument("--user", help="username (default: TOCSIN_USER)")
    sub = p.add_subparsers(dest="command", required=True)
    boot = sub.add_parser("bootstrap-admin", help="create the first admin directly in PostgreSQL")
    boot.add_argument("--username", required=True)
    boot.add_argument("--database-url")
    sub.add_parser("login", help="print a token for TOCSIN_TOKEN")

    ent = sub.add_parser("entity", help="entities: create, list, billing")
    ent.add_argument("action", choices=["create", "list", "billing"])
    ent.add_argument("--name")
    ent.add_argument("--type", type=int, choices=[1, 2], default=1)
    ent.add_argument("--territory-kind", choices=["municipality", "province", "country"])
    ent.add_argument("--territory", help="GeoJSON file of the territory")
    ent.add_argument("--entity", type=int)
    ent.add_argument("--postpaid", action=argparse.BooleanOptionalAction, default=False)

    usr = sub.add_parser(
        "user", help="users: create, list, disable (password: TOCSIN_NEW_PASSWORD)"
    )
    usr.add_argument("action", choices=["create", "list", "disable"])
    usr.add_argument("--username")
    usr.add_argument("--entity", type=int)
    usr.add_argument("--role", choices=list(ROLES), default="issuer")
    usr.add_argument("--id", type=int)

    grp = sub.add_parser("group", help="groups: create, add-member, remove-member, list")
    grp.add_argument("action", choices=["create", "add-member", "remove-member", "list"])
    grp.add_argument("--entity", type=int)
    grp.add_argument("--group", type=int)
    grp.add_argument("--member", type=int, help="member id (remove-member)")
    grp.add_argument("--name")
    grp.add_argument("--kind", default="contact_list")
    grp.add_argument("--phone")
    grp.add_argument("--email")
    grp.add_argument("--language", default="nl")
    grp.add_argument("--channel", action="append", choices=["sms", "voice", "email"], default=[])

    pkg = sub.add_parser("package", help="sell a prepaid package")
    pkg.add_argument("--entity", type=int, required=True)
    pkg.add_argument("--units", type=int, choices=[100_000, 50_000], required=True)

    use = sub.add_parser("usage", help="an entity's monthly usage report")
    use.add_argument("--entity", type=int, required=True)
    use.add_argument("--month", help="YYYY-MM (default: this month)")

    wat = sub.add_parser("watch", help="follow an alert's progress")
    wat.add_argument("alert")

    tst = sub.add_parser("test-alert", help="send a test alert and watch it")
    tst.add_argument("--kind", choices=list(KINDS), default="test")
    tst.add_argument("--zone", help="GeoJSON file of the zone")
    tst.add_argument("--area", help="area description")
    tst.add_argument("--group", type=int, action="append")
    tst.add_argument("--channel", action="append", choices=list(CHANNELS), default=[])
    tst.add_argument("--language", action="append", choices=["nl", "fr", "de", "en"], default=[])
    tst.add_argument("--headline", default="Test of the public warning system: no action needed")
    tst.add_argument("--expires-minutes", type=int, default=60)
    tst.add_argument("--key", help="idempotency key (default: a fresh one)")
    tst.add_argument("--no-watch", action="store_true")

    aud = sub.add_parser("audit-verify", help="walk the audit chain; exit 1 if broken")
    aud.add_argument("--offline", action="store_true", help="read PostgreSQL directly")
    aud.add_argument("--database-url")
    infoline_cli.add_parser(sub)
    return p


async def run(args: argparse.Namespace) -> int:
    """Run one command."""
    if args.command == "bootstrap-admin" or (args.command == "audit-verify" and args.offline):
        return await offline(args)
    if args.command == "test-alert":
        args.channel = args.channel or ["sms"]
        args.language = args.language or ["nl", "fr", "de", "en"]
    # TLS as TOCSIN_TLS_CA_FILE / TOCSIN_TLS_DIR say; plaintext only with TOCSIN_INSECURE_DEV.
    async with connect(args.target) as channel:
        api = Api(channel, await _token(channel, args))
        return await COMMANDS[args.command](api, args)


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit status 0 on success, 1 on a refusal or broken chain."""
    args = parser().parse_args(argv)
    try:
        prepare(args)
    except OSError as exc:
        console.print(f"[red]cannot read[/red] {exc.filename}: {exc.strerror}")
        return 2
    try:
        return asyncio.run(run(args))
    except grpc.aio.AioRpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return 1
    except ServiceError as exc:
        console.print(f"[red]{exc.code.name}[/red]: {exc.details}")
        return 1
    except SettingsError as exc:
        console.print(f"[red]invalid setting[/red]: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
