"""gRPC servicers of the alerting service: protobuf in, domain call via the gate, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import redis.asyncio as aioredis
from tocsin.alerting.v1 import alerting_pb2 as pb
from tocsin.alerting.v1 import alerting_pb2_grpc

from services.alerting import admin, audit, auth, convert, ledger, presence, progress, validation
from services.alerting.alerts import Alerts
from services.alerting.dispatch import now_utc
from services.alerting.gate import Gate
from services.alerting.model import Alert
from services.alerting.ports import Broadcasts, Deliveries, OperatorStatus
from services.kernel.errors import InvalidArgument, PermissionDenied

Ctx = grpc.aio.ServicerContext[Any, Any]


class AuthServicer(alerting_pb2_grpc.AuthServiceServicer):
    """Login and password change."""

    def __init__(
        self, *, pool: asyncpg.Pool, gate: Gate, guard: auth.LoginGuard, token_ttl_s: int
    ) -> None:
        self._pool = pool
        self._gate = gate
        self._guard = guard
        self._ttl = token_ttl_s

    async def Login(self, request: pb.LoginRequest, context: Ctx) -> pb.LoginResponse:
        async with self._gate.call(
            context, "Login", target=request.username, authenticate=False
        ) as call:
            who = await auth.login(
                self._pool,
                guard=self._guard,
                username=request.username,
                password=request.password,
                address=auth.client_address(context.peer() or ""),
            )
            call.caller = who
            token, expires = auth.issue_token(
                principal=who,
                keys=self._gate.keys,
                issuer=self._gate.token_issuer,
                ttl_s=self._ttl,
            )
            user = admin.User(who.user_id, who.username, who.entity_id, who.role, False)
            return pb.LoginResponse(
                token=token, expires_at=convert.timestamp(expires), user=convert.user_pb(user)
            )

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: Ctx
    ) -> pb.ChangePasswordResponse:
        async with self._gate.call(context, "ChangePassword") as call:
            await auth.change_password(
                self._pool,
                guard=self._guard,
                principal=call.principal,
                current=request.current_password,
                new=request.new_password,
                address=auth.client_address(context.peer() or ""),
            )
            self._gate.forget_user(call.principal.user_id)
            return pb.ChangePasswordResponse()


def operator_progress_pb(status: OperatorStatus) -> pb.OperatorProgress:
    """One operator's state on a presence channel, for WatchAlert."""
    return pb.OperatorProgress(
        operator=status.operator,
        channel=convert.CHANNELS_PB[status.channel],
        state=status.state,
        accepted=status.state == "accepted",
        cells=status.cells,
        phones=status.phones,
        reason=status.reason,
        version=status.version,
    )


class AlertingServicer(alerting_pb2_grpc.AlertingServiceServicer):
    """The alert lifecycle."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        gate: Gate,
        alerts: Alerts,
        deliveries: Deliveries,
        watch_interval_s: float,
        broadcasts: Broadcasts | None = None,
    ) -> None:
        self._pool = pool
        self._gate = gate
        self._alerts = alerts
        self._deliveries = deliveries
        self._watch_interval = watch_interval_s
        self._broadcasts = broadcasts

    async def CreateAlert(self, request: pb.CreateAlertRequest, context: Ctx) -> pb.Alert:
        async with self._gate.call(
            context, "CreateAlert", target=f"key:{request.idempotency_key}"
        ) as call:
            spec = convert.spec(request.spec)
            if spec.zone_geojson:
                await validation.parse_zone_off_loop(spec.zone_geojson)
            alert = await self._alerts.create(
                principal=call.principal,
                idempotency_key=request.idempotency_key,
                spec=spec,
            )
            call.target, call.detail = alert.id, f"kind={alert.spec.kind.value}"
            return convert.alert_pb(alert)

    async def PreviewAlert(
        self, request: pb.PreviewAlertRequest, context: Ctx
    ) -> pb.PreviewAlertResponse:
        async with self._gate.call(context, "PreviewAlert", target=request.alert_id) as call:
            preview = await self._alerts.preview(
                principal=call.principal, alert_id=request.alert_id
            )
            call.detail = f"units={preview.units}"
            return convert.preview_pb(preview)

    async def SendAlert(self, request: pb.SendAlertRequest, context: Ctx) -> pb.Alert:
        async with self._gate.call(context, "SendAlert", target=request.alert_id) as call:
            alert = await self._alerts.send(principal=call.principal, alert_id=request.alert_id)
            call.detail = f"state={alert.state.value} version={alert.version}"
            return convert.alert_pb(alert)

    async def UpdateAlert(self, request: pb.UpdateAlertRequest, context: Ctx) -> pb.Alert:
        async with self._gate.call(context, "UpdateAlert", target=request.alert_id) as call:
            alert = await self._alerts.update(
                principal=call.principal,
                alert_id=request.alert_id,
                infos=convert.infos(list(request.infos)),
                base_version=request.base_version,
            )
            call.detail = f"version={alert.version}"
            return convert.alert_pb(alert)

    async def CancelAlert(self, request: pb.CancelAlertRequest, context: Ctx) -> pb.Alert:
        async with self._gate.call(context, "CancelAlert", target=request.alert_id) as call:
            alert = await self._alerts.cancel(principal=call.principal, alert_id=request.alert_id)
            return convert.alert_pb(alert)

    async def GetAlert(self, request: pb.GetAlertRequest, context: Ctx) -> pb.Alert:
        async with self._gate.call(context, "GetAlert", target=request.alert_id) as call:
            alert = await self._alerts.visible(principal=call.principal, alert_id=request.alert_id)
            return convert.alert_pb(alert)

    async def ListAlerts(
        self, request: pb.ListAlertsRequest, context: Ctx
    ) -> pb.ListAlertsResponse:
        async with self._gate.call(context, "ListAlerts") as call:
            offset = validation.page_offset(request.page_token)
            alerts, token = await self._alerts.list_own(
                principal=call.principal, page_size=request.page_size, page_token=request.page_token
            )
            page: list[pb.Alert] = []
            size = 0
            for alert in alerts:
                message = convert.alert_pb(alert)
                size += message.ByteSize()
                if page and size > validation.MAX_PAGE_BYTES:
                    # A page ends before it grows too large; the next one starts there.
                    token = str(offset + len(page))
                    break
                page.append(message)
            return pb.ListAlertsResponse(alerts=page, next_page_token=token)

    async def WatchAlert(
        self, request: pb.WatchAlertRequest, context: Ctx
    ) -> AsyncIterator[pb.AlertProgress]:
        # Audited when the watch starts: the stream itself may last as long as the alert.
        async with self._gate.call(context, "WatchAlert", target=request.alert_id) as call:
            alert = await self._alerts.visible(principal=call.principal, alert_id=request.alert_id)
        ops: tuple[OperatorStatus, ...] = ()
        broadcasts = self._broadcasts

        async def operators(current: Alert) -> object:
            nonlocal ops
            if broadcasts is not None:
                ops = await presence.operators(broadcasts=broadcasts, alert=current)
            return ops

        async for current, final in progress.watch(
            self._pool,
            deliveries=self._deliveries,
            alert=alert,
            interval=self._watch_interval,
            extra=operators,
        ):
            message = convert.alert_progress_pb(current, final=final)
            message.operators.extend(operator_progress_pb(o) for o in ops)
            yield message


class AdminServicer(alerting_pb2_grpc.AdminServiceServicer):
    """Administration calls for the crisis centre."""

    def __init__(self, *, pool: asyncpg.Pool, gate: Gate, redis: aioredis.Redis) -> None:
        self._pool = pool
        self._gate = gate
        #: Where the work streams are: a removed member's queued work is erased there.
        self._redis = redis

    async def CreateEntity(self, request: pb.CreateEntityRequest, context: Ctx) -> pb.Entity:
        async with self._gate.call(context, "CreateEntity", target=request.name) as call:
            auth.require_admin(call.principal)
            entity = await admin.create_entity(
                self._pool,
                name=request.name,
                type=request.type,
                territory_kind=request.territory_kind,
                territory_geojson=request.territory_geojson,
                postpaid=request.postpaid,
            )
            call.target = f"entity:{entity.id}"
            return convert.entity_pb(entity)

    async def ListEntities(
        self, request: pb.ListEntitiesRequest, context: Ctx
    ) -> pb.ListEntitiesResponse:
        async with self._gate.call(context, "ListEntities") as call:
            auth.require_admin(call.principal)
            found = await admin.list_entities(self._pool)
            return pb.ListEntitiesResponse(entities=[convert.entity_pb(e) for e in found])

    async def SetBilling(self, request: pb.SetBillingRequest, context: Ctx) -> pb.Entity:
        async with self._gate.call(
            context, "SetBilling", target=f"entity:{request.entity_id}"
        ) as call:
            auth.require_admin(call.principal)
            call.detail = f"postpaid={request.postpaid}"
            entity = await admin.set_billing(
                self._pool, entity_id=request.entity_id, postpaid=request.postpaid
            )
            return convert.entity_pb(entity)

    async def CreateUser(self, request: pb.CreateUserRequest, context: Ctx) -> pb.User:
        async with self._gate.call(context, "CreateUser", target=request.username) as call:
            auth.require_admin(call.principal)
            if request.role not in convert.ROLES:
                raise InvalidArgument("role", "issuer or admin")
            user = await admin.create_user(
                self._pool,
                username=request.username,
                password=request.password,
                entity_id=request.entity_id or None,
                role=convert.ROLES[request.role],
            )
            call.target = f"user:{user.id}"
            call.detail = f"entity={user.entity_id} role={user.role.value}"
            return convert.user_pb(user)

    async def DisableUser(self, request: pb.DisableUserRequest, context: Ctx) -> pb.User:
        async with self._gate.call(
            context, "DisableUser", target=f"user:{request.user_id}"
        ) as call:
            auth.require_admin(call.principal)
            user = await admin.disable_user(self._pool, user_id=request.user_id)
            self._gate.forget_user(user.id)
            return convert.user_pb(user)

    async def ListUsers(self, request: pb.ListUsersRequest, context: Ctx) -> pb.ListUsersResponse:
        async with self._gate.call(context, "ListUsers") as call:
            auth.require_admin(call.principal)
            users = await admin.list_users(self._pool, entity_id=request.entity_id or None)
            return pb.ListUsersResponse(users=[convert.user_pb(u) for u in users])

    async def CreateGroup(self, request: pb.CreateGroupRequest, context: Ctx) -> pb.Group:
        async with self._gate.call(
            context, "CreateGroup", target=f"entity:{request.entity_id}"
        ) as call:
            auth.require_admin(call.principal)
            group = await admin.create_group(
                self._pool, entity_id=request.entity_id, name=request.name, kind=request.kind
            )
            call.target = f"group:{group.id}"
            return convert.group_pb(group)

    async def ListGroups(
        self, request: pb.ListGroupsRequest, context: Ctx
    ) -> pb.ListGroupsResponse:
        async with self._gate.call(
            context, "ListGroups", target=f"entity:{request.entity_id}"
        ) as call:
            _own_entity_or_admin(call.principal, request.entity_id)
            groups = await admin.list_groups(self._pool, entity_id=request.entity_id)
            return pb.ListGroupsResponse(groups=[convert.group_pb(g) for g in groups])

    async def AddGroupMember(
        self, request: pb.AddGroupMemberRequest, context: Ctx
    ) -> pb.AddGroupMemberResponse:
        async with self._gate.call(
            context, "AddGroupMember", target=f"group:{request.group_id}"
        ) as call:
            auth.require_admin(call.principal)
            member_id = await admin.add_member(
                self._pool,
                group_id=request.group_id,
                name=request.name,
                phone=request.phone,
                email=request.email,
                language=request.language,
                channels=convert.channels(list(request.channels), field="channels"),
            )
            call.detail = f"member={member_id}"
            return pb.AddGroupMemberResponse(member_id=member_id)

    async def RemoveGroupMember(
        self, request: pb.RemoveGroupMemberRequest, context: Ctx
    ) -> pb.RemoveGroupMemberResponse:
        async with self._gate.call(
            context, "RemoveGroupMember", target=f"group:{request.group_id}"
        ) as call:
            auth.require_admin(call.principal)
            call.detail = f"member={request.member_id}"
            await admin.remove_member(
                self._pool,
                redis=self._redis,
                group_id=request.group_id,
                member_id=request.member_id,
            )
            return pb.RemoveGroupMemberResponse()

    async def AddPrepaidPackage(
        self, request: pb.AddPrepaidPackageRequest, context: Ctx
    ) -> pb.Entity:
        async with self._gate.call(
            context, "AddPrepaidPackage", target=f"entity:{request.entity_id}"
        ) as call:
            auth.require_admin(call.principal)
            call.detail = f"units={request.units}"
            await ledger.add_package(
                self._pool, entity_id=request.entity_id, units=request.units, now=now_utc()
            )
            return convert.entity_pb(
                await admin.get_entity(self._pool, entity_id=request.entity_id)
            )

    async def GetUsageReport(
        self, request: pb.GetUsageReportRequest, context: Ctx
    ) -> pb.UsageReport:
        async with self._gate.call(
            context, "GetUsageReport", target=f"entity:{request.entity_id} {request.month}"
        ) as call:
            _own_entity_or_admin(call.principal, request.entity_id)
            report = await ledger.usage_report(
                self._pool, entity_id=request.entity_id, month=request.month
            )
            return convert.usage_pb(report)

    async def VerifyAudit(
        self, request: pb.VerifyAuditRequest, context: Ctx
    ) -> pb.VerifyAuditResponse:
        async with self._gate.call(context, "VerifyAudit") as call:
            auth.require_admin(call.principal)
            verdict = await audit.verify(self._pool, key=self._gate.audit_key)
            call.detail = f"ok={verdict.ok} entries={verdict.entries}"
            return pb.VerifyAuditResponse(
                ok=verdict.ok,
                entries=verdict.entries,
                first_broken_seq=verdict.first_broken_seq,
                reason=verdict.reason,
            )


def _own_entity_or_admin(principal: auth.Principal, entity_id: int) -> None:
    if not principal.is_admin and principal.entity_id != entity_id:
        raise PermissionDenied("only the entity's own users or an admin may see this")


def add_servicers(
    server: grpc.aio.Server,
    *,
    pool: asyncpg.Pool,
    alerts: Alerts,
    deliveries: Deliveries,
    gate: Gate,
    guard: auth.LoginGuard,
    token_ttl_s: int,
    watch_interval_s: float,
    broadcasts: Broadcasts | None = None,
    redis: aioredis.Redis,
) -> list[str]:
    """Register the three servicers on `server`; return their full service names."""
    alerting_pb2_grpc.add_AuthServiceServicer_to_server(
        AuthServicer(pool=pool, gate=gate, guard=guard, token_ttl_s=token_ttl_s), server
    )
    alerting_pb2_grpc.add_AlertingServiceServicer_to_server(
        AlertingServicer(
            pool=pool,
            gate=gate,
            alerts=alerts,
            deliveries=deliveries,
            watch_interval_s=watch_interval_s,
            broadcasts=broadcasts,
        ),
        server,
    )
    alerting_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(pool=pool, gate=gate, redis=redis), server
    )
    services = pb.DESCRIPTOR.services_by_name
    return [services[n].full_name for n in ("AuthService", "AlertingService", "AdminService")]
