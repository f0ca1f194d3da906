"""SMSC delivery receipts: deliver_sm with the receipt esm_class, in TLV and text form.

The receipted_message_id and message_state TLVs win when present; otherwise the SMPP 3.4 appendix B
text (`id:... sub:... dlvrd:... submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DELIVRD err:000`)
is read. Dates are SMSC-local times as the SMSC writes them (naive datetimes).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from gateways.smpp.pdu import (
    TAG_MESSAGE_STATE,
    TAG_NETWORK_ERROR_CODE,
    TAG_RECEIPTED_MESSAGE_ID,
    DeliverSm,
)


class ReceiptState(StrEnum):
    """Final (or intermediate) state of a submitted message, from the receipt."""

    DELIVERED = "DELIVRD"  #: delivered to the handset
    EXPIRED = "EXPIRED"  #: validity period passed before delivery
    DELETED = "DELETED"  #: deleted at the SMSC
    UNDELIVERABLE = "UNDELIV"  #: the network gave up
    ACCEPTED = "ACCEPTD"  #: accepted on the subscriber's behalf
    UNKNOWN = "UNKNOWN"  #: the SMSC does not know
    REJECTED = "REJECTD"  #: rejected by the SMSC
    ENROUTE = "ENROUTE"  #: still on its way (intermediate receipt)

    @property
    def is_final(self) -> bool:
        """True for every state but ENROUTE."""
        return self is not ReceiptState.ENROUTE


#: message_state TLV value (SMPP 3.4 section 5.2.28) to ReceiptState, and back.
STATE_BY_TLV = {
    1: ReceiptState.ENROUTE,
    2: ReceiptState.DELIVERED,
    3: ReceiptState.EXPIRED,
    4: ReceiptState.DELETED,
    5: ReceiptState.UNDELIVERABLE,
    6: ReceiptState.ACCEPTED,
    7: ReceiptState.UNKNOWN,
    8: ReceiptState.REJECTED,
}
TLV_BY_STATE = {state: code for code, state in STATE_BY_TLV.items()}
_STATE_BY_TEXT = {state.value: state for state in ReceiptState}
_STATE_BY_TEXT.update(
    {"DELIVERED": ReceiptState.DELIVERED, "UNDELIVERABLE": ReceiptState.UNDELIVERABLE}
)


class ReceiptError(ValueError):
    """A deliver_sm marked as a receipt from which no message id or state can be read."""


class DeliveryReceipt:
    """What an SMSC reported about one submitted segment.

    `message_id` and `state` are read when the receipt arrives; the error code and the dates come
    from the receipt text, which is parsed only if one of them is asked for: with the TLVs the
    hot path (match the id, record the state) never pays for the text.
    """

    __slots__ = (
        "_done",
        "_error_code",
        "_parsed",
        "_submit",
        "_text",
        "_tlv_error",
        "message_id",
        "state",
    )

    message_id: str
    state: ReceiptState

    def __init__(
        self,
        message_id: str,
        state: ReceiptState,
        error_code: int,
        submit_date: datetime | None,
        done_date: datetime | None,
    ) -> None:
        self.message_id = message_id
        self.state = state
        self._error_code = error_code
        self._submit = submit_date
        self._done = done_date
        self._text = ""
        self._tlv_error: int | None = None
        self._parsed = True

    @classmethod
    def deferred(
        cls, message_id: str, state: ReceiptState, *, text: str, tlv_error: int | None
    ) -> DeliveryReceipt:
        """A receipt whose error code and dates are read from `text` on first use."""
        receipt = cls(message_id, state, 0, None, None)
        receipt._text = text
        receipt._tlv_error = tlv_error
        receipt._parsed = False
        return receipt

    def _parse(self) -> None:
        _id, _state, error_code, found = parse_receipt_text(self._text)
        if self._tlv_error is not None and not found.get("err"):
            error_code = self._tlv_error
        self._error_code = error_code
        self._submit = _date(found.get("submit"))
        self._done = _date(found.get("done"))
        self._parsed = True

    @property
    def error_code(self) -> int:
        """Error code: the text's err field, else the network_error_code TLV, else 0."""
        if not self._parsed:
            self._parse()
        return self._error_code

    @property
    def submit_date(self) -> datetime | None:
        """Submit date as the SMSC wrote it (SMSC-local, naive)."""
        if not self._parsed:
            self._parse()
        return self._submit

    @property
    def done_date(self) -> datetime | None:
        """Done date as the SMSC wrote it (SMSC-local, naive)."""
        if not self._parsed:
            self._parse()
        return self._done

    def _key(self) -> tuple[str, ReceiptState, int, datetime | None, datetime | None]:
        return (self.message_id, self.state, self.error_code, self.submit_date, self.done_date)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeliveryReceipt):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"DeliveryReceipt(message_id={self.message_id!r}, state={self.state!r}, "
            f"error_code={self.error_code!r}, submit_date={self.submit_date!r}, "
            f"done_date={self.done_date!r})"
        )


_TEXT_RE = re.compile(
    r"id:(?P<id>\S+)"
    r"|submit date:(?P<submit>\d{10,12})"
    r"|done date:(?P<done>\d{10,12})"
    r"|stat:(?P<stat>[A-Za-z]+)"
    r"|err:(?P<err>[0-9A-Fa-f]+)",
    re.IGNORECASE,
)


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    # Two-digit years are 20yy: strptime's %y would turn 69..99 into the 1900s.
    n = [int(text[i : i + 2]) for i in range(0, len(text), 2)]
    try:
        return datetime(2000 + n[0], n[1], n[2], n[3], n[4], n[5] if len(n) > 5 else 0)
    except ValueError:
        return None


def format_receipt_text(
    *,
    message_id: str,
    state: ReceiptState,
    submit_date: datetime,
    done_date: datetime,
    error_code: int = 0,
    text: str = "",
) -> str:
    """Write the SMPP 3.4 appendix B receipt text (used by the simulator and tests)."""
    return format_receipt_stamped(
        message_id=message_id,
        state=state,
        submit_stamp=receipt_stamp(submit_date),
        done_stamp=receipt_stamp(done_date),
        error_code=error_code,
        text=text,
    )


def receipt_stamp(moment: datetime) -> str:
    """A receipt date as written in the text: YYMMDDhhmm."""
    return f"{moment:%y%m%d%H%M}"


def format_receipt_stamped(
    *,
    message_id: str,
    state: ReceiptState,
    submit_stamp: str,
    done_stamp: str,
    error_code: int = 0,
    text: str = "",
) -> str:
    """`format_receipt_text` with the dates already stamped (a simulator stamps once a minute)."""
    return (
        f"id:{message_id} sub:001 dlvrd:{'001' if state is ReceiptState.DELIVERED else '000'} "
        f"submit date:{submit_stamp} done date:{done_stamp} "
        f"stat:{state.value} err:{error_code:03d} text:{text[:20]}"
    )


def parse_receipt_text(text: str) -> tuple[str | None, ReceiptState | None, int, dict[str, str]]:
    """Read id, state, error code and dates from receipt text; missing parts come back None/0."""
    found: dict[str, str] = {}
    for m in _TEXT_RE.finditer(text):
        for key, value in m.groupdict().items():
            if value is not None and key not in found:
                found[key] = value
    state = _STATE_BY_TEXT.get(found.get("stat", "").upper())
    err = found.get("err", "0")
    error_code = int(err) if err.isdigit() else int(err, 16)
    return found.get("id"), state, error_code, found


def _tlv_error(pdu: DeliverSm) -> int | None:
    raw_err = pdu.tlvs.get(TAG_NETWORK_ERROR_CODE)
    if raw_err and len(raw_err) == 3:
        return int.from_bytes(raw_err[1:3], "big")
    return None


def receipt_from_deliver_sm(pdu: DeliverSm) -> DeliveryReceipt:
    """Build a DeliveryReceipt from a receipt deliver_sm (TLVs first, then the text)."""
    text = pdu.short_message.decode("latin-1")
    tlvs = pdu.tlvs
    raw_id = tlvs.get(TAG_RECEIPTED_MESSAGE_ID)
    raw_state = tlvs.get(TAG_MESSAGE_STATE)
    if raw_id and raw_state and raw_state[0] in STATE_BY_TLV:
        tlv_id = raw_id.rstrip(b"\0").decode("latin-1")
        if tlv_id:
            # Id and state from the TLVs: the text is read only if error code or dates are used.
            state = STATE_BY_TLV[raw_state[0]]
            return DeliveryReceipt.deferred(tlv_id, state, text=text, tlv_error=_tlv_error(pdu))
    text_id, text_state, error_code, found = parse_receipt_text(text)
    message_id = raw_id.rstrip(b"\0").decode("latin-1") if raw_id else text_id
    found_state = text_state
    if raw_state and raw_state[0] in STATE_BY_TLV:
        found_state = STATE_BY_TLV[raw_state[0]]
    tlv_error = _tlv_error(pdu)
    if tlv_error is not None and not found.get("err"):
        error_code = tlv_error
    if not message_id or found_state is None:
        raise ReceiptError(f"receipt without message id or state: {text[:80]!r}")
    return DeliveryReceipt(
        message_id=message_id,
        state=found_state,
        error_code=error_code,
        submit_date=_date(found.get("submit")),
        done_date=_date(found.get("done")),
    )
