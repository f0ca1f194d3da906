"""gRPC servicer of the information line: protobuf in, domain call via the gate, protobuf out."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
from tocsin.alerting.v1 import infoline_pb2 as pb
from tocsin.alerting.v1 import infoline_pb2_grpc

from services.alerting import auth
from services.alerting.gate import Gate
from services.alerting.infoline import convert, rights
from services.alerting.infoline.lines import InfoLines
from services.kernel.errors import InvalidArgument, PermissionDenied

Ctx = grpc.aio.ServicerContext[Any, Any]


class InfoLineServicer(infoline_pb2_grpc.InfoLineServiceServicer):
    """The information line's calls; each authenticated and audited by the gate."""

    def __init__(self, *, pool: asyncpg.Pool, gate: Gate, lines: InfoLines) -> None:
        self._pool = pool
        self._gate = gate
        self._lines = lines

    async def AddAuthorisedPerson(
        self, request: pb.AddAuthorisedPersonRequest, context: Ctx
    ) -> pb.AuthorisedPerson:
        async with self._gate.call(
            context, "AddAuthorisedPerson", target=f"entity:{request.entity_id}"
        ) as call:
            auth.require_admin(call.principal)
            function = convert.FUNCTIONS.get(request.function)
            if function is None:
                raise InvalidArgument("function", "MAYOR or REPRESENTATIVE")
            person = await rights.add_person(
                self._pool,
                entity_id=request.entity_id,
                user_id=request.user_id,
                function=function,
                now=self._lines.clock(),
            )
            call.detail = f"user={person.user_id} function={function.value}"
            return convert.person_pb(person)

    async def RemoveAuthorisedPerson(
        self, request: pb.RemoveAuthorisedPersonRequest, context: Ctx
    ) -> pb.RemoveAuthorisedPersonResponse:
        async with self._gate.call(
            context, "RemoveAuthorisedPerson", target=f"entity:{request.entity_id}"
        ) as call:
            auth.require_admin(call.principal)
            call.detail = f"user={request.user_id}"
            await rights.remove_person(
                self._pool,
                entity_id=request.entity_id,
                user_id=request.user_id,
                now=self._lines.clock(),
            )
            return pb.RemoveAuthorisedPersonResponse()

    async def ListAuthorisedPersons(
        self, request: pb.ListAuthorisedPersonsRequest, context: Ctx
    ) -> pb.ListAuthorisedPersonsResponse:
        async with self._gate.call(
            context, "ListAuthorisedPersons", target=f"entity:{request.entity_id}"
        ) as call:
            if not call.principal.is_admin and call.principal.entity_id != request.entity_id:
                raise PermissionDenied("only the entity's own users or an admin may see this")
            found = await rights.persons(self._pool, entity_id=request.entity_id)
            return pb.ListAuthorisedPersonsResponse(persons=[convert.person_pb(p) for p in found])

    async def DeclarePhase(self, request: pb.DeclarePhaseRequest, context: Ctx) -> pb.Phase:
        async with self._gate.call(
            context, "DeclarePhase", target=f"entity:{request.entity_id}"
        ) as call:
            level = convert.LEVELS.get(request.level)
            if level is None:
                raise InvalidArgument("level", "MUNICIPAL, PROVINCIAL or FEDERAL")
            call.detail = f"level={level.value}"
            phase = await rights.declare_phase(
                self._pool,
                principal=call.principal,
                entity_id=request.entity_id,
                level=level,
                reason=request.reason.strip()[:500],
                now=self._lines.clock(),
            )
            return convert.phase_pb(phase)

    async def EndPhase(self, request: pb.EndPhaseRequest, context: Ctx) -> pb.Phase:
        async with self._gate.call(
            context, "EndPhase", target=f"entity:{request.entity_id}"
        ) as call:
            phase = await rights.end_phase(
                self._pool,
                principal=call.principal,
                entity_id=request.entity_id,
                now=self._lines.clock(),
            )
            return convert.phase_pb(phase)

    async def ActivateLine(self, request: pb.ActivateLineRequest, context: Ctx) -> pb.InfoLine:
        async with self._gate.call(context, "ActivateLine") as call:
            form = convert.form(request.form, now=self._lines.clock())
            line = await self._lines.activate(principal=call.principal, form=form)
            call.target = f"infoline:{line.id}"
            call.detail = (
                f"kind={form.kind.value} exercise={form.exercise} operators={form.operators}"
                f" alerts={','.join(form.alert_ids)}"
            )
            return convert.line_pb(line, now=self._lines.clock())

    async def GetLine(self, request: pb.GetLineRequest, context: Ctx) -> pb.InfoLine:
        async with self._gate.call(
            context, "GetLine", target=f"infoline:{request.line_id}"
        ) as call:
            line = await self._lines.visible(principal=call.principal, line_id=request.line_id)
            return convert.line_pb(line, now=self._lines.clock())

    async def ListLines(self, request: pb.ListLinesRequest, context: Ctx) -> pb.ListLinesResponse:
        async with self._gate.call(
            context, "ListLines", target=f"entity:{request.entity_id}"
        ) as call:
            found = await self._lines.of_entity(
                principal=call.principal, entity_id=request.entity_id
            )
            now = self._lines.clock()
            return pb.ListLinesResponse(lines=[convert.line_pb(x, now=now) for x in found])

    async def PublishLiaisonUpdate(
        self, request: pb.PublishLiaisonUpdateRequest, context: Ctx
    ) -> pb.LiaisonUpdate:
        async with self._gate.call(
            context, "PublishLiaisonUpdate", target=f"infoline:{request.line_id}"
        ) as call:
            update = await self._lines.publish_liaison(
                principal=call.principal,
                line_id=request.line_id,
                items=convert.items(list(request.items)),
            )
            call.detail = f"version={update.version} items={len(update.items)}"
            return convert.liaison_pb(update)

    async def OpenSecondLine(self, request: pb.OpenSecondLineRequest, context: Ctx) -> pb.InfoLine:
        async with self._gate.call(
            context, "OpenSecondLine", target=f"infoline:{request.line_id}"
        ) as call:
            call.detail = f"number={request.number}"
            line = await self._lines.open_second_line(
                principal=call.principal, line_id=request.line_id, number=request.number
            )
            return convert.line_pb(line, now=self._lines.clock())

    async def CloseLine(self, request: pb.CloseLineRequest, context: Ctx) -> pb.InfoLine:
        async with self._gate.call(
            context, "CloseLine", target=f"infoline:{request.line_id}"
        ) as call:
            line = await self._lines.close(
                principal=call.principal,
                line_id=request.line_id,
                statement=request.statement,
                final=request.final,
                hours=request.opening_hours,
                operators=request.operators,
                forward_to=request.forward_to,
            )
            call.detail = (
                "final"
                if request.final
                else f"step hours={line.opening_hours}"
                f" operators={line.operators} forward_to={line.forward_to}"
            )
            return convert.line_pb(line, now=self._lines.clock())

    async def GetStaffing(self, request: pb.GetStaffingRequest, context: Ctx) -> pb.Staffing:
        async with self._gate.call(
            context, "GetStaffing", target=f"infoline:{request.line_id}"
        ) as call:
            staffing = await self._lines.staffing(
                principal=call.principal,
                line_id=request.line_id,
                answered_ratio=request.target_answered_ratio,
                target_s=request.target_answer_s,
            )
            return convert.staffing_pb(staffing)


def add_servicer(
    server: grpc.aio.Server, *, pool: asyncpg.Pool, gate: Gate, lines: InfoLines
) -> str:
    """Register InfoLineService on `server`; return its full name."""
    infoline_pb2_grpc.add_InfoLineServiceServicer_to_server(
        InfoLineServicer(pool=pool, gate=gate, lines=lines), server
    )
    return str(pb.DESCRIPTOR.services_by_name["InfoLineService"].full_name)
