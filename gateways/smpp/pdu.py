"""SMPP 3.4 PDU codec: framing, hand-written hot PDUs, smpplib for the rest.

submit_sm, submit_sm_resp, deliver_sm and deliver_sm_resp go through every message, so they are
encoded and decoded here with struct: smpplib's generic codec costs about 60 us to build and 40 us
to parse a submit_sm, too much for 7,000 messages a second on one core. The property tests in
tests/gateways/smpp/test_pdu.py prove these encoders give the same bytes as smpplib's and that
smpplib reads back what these encoders write. Everything rarer (binds, enquire_link, unbind,
generic_nack) uses smpplib's classes through `encode_other` / `decode_other`.

Decoders raise `PduError` on any malformed input, never another exception type.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from smpplib import exceptions as _smpplib_exc
from smpplib import smpp as _smpplib

#: command_id values used by the gateway and the simulator.
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
GENERIC_NACK = 0x80000000
RESP = 0x80000000
SUBMIT_SM_RESP = SUBMIT_SM | RESP
DELIVER_SM_RESP = DELIVER_SM | RESP
UNBIND_RESP = UNBIND | RESP
ENQUIRE_LINK_RESP = ENQUIRE_LINK | RESP
BIND_COMMANDS = {BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER}

#: TLV tags read or written by the hot codecs.
TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_MESSAGE_STATE = 0x0427
TAG_NETWORK_ERROR_CODE = 0x0423

#: esm_class mask and value for an SMSC delivery receipt in deliver_sm.
ESM_TYPE_MASK = 0x3C
ESM_DELIVERY_RECEIPT = 0x04

HEADER = struct.Struct(">IIII")
HEADER_LEN = 16
#: Largest PDU accepted from a peer; longer lengths mean a corrupt stream.
MAX_PDU_LEN = 64 * 1024
MAX_SEQUENCE = 0x7FFFFFFF

_NAMES = {
    BIND_RECEIVER: "bind_receiver",
    BIND_TRANSMITTER: "bind_transmitter",
    BIND_TRANSCEIVER: "bind_transceiver",
    BIND_RECEIVER | RESP: "bind_receiver_resp",
    BIND_TRANSMITTER | RESP: "bind_transmitter_resp",
    BIND_TRANSCEIVER | RESP: "bind_transceiver_resp",
    UNBIND: "unbind",
    UNBIND_RESP: "unbind_resp",
    ENQUIRE_LINK: "enquire_link",
    ENQUIRE_LINK_RESP: "enquire_link_resp",
    GENERIC_NACK: "generic_nack",
}


class PduError(ValueError):
    """Bytes that are not a valid SMPP PDU."""


@dataclass(slots=True)
class SubmitSm:
    """The submit_sm fields the gateway sets (the rest are zero or empty)."""

    sequence: int
    source_addr: str
    destination_addr: str
    short_message: bytes
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    service_type: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)
    #: SMPP time (absolute "YYMMDDhhmmsstnnp" or relative "...R") after which the SMSC must not
    #: deliver the message any more; empty: the SMSC's default validity.
    validity_period: str = ""


@dataclass(slots=True)
class DeliverSm:
    """A deliver_sm as read from the SMSC: mandatory fields plus raw TLVs."""

    sequence: int
    source_addr: str
    destination_addr: str
    esm_class: int
    data_coding: int
    short_message: bytes
    tlvs: dict[int, bytes] = field(default_factory=dict)
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    registered_delivery: int = 0
    service_type: str = ""

    @property
    def is_receipt(self) -> bool:
        """True when esm_class marks an SMSC delivery receipt."""
        return (self.esm_class & ESM_TYPE_MASK) == ESM_DELIVERY_RECEIPT


def header(data: bytes | bytearray | memoryview) -> tuple[int, int, int, int]:
    """Unpack (length, command_id, status, sequence) from the first 16 bytes."""
    if len(data) < HEADER_LEN:
        raise PduError("short header")
    length, command_id, status, sequence = HEADER.unpack_from(data, 0)
    return length, command_id, status, sequence


def _cstr(value: str) -> bytes:
    return value.encode("latin-1") + b"\0"


def encode_submit_sm(pdu: SubmitSm) -> bytes:
    """Encode a submit_sm byte for byte as smpplib does (mandatory fields, then TLVs)."""
    sm = pdu.short_message
    if len(sm) > 254:
        raise PduError("short_message longer than 254 octets")
    body = b"".join(
        (
            _cstr(pdu.service_type),
            bytes((pdu.source_addr_ton, pdu.source_addr_npi)),
            _cstr(pdu.source_addr),
            bytes((pdu.dest_addr_ton, pdu.dest_addr_npi)),
            _cstr(pdu.destination_addr),
            # esm_class, protocol_id, priority_flag, schedule_delivery_time (empty C-string)
            bytes((pdu.esm_class, 0, 0, 0)),
            _cstr(pdu.validity_period),
            # registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id,
            # sm_length
            bytes(
                (
                    pdu.registered_delivery,
                    0,
                    pdu.data_coding,
                    0,
                    len(sm),
                )
            ),
            sm,
            _encode_tlvs(pdu.tlvs),
        )
    )
    return HEADER.pack(HEADER_LEN + len(body), SUBMIT_SM, 0, pdu.sequence) + body


def _encode_tlvs(tlvs: dict[int, bytes]) -> bytes:
    return b"".join(struct.pack(">HH", tag, len(v)) + v for tag, v in tlvs.items())


class _Reader:
    """Cursor over a PDU body that raises PduError instead of IndexError."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def u8(self) -> int:
        if self.pos >= self.end:
            raise PduError("PDU body too short")
        v = self.data[self.pos]
        self.pos += 1
        return v

    def cstr(self, limit: int) -> str:
        nul = self.data.find(b"\0", self.pos, min(self.end, self.pos + limit))
        if nul < 0:
            raise PduError("unterminated or over-long C-octet string")
        v = self.data[self.pos : nul].decode("latin-1")
        self.pos = nul + 1
        return v

    def octets(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise PduError("octet string runs past the PDU")
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return bytes(v)

    def tlvs(self) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        while self.pos < self.end:
            if self.pos + 4 > self.end:
                raise PduError("truncated TLV header")
            tag, length = struct.unpack_from(">HH", self.data, self.pos)
            self.pos += 4
            out[tag] = self.octets(length)
        return out


def _cstr_at(data: bytes, pos: int, end: int, limit: int) -> tuple[str, int]:
    nul = data.find(b"\0", pos, min(end, pos + limit))
    if nul < 0:
        raise PduError("unterminated or over-long C-octet string")
    return data[pos:nul].decode("latin-1"), nul + 1


#: The mandatory fields of submit_sm / deliver_sm, in the order `_sm_values` returns them.
_SmValues = tuple[str, int, int, str, int, int, str, int, str, int, int, bytes, dict[int, bytes]]


def _sm_values(data: bytes, command_id: int) -> tuple[int, _SmValues]:
    """Sequence and fields of a whole submit_sm / deliver_sm, read without a cursor object.

    Runs for every submit (simulator) and receipt (gateway): straight-line code with the bounds
    checks of `_Reader`, which tests/gateways/smpp/test_pdu.py keeps as the reference.
    """
    end = len(data)
    if end < HEADER_LEN:
        raise PduError("short header")
    length, cid, _status, sequence = HEADER.unpack_from(data, 0)
    if cid != command_id or length != end:
        raise PduError("unexpected command or length")
    service_type, pos = _cstr_at(data, HEADER_LEN, end, 6)
    if pos + 2 > end:
        raise PduError("PDU body too short")
    source_ton, source_npi = data[pos], data[pos + 1]
    source, pos = _cstr_at(data, pos + 2, end, 21)
    if pos + 2 > end:
        raise PduError("PDU body too short")
    dest_ton, dest_npi = data[pos], data[pos + 1]
    dest, pos = _cstr_at(data, pos + 2, end, 21)
    if pos + 3 > end:
        raise PduError("PDU body too short")
    esm_class = data[pos]
    # protocol_id, priority_flag, then schedule_delivery_time and validity_period (C-strings)
    _, pos = _cstr_at(data, pos + 3, end, 17)
    validity, pos = _cstr_at(data, pos, end, 17)
    if pos + 5 > end:
        raise PduError("PDU body too short")
    registered = data[pos]
    coding = data[pos + 2]  # after replace_if_present_flag; sm_default_msg_id follows
    sm_end = pos + 5 + data[pos + 4]
    if sm_end > end:
        raise PduError("octet string runs past the PDU")
    sm = data[pos + 5 : sm_end]
    tlvs: dict[int, bytes] = {}
    pos = sm_end
    while pos < end:
        if pos + 4 > end:
            raise PduError("truncated TLV header")
        tag, n = _TLV_HEADER.unpack_from(data, pos)
        pos += 4
        if pos + n > end:
            raise PduError("octet string runs past the PDU")
        tlvs[tag] = data[pos : pos + n]
        pos += n
    return sequence, (
        service_type,
        source_ton,
        source_npi,
        source,
        dest_ton,
        dest_npi,
        dest,
        esm_class,
        validity,
        registered,
        coding,
        sm,
        tlvs,
    )


_TLV_HEADER = struct.Struct(">HH")


def decode_submit_sm(data: bytes) -> SubmitSm:
    """Decode a whole submit_sm PDU."""
    sequence, (st, s_ton, s_npi, src, d_ton, d_npi, dst, esm, vp, reg, dc, sm, tlvs) = _sm_values(
        bytes(data), SUBMIT_SM
    )
    return SubmitSm(sequence, src, dst, sm, s_ton, s_npi, d_ton, d_npi, esm, reg, dc, st, tlvs, vp)


def encode_deliver_sm(
    *,
    sequence: int,
    source_addr: str,
    destination_addr: str,
    short_message: bytes,
    esm_class: int = 0,
    data_coding: int = 0,
    message_state: int | None = None,
    receipted_message_id: str | None = None,
    network_error_code: bytes | None = None,
) -> bytes:
    """Encode a deliver_sm byte for byte as smpplib does, receipt TLVs in smpplib's order."""
    if len(short_message) > 254:
        raise PduError("short_message longer than 254 octets")
    tlv = b""
    if network_error_code:
        tlv += struct.pack(">HH", TAG_NETWORK_ERROR_CODE, 3) + network_error_code
    if message_state is not None:
        tlv += struct.pack(">HHB", TAG_MESSAGE_STATE, 1, message_state)
    if receipted_message_id:
        rid = receipted_message_id.encode() + b"\0"
        tlv += struct.pack(">HH", TAG_RECEIPTED_MESSAGE_ID, len(rid)) + rid
    body = b"".join(
        (
            b"\0\0\0",
            _cstr(source_addr),
            b"\0\0",
            _cstr(destination_addr),
            bytes((esm_class, 0, 0, 0, 0, 0, 0, data_coding, 0, len(short_message))),
            short_message,
            tlv,
        )
    )
    return HEADER.pack(HEADER_LEN + len(body), DELIVER_SM, 0, sequence) + body


def decode_deliver_sm(data: bytes) -> DeliverSm:
    """Decode a whole deliver_sm PDU; unknown TLVs are kept, not refused."""
    sequence, (st, s_ton, s_npi, src, d_ton, d_npi, dst, esm, _vp, reg, dc, sm, tlvs) = _sm_values(
        bytes(data), DELIVER_SM
    )
    return DeliverSm(sequence, src, dst, esm, dc, sm, tlvs, s_ton, s_npi, d_ton, d_npi, reg, st)


def encode_resp(command_id: int, sequence: int, status: int = 0, message_id: str = "") -> bytes:
    """Encode submit_sm_resp / deliver_sm_resp (message_id body) as smpplib does."""
    body = _cstr(message_id)
    return HEADER.pack(HEADER_LEN + len(body), command_id, status, sequence) + body


def decode_resp(data: bytes) -> tuple[int, int, str]:
    """Decode a submit_sm_resp / deliver_sm_resp into (status, sequence, message_id)."""
    length, _cid, status, sequence = header(data)
    if length != len(data):
        raise PduError("length mismatch")
    if length == HEADER_LEN:
        return status, sequence, ""
    r = _Reader(data, HEADER_LEN, length)
    return status, sequence, r.cstr(66)


def encode_other(name: str, *, sequence: int, status: int = 0, **fields: Any) -> bytes:
    """Encode a rare PDU (bind, enquire_link, unbind, generic_nack and their resps) with smpplib."""
    pdu = _smpplib.make_pdu(name, client=_PARSE_CLIENT, sequence=sequence, status=status, **fields)
    pdu.sequence = sequence
    data: bytes = pdu.generate()
    return data


class _Sequence:
    """Stands in for smpplib's client: parse_pdu asks it for a sequence it then overwrites."""

    sequence = 0

    def next_sequence(self) -> int:
        return 0


_PARSE_CLIENT = _Sequence()


def decode_other(data: bytes) -> Any:
    """Decode a rare PDU with smpplib; string fields come back as bytes."""
    try:
        pdu = _smpplib.parse_pdu(data, client=_PARSE_CLIENT, allow_unknown_opt_params=True)
    except (
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        struct.error,
        _smpplib_exc.UnknownCommandError,
    ) as exc:
        raise PduError(f"undecodable PDU: {exc!r}") from exc
    if pdu is None:
        raise PduError("unknown command_id")
    return pdu


def command_name(command_id: int) -> str:
    """Name of a command id for logs."""
    return _NAMES.get(command_id, f"0x{command_id:08x}")


class SequenceGenerator:
    """Sequence numbers 1..0x7FFFFFFF, wrapping, one generator per session."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> int:
        """Return the next sequence number."""
        self._next = self._next % MAX_SEQUENCE + 1
        return self._next


class Framer:
    """Cuts a byte stream into whole PDUs; raises PduError on an impossible length."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes and return every whole PDU now available."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (length,) = struct.unpack_from(">I", buf, pos)
            if length < HEADER_LEN or length > MAX_PDU_LEN:
                raise PduError(f"impossible command_length {length}")
            if n - pos < length:
                break
            out.append(bytes(buf[pos : pos + length]))
            pos += length
        if pos:
            del buf[:pos]
        return out
