"""Hand-written hot PDU codecs against smpplib: identical bytes both ways; garbage never crashes."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smpplib import smpp

from gateways.smpp import pdu as P


class _Seq:
    sequence = 0

    def next_sequence(self) -> int:
        return 0


CLIENT = _Seq()
cstr = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
octet = st.integers(0, 255)
seq = st.integers(1, P.MAX_SEQUENCE)
short_message = st.binary(max_size=254)


def _smpplib(name: str, sequence: int, **fields: Any) -> bytes:
    pdu = smpp.make_pdu(name, client=CLIENT, **fields)
    pdu.sequence = sequence
    data: bytes = pdu.generate()
    return data


@given(
    seq,
    cstr,
    cstr,
    short_message,
    octet,
    octet,
    octet,
    octet,
    octet,
    octet,
    octet,
    st.text(alphabet="ACMTWPV", max_size=5),
)
def test_submit_sm_same_bytes_as_smpplib(
    sequence: int,
    src: str,
    dst: str,
    sm: bytes,
    s_ton: int,
    s_npi: int,
    d_ton: int,
    d_npi: int,
    esm: int,
    reg: int,
    dc: int,
    service: str,
) -> None:
    ours = P.encode_submit_sm(
        P.SubmitSm(
            sequence=sequence,
            source_addr=src,
            destination_addr=dst,
            short_message=sm,
            source_addr_ton=s_ton,
            source_addr_npi=s_npi,
            dest_addr_ton=d_ton,
            dest_addr_npi=d_npi,
            esm_class=esm,
            registered_delivery=reg,
            data_coding=dc,
            service_type=service,
        )
    )
    theirs = _smpplib(
        "submit_sm",
        sequence,
        service_type=service,
        source_addr_ton=s_ton,
        source_addr_npi=s_npi,
        source_addr=src,
        dest_addr_ton=d_ton,
        dest_addr_npi=d_npi,
        destination_addr=dst,
        esm_class=esm,
        registered_delivery=reg,
        data_coding=dc,
        short_message=sm,
    )
    assert ours == theirs
    back = P.decode_submit_sm(ours)
    assert (back.sequence, back.source_addr, back.destination_addr, back.short_message) == (
        sequence,
        src,
        dst,
        sm,
    )
    assert (back.esm_class, back.registered_delivery, back.data_coding) == (esm, reg, dc)
    parsed = smpp.parse_pdu(ours, client=CLIENT)
    assert parsed.destination_addr == dst.encode()
    assert parsed.short_message == (sm or None)


@given(
    seq,
    cstr,
    cstr,
    short_message,
    octet,
    octet,
    st.one_of(st.none(), st.integers(1, 8)),
    st.one_of(st.none(), st.text(alphabet="0123456789abcdef", min_size=1, max_size=64)),
    st.one_of(st.none(), st.binary(min_size=3, max_size=3).filter(any)),
)
def test_deliver_sm_same_bytes_as_smpplib(
    sequence: int,
    src: str,
    dst: str,
    sm: bytes,
    esm: int,
    dc: int,
    state: int | None,
    rid: str | None,
    nec: bytes | None,
) -> None:
    ours = P.encode_deliver_sm(
        sequence=sequence,
        source_addr=src,
        destination_addr=dst,
        short_message=sm,
        esm_class=esm,
        data_coding=dc,
        message_state=state,
        receipted_message_id=rid,
        network_error_code=nec,
    )
    fields: dict[str, Any] = {
        "source_addr": src,
        "destination_addr": dst,
        "short_message": sm,
        "esm_class": esm,
        "data_coding": dc,
    }
    if state is not None:
        fields["message_state"] = state
    if rid is not None:
        fields["receipted_message_id"] = rid
    if nec is not None:
        fields["network_error_code"] = nec
    assert ours == _smpplib("deliver_sm", sequence, **fields)
    back = P.decode_deliver_sm(ours)
    assert (back.sequence, back.source_addr, back.destination_addr) == (sequence, src, dst)
    assert (back.short_message, back.esm_class, back.data_coding) == (sm, esm, dc)
    if state is not None:
        assert back.tlvs[P.TAG_MESSAGE_STATE] == bytes([state])
    if rid is not None:
        assert back.tlvs[P.TAG_RECEIPTED_MESSAGE_ID] == rid.encode() + b"\0"


@given(seq, st.integers(0, 0xFFFF), st.text(alphabet="0123456789abcdef", max_size=64))
@pytest.mark.parametrize("name", ["submit_sm_resp", "deliver_sm_resp"])
def test_resps_same_bytes_as_smpplib(name: str, sequence: int, status: int, mid: str) -> None:
    command_id = P.SUBMIT_SM_RESP if name == "submit_sm_resp" else P.DELIVER_SM_RESP
    if name == "deliver_sm_resp":
        mid = ""
    ours = P.encode_resp(command_id, sequence, status, mid)
    assert ours == _smpplib(name, sequence, status=status, message_id=mid)
    assert P.decode_resp(ours) == (status, sequence, mid)


@given(seq, cstr.filter(bool), cstr, cstr)
def test_other_pdus_round_trip_through_smpplib(
    sequence: int, system_id: str, password: str, system_type: str
) -> None:
    data = P.encode_other(
        "bind_transceiver",
        sequence=sequence,
        system_id=system_id[:15],
        password=password[:8],
        system_type=system_type[:12],
    )
    pdu = P.decode_other(data)
    assert pdu.sequence == sequence
    assert pdu.system_id == system_id[:15].encode()
    for name in ("enquire_link", "enquire_link_resp", "unbind", "unbind_resp", "generic_nack"):
        assert P.header(P.encode_other(name, sequence=sequence))[3] == sequence


@given(st.binary(max_size=300))
def test_garbage_only_raises_pdu_error(data: bytes) -> None:
    framer = P.Framer()
    try:
        frames = framer.feed(data)
    except P.PduError:
        return
    for raw in frames:
        for decode in (P.decode_submit_sm, P.decode_deliver_sm, P.decode_resp, P.decode_other):
            with contextlib.suppress(P.PduError):
                decode(raw)


@given(st.binary(min_size=0, max_size=200), st.integers(P.SUBMIT_SM, P.DELIVER_SM))
def test_garbage_bodies_only_raise_pdu_error(body: bytes, command_id: int) -> None:
    raw = P.HEADER.pack(16 + len(body), command_id, 0, 1) + body
    for decode in (P.decode_submit_sm, P.decode_deliver_sm, P.decode_resp, P.decode_other):
        with contextlib.suppress(P.PduError):
            decode(raw)


def test_framer_handles_split_and_joined_pdus() -> None:
    a = P.encode_other("enquire_link", sequence=1)
    b = P.encode_resp(P.SUBMIT_SM_RESP, 2, 0, "abc")
    framer = P.Framer()
    stream = a + b
    got: list[bytes] = []
    for i in range(0, len(stream), 5):
        got += framer.feed(stream[i : i + 5])
    assert got == [a, b]


def _reference_sm_fields(data: bytes, command_id: int) -> dict[str, Any]:
    """The cursor-based reader the hot decoders replaced, kept as their reference."""
    length, cid, _status, sequence = P.header(data)
    if cid != command_id or length != len(data):
        raise P.PduError("unexpected command or length")
    r = P._Reader(data, P.HEADER_LEN, length)
    f: dict[str, Any] = {"sequence": sequence}
    f["service_type"] = r.cstr(6)
    f["source_addr_ton"] = r.u8()
    f["source_addr_npi"] = r.u8()
    f["source_addr"] = r.cstr(21)
    f["dest_addr_ton"] = r.u8()
    f["dest_addr_npi"] = r.u8()
    f["destination_addr"] = r.cstr(21)
    f["esm_class"] = r.u8()
    r.u8()
    r.u8()
    r.cstr(17)
    r.cstr(17)
    f["registered_delivery"] = r.u8()
    r.u8()
    f["data_coding"] = r.u8()
    r.u8()
    f["short_message"] = r.octets(r.u8())
    f["tlvs"] = r.tlvs()
    return f


def _fields_of(pdu: P.SubmitSm | P.DeliverSm) -> dict[str, Any]:
    names = [
        "sequence",
        "service_type",
        "source_addr_ton",
        "source_addr_npi",
        "source_addr",
        "dest_addr_ton",
        "dest_addr_npi",
        "destination_addr",
        "esm_class",
        "registered_delivery",
        "data_coding",
        "short_message",
        "tlvs",
    ]
    return {name: getattr(pdu, name) for name in names}


sm_body = st.one_of(
    st.binary(max_size=120),
    st.builds(
        lambda head, sm, tail: head + bytes([len(sm)]) + sm + tail,
        st.binary(max_size=60).map(lambda b: b.replace(b"\xff", b"\0")),
        st.binary(max_size=40),
        st.binary(max_size=20),
    ),
)


@given(sm_body, st.sampled_from([P.SUBMIT_SM, P.DELIVER_SM]), seq)
def test_straight_line_decoders_match_the_cursor_reader(
    body: bytes, command_id: int, sequence: int
) -> None:
    raw = P.HEADER.pack(16 + len(body), command_id, 0, sequence) + body
    decode = P.decode_submit_sm if command_id == P.SUBMIT_SM else P.decode_deliver_sm
    try:
        expected = _reference_sm_fields(raw, command_id)
    except P.PduError:
        with pytest.raises(P.PduError):
            decode(raw)
        return
    assert _fields_of(decode(raw)) == expected


@given(
    seq,
    st.sampled_from(["", "261203154500000+", "991231235959900-", "000000010000000R"]),
)
def test_submit_sm_validity_period_is_encoded_as_smpplib_does(sequence: int, validity: str) -> None:
    ours = P.encode_submit_sm(
        P.SubmitSm(
            sequence=sequence,
            source_addr="BE-Alert",
            destination_addr="32470000001",
            short_message=b"stay inside",
            validity_period=validity,
        )
    )
    theirs = _smpplib(
        "submit_sm",
        sequence,
        source_addr="BE-Alert",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="32470000001",
        validity_period=validity or None,
        short_message=b"stay inside",
    )
    assert ours == theirs
    assert P.decode_submit_sm(ours).validity_period == validity
