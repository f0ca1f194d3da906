"""The ESME session never raises on what an SMSC sends: it answers, or drops the session."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateways.smpp import pdu as P
from gateways.smpp.receipts import DeliveryReceipt
from gateways.smpp.session import Session


class FakeTransport(asyncio.Transport):
    """Collects writes; remembers whether the session closed or aborted it."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.aborted = False
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.aborted or self.closed

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True


pdu_like = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda cid, status, seq, body: P.HEADER.pack(16 + len(body), cid, status, seq) + body,
        st.sampled_from(
            [P.SUBMIT_SM_RESP, P.DELIVER_SM, P.ENQUIRE_LINK, P.UNBIND, P.GENERIC_NACK, 0x103, 0x4]
        ),
        st.integers(0, 0xFF),
        st.integers(0, 5),
        st.binary(max_size=120),
    ),
)


async def _feed(chunks: list[bytes]) -> tuple[Session, FakeTransport, list[DeliveryReceipt]]:
    receipts: list[DeliveryReceipt] = []
    session = Session(name="fuzz", on_receipt=receipts.append)
    transport = FakeTransport()
    session.connection_made(transport)
    futures = [session.request(P.encode_other("enquire_link", sequence=s), s) for s in (1, 2, 3)]
    for chunk in chunks:
        session.data_received(chunk)
    await asyncio.sleep(0)  # let the coalesced write happen
    if not session.is_open:
        assert all(f.done() for f in futures)
        assert transport.aborted or transport.closed
    return session, transport, receipts


@settings(max_examples=200, deadline=None)
@given(st.lists(pdu_like, max_size=5))
def test_any_bytes_from_the_smsc_never_raise(chunks: list[bytes]) -> None:
    asyncio.run(_feed(chunks))


def test_receipt_is_acknowledged() -> None:
    raw = P.encode_deliver_sm(
        sequence=9,
        source_addr="32470000001",
        destination_addr="TOCSIN",
        short_message=b"id:abc sub:001 dlvrd:001 submit date:2611221200 done date:2611221201"
        b" stat:DELIVRD err:000",
        esm_class=P.ESM_DELIVERY_RECEIPT,
    )
    session, transport, receipts = asyncio.run(_feed([raw[:10], raw[10:]]))
    assert [r.message_id for r in receipts] == ["abc"]
    *_enquire_links, ack = P.Framer().feed(bytes(transport.written))
    assert P.header(ack)[1] == P.DELIVER_SM_RESP
    assert P.decode_resp(ack) == (0, 9, "")
    assert session.is_open


def test_garbage_drops_the_session() -> None:
    session, transport, _ = asyncio.run(_feed([b"\xde\xad\xbe\xef" + bytes(40)]))
    assert not session.is_open
    assert transport.aborted
