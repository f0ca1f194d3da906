"""Delivery receipt reading: TLVs first, the appendix B text otherwise."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateways.smpp import pdu as P
from gateways.smpp.receipts import (
    STATE_BY_TLV,
    TLV_BY_STATE,
    DeliveryReceipt,
    ReceiptError,
    ReceiptState,
    _date,
    format_receipt_text,
    parse_receipt_text,
    receipt_from_deliver_sm,
)

dates = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0)
)
ids = st.text(alphabet="0123456789abcdefABCDEF-", min_size=1, max_size=40)


@given(ids, st.sampled_from(list(ReceiptState)), dates, dates, st.integers(0, 999))
def test_text_round_trip(
    mid: str, state: ReceiptState, sub: datetime, done: datetime, err: int
) -> None:
    text = format_receipt_text(
        message_id=mid, state=state, submit_date=sub, done_date=done, error_code=err
    )
    got_id, got_state, got_err, _ = parse_receipt_text(text)
    assert (got_id, got_state, got_err) == (mid, state, err)
    pdu = P.decode_deliver_sm(
        P.encode_deliver_sm(
            sequence=1,
            source_addr="32470000001",
            destination_addr="TOCSIN",
            short_message=text.encode("latin-1"),
            esm_class=P.ESM_DELIVERY_RECEIPT,
        )
    )
    receipt = receipt_from_deliver_sm(pdu)
    assert receipt.message_id == mid
    assert receipt.state is state
    assert receipt.submit_date == sub
    assert receipt.done_date == done


def _deliver(text: bytes, **tlv: object) -> P.DeliverSm:
    raw = P.encode_deliver_sm(
        sequence=3,
        source_addr="32470000001",
        destination_addr="TOCSIN",
        short_message=text,
        esm_class=P.ESM_DELIVERY_RECEIPT,
        **tlv,  # type: ignore[arg-type]
    )
    return P.decode_deliver_sm(raw)


def test_tlvs_win_over_text() -> None:
    pdu = _deliver(
        b"id:1234 sub:001 dlvrd:000 submit date:2611221200 done date:2611221201"
        b" stat:UNDELIV err:005",
        receipted_message_id="4d2",
        message_state=TLV_BY_STATE[ReceiptState.DELIVERED],
    )
    receipt = receipt_from_deliver_sm(pdu)
    assert receipt.message_id == "4d2"
    assert receipt.state is ReceiptState.DELIVERED
    assert receipt.error_code == 5


def test_lowercase_and_seconds_in_dates() -> None:
    pdu = _deliver(
        b"id:ab sub:1 dlvrd:1 submit date:261122120005 done date:261122120107 stat:delivrd"
    )
    receipt = receipt_from_deliver_sm(pdu)
    assert receipt.state is ReceiptState.DELIVERED
    assert receipt.done_date == datetime(2026, 11, 22, 12, 1, 7)
    assert receipt.error_code == 0


def test_receipt_without_id_is_refused() -> None:
    with pytest.raises(ReceiptError):
        receipt_from_deliver_sm(_deliver(b"stat:DELIVRD"))


def _eager_receipt(pdu: P.DeliverSm) -> tuple[object, ...]:
    """The reading before the TLV fast path: the text parsed for every receipt."""
    text = pdu.short_message.decode("latin-1")
    text_id, text_state, error_code, found = parse_receipt_text(text)
    message_id = text_id
    raw_id = pdu.tlvs.get(P.TAG_RECEIPTED_MESSAGE_ID)
    if raw_id:
        message_id = raw_id.rstrip(b"\0").decode("latin-1")
    state = text_state
    raw_state = pdu.tlvs.get(P.TAG_MESSAGE_STATE)
    if raw_state and raw_state[0] in STATE_BY_TLV:
        state = STATE_BY_TLV[raw_state[0]]
    raw_err = pdu.tlvs.get(P.TAG_NETWORK_ERROR_CODE)
    if raw_err and len(raw_err) == 3 and not found.get("err"):
        error_code = int.from_bytes(raw_err[1:3], "big")
    if not message_id or state is None:
        return ("error",)
    return (message_id, state, error_code, _date(found.get("submit")), _date(found.get("done")))


receipt_texts = st.one_of(
    st.builds(
        lambda mid, state, sub, done, err, tail: format_receipt_text(
            message_id=mid, state=state, submit_date=sub, done_date=done, error_code=err
        )[: len(tail) + 200],
        ids,
        st.sampled_from(list(ReceiptState)),
        dates,
        dates,
        st.integers(0, 999),
        st.text(max_size=3),
    ),
    st.text(alphabet="idstaterrsubmdon: 0123456789ABCDEFLVRX", max_size=80),
)


@given(
    receipt_texts,
    st.one_of(st.none(), st.integers(0, 9)),
    st.one_of(st.none(), st.text(alphabet="0123456789abcdef", max_size=12)),
    st.one_of(st.none(), st.binary(min_size=3, max_size=3).filter(any)),
)
def test_tlv_fast_path_reads_what_the_full_parse_reads(
    text: str, state: int | None, rid: str | None, nec: bytes | None
) -> None:
    pdu = _deliver(
        text.encode("latin-1"),
        message_state=state,
        receipted_message_id=rid,
        network_error_code=nec,
    )
    expected = _eager_receipt(pdu)
    try:
        receipt = receipt_from_deliver_sm(pdu)
    except ReceiptError:
        assert expected == ("error",)
        return
    got = (
        receipt.message_id,
        receipt.state,
        receipt.error_code,
        receipt.submit_date,
        receipt.done_date,
    )
    assert got == expected
    assert receipt == DeliveryReceipt(*got)
    assert hash(receipt) == hash(DeliveryReceipt(*got))
