"""`python -m services.alerting.cli infoline ...`: the crisis centre's view of information lines."""

from __future__ import annotations

import argparse
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table
from tocsin.alerting.v1 import infoline_pb2 as pb
from tocsin.alerting.v1 import infoline_pb2_grpc

console = Console(highlight=False)
FUNCTIONS = {
    "mayor": pb.PERSON_FUNCTION_MAYOR,
    "representative": pb.PERSON_FUNCTION_REPRESENTATIVE,
}


class Api(Protocol):
    """What the command needs of the CLI's stubs."""

    @property
    def infoline(self) -> infoline_pb2_grpc.InfoLineServiceAsyncStub:
        """The InfoLineService stub."""

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        """The caller's metadata (its token)."""


def add_parser(sub: Any) -> None:
    """The `infoline` subcommand."""
    line = sub.add_parser("infoline", help="information lines: list, show, staffing, authorise")
    line.add_argument("action", choices=["list", "show", "staffing", "authorise", "persons"])
    line.add_argument("line", nargs="?", help="line id (show, staffing)")
    line.add_argument("--entity", type=int)
    line.add_argument("--user-id", type=int)
    line.add_argument("--function", choices=list(FUNCTIONS), default="representative")


def _state(line: pb.InfoLine) -> str:
    return pb.LineState.Name(line.state).removeprefix("LINE_STATE_").lower()


def _kind(line: pb.InfoLine) -> str:
    return pb.LineKind.Name(line.form.kind).removeprefix("LINE_KIND_")


async def cmd_infoline(api: Api, args: argparse.Namespace) -> int:
    """Run one `infoline` action."""
    if args.action == "list":
        found = await api.infoline.ListLines(
            pb.ListLinesRequest(entity_id=args.entity), metadata=api.md
        )
        table = Table("line", "kind", "state", "number", "operators", "overdue", "requested by")
        for x in found.lines:
            table.add_row(
                x.id,
                _kind(x),
                _state(x),
                x.number,
                str(x.operators),
                str(x.overdue),
                x.requested_by,
            )
        console.print(table)
    elif args.action == "show":
        x = await api.infoline.GetLine(pb.GetLineRequest(line_id=args.line), metadata=api.md)
        console.print(
            f"line {x.id} ({_kind(x)}, {x.handled_by}): {_state(x)}, number {x.number or '-'}\n"
            f"requested {x.requested_at.ToDatetime():%Y-%m-%d %H:%M} UTC by {x.requested_by},"
            f" open by {x.open_by.ToDatetime():%H:%M} UTC{' - OVERDUE' if x.overdue else ''}\n"
            f"liaison {x.form.liaison.name} {x.form.liaison.phone} {x.form.liaison.email}\n"
            f"hours {x.opening_hours}, {x.operators} operators,"
            f" forward to {x.forward_to or '-'}, second line {x.second_line or '-'},"
            f" liaison version {x.liaison_version}"
        )
    elif args.action == "staffing":
        s = await api.infoline.GetStaffing(
            pb.GetStaffingRequest(line_id=args.line), metadata=api.md
        )
        table = Table(
            "language",
            "hour",
            "offered",
            "answered",
            "abandoned",
            "AHT s",
            "actual",
            "recommended",
            title=f"{s.target_answered_ratio:.0%} within {s.target_answer_s} s",
        )
        for r in s.languages:
            table.add_row(
                r.language,
                f"{r.hour_start.ToDatetime():%H:%M}",
                str(r.offered),
                str(r.answered),
                str(r.abandoned),
                f"{r.average_handling_s:.0f}",
                f"{r.actual_operators} ({r.service_level_actual:.0%})",
                f"{r.recommended_operators} ({r.service_level_recommended:.0%})",
            )
        console.print(table)
    elif args.action == "authorise":
        p = await api.infoline.AddAuthorisedPerson(
            pb.AddAuthorisedPersonRequest(
                entity_id=args.entity, user_id=args.user_id, function=FUNCTIONS[args.function]
            ),
            metadata=api.md,
        )
        console.print(f"{p.username} may activate the information line of entity {p.entity_id}")
    else:
        found_persons = await api.infoline.ListAuthorisedPersons(
            pb.ListAuthorisedPersonsRequest(entity_id=args.entity), metadata=api.md
        )
        for p in found_persons.persons:
            name = pb.PersonFunction.Name(p.function).removeprefix("PERSON_FUNCTION_").lower()
            console.print(f"{p.user_id} {p.username} ({name})")
    return 0
