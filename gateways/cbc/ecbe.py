"""ECBE REST client of osmo-cbc: `POST /api/ecbe/v1/message`, `DELETE .../message/<id>`.

The JSON is the `cbc_message` of osmo-cbc's `cbc.schema.json` as its `src/rest_api.c` parses it:
`cbe_name` (mandatory), `category` (normal, high_priority, background), `repetition_period`
(mandatory, 0-4095), `num_of_bcast` (0: unlimited), `warning_period_sec` (absent: infinite),
`scope` and `smscb_message` with `message_id` (the CBS message identifier, e.g. 4370),
`serial_nr.serial_nr_decoded` (`geo_scope`, `msg_code` 0-1023, `update_nr` 0-15) and
`payload.payload_encoded` (`dcs`, `pages`: 1 to 15 hex strings of up to 82 octets).

osmo-cbc answers 201 Created, 400 with a text naming the problem, 409 when a message with that
identifier is active, 404 on deleting an unknown identifier, 200 on delete, 500 on its own errors.
osmo-cbc itself accepts only `scope_plmn`; a CBC that targets cells takes `scope_cells` with
the cell identities (`scope="cells"` in the operator's settings, docs/cellbroadcast.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from gateways.rest import RestClient
from telecom.answers import Answer, Outcome

#: Path prefix of the ECBE API.
PREFIX = "/api/ecbe/v1"


class GeoScope(enum.StrEnum):
    """Geographical scope of the serial number (TS 23.041 9.4.1.2.1), by osmo-cbc's names."""

    #: Cell wide, displayed at once.
    CELL_WIDE_IMMEDIATE = "cell_wide_immediate"
    #: PLMN wide.
    PLMN_WIDE = "plmn_wide"
    #: Location / service / tracking area wide.
    LAC_SAC_TAC_WIDE = "lac_sac_tac_wide"
    #: Cell wide, normal display.
    CELL_WIDE = "cell_wide"


@dataclass(frozen=True)
class EcbeMessage:
    """One SMSCB message as the CBC is asked to broadcast it."""

    cbe_name: str
    message_id: int
    geo_scope: GeoScope
    msg_code: int
    update_nr: int
    dcs: int
    pages: tuple[bytes, ...]
    #: Seconds between two broadcasts of the message (1-4095).
    repetition_period: int
    #: Broadcasts in all (0: until deleted).
    num_of_bcast: int = 0
    category: str = "high_priority"
    #: Seconds the warning stays (None: until deleted).
    warning_period_sec: int | None = None
    #: Cells to broadcast in; empty: the whole network (`scope_plmn`).
    cells: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The `cbc_message` JSON object."""
        scope: dict[str, Any] = (
            {"scope_cells": {"cells": list(self.cells)}} if self.cells else {"scope_plmn": {}}
        )
        body: dict[str, Any] = {
            "cbe_name": self.cbe_name,
            "category": self.category,
            "repetition_period": self.repetition_period,
            "num_of_bcast": self.num_of_bcast,
            "scope": scope,
            "smscb_message": {
                "message_id": self.message_id,
                "serial_nr": {
                    "serial_nr_decoded": {
                        "geo_scope": self.geo_scope.value,
                        "msg_code": self.msg_code,
                        "update_nr": self.update_nr,
                    }
                },
                "payload": {
                    "payload_encoded": {
                        "dcs": self.dcs,
                        "pages": [page.hex() for page in self.pages],
                    }
                },
            },
        }
        if self.warning_period_sec is not None:
            body["warning_period_sec"] = self.warning_period_sec
        return body


def serial_number(*, geo_scope: GeoScope, msg_code: int, update_nr: int) -> int:
    """The 16-bit serial number: GS (2 bits), message code (10), update number (4)."""
    gs = list(GeoScope).index(geo_scope)
    return (gs << 14) | ((msg_code & 0x3FF) << 4) | (update_nr & 0xF)


def _sort(status: int, text: str, *, created: int) -> Answer:
    if status == created:
        return Answer(Outcome.ACCEPTED, status, text)
    outcome = {400: Outcome.REFUSED, 404: Outcome.UNKNOWN, 409: Outcome.CONFLICT}.get(
        status, Outcome.FAILED
    )
    return Answer(outcome, status, text)


class EcbeClient:
    """An ECBE REST client for one operator's CBC."""

    def __init__(self, *, base_url: str, timeout_s: float) -> None:
        self._rest = RestClient(base_url=base_url, prefix=PREFIX, timeout_s=timeout_s)

    async def create(self, message: EcbeMessage) -> Answer:
        """POST the message; 201 is acceptance."""
        reply = await self._rest.call("POST", "/message", message.to_json())
        return _sort(reply.status, reply.text, created=201)

    async def delete(self, message_id: int) -> Answer:
        """DELETE the message with this identifier; 200 is acceptance, 404 unknown."""
        reply = await self._rest.call("DELETE", f"/message/{message_id}", None)
        return _sort(reply.status, reply.text, created=200)

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._rest.close()
