"""SMPP 3.4 SMSC simulator: binds ESMEs, answers submit_sm, sends receipts, misbehaves on demand.

It counts what it receives so tests can prove that nobody got a message twice or none, and that a
rate was held: `messages` (full messages per destination, concatenated parts reassembled),
`segments` (accepted submit_sm per destination), `per_second` (accepted submit_sm per one-second
window since start). A message counts when its submit_sm_resp ESME_ROK is sent; submits pending an
answer when the connection drops are not counted, so the ESME's resubmission is the only copy.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from gateways.smpp import pdu as P
from gateways.smpp.gsm import ESM_UDHI, decode_payload, split_udh
from gateways.smpp.receipts import (
    TLV_BY_STATE,
    ReceiptState,
    format_receipt_stamped,
    receipt_stamp,
)
from gateways.smpp.wire import PduProtocol
from simulators.smsc.config import SmscConfig

log = logging.getLogger(__name__)

ROK = 0x00
RINVBNDSTS = 0x04
RALYBND = 0x05
RINVPASWD = 0x0E
RINVSYSID = 0x0F
RMSGQFUL = 0x14
RTHROTTLED = 0x58
RINVCMDID = 0x03
RINVEXPIRY = 0x62  # ESME_RINVEXPIRY: invalid (here: already past) validity period


@dataclass(slots=True)
class _Receipt:
    message_id: str
    source: str
    destination: str
    state: ReceiptState
    submitted: str  # submit date as the receipt text writes it (YYMMDDhhmm)
    handle: asyncio.Handle | None = None


@dataclass(slots=True)
class _Parts:
    numbers: set[int] = field(default_factory=set)
    texts: dict[int, str] = field(default_factory=dict)


class _SmscSession(PduProtocol):
    """One ESME connection."""

    def __init__(self, sim: SmscSimulator) -> None:
        super().__init__()
        self.sim = sim
        self.bound: str | None = None  # bind command name once bound
        self.seq = P.SequenceGenerator()
        #: sequence -> scheduled submit_sm_resp not yet sent.
        self.unanswered: dict[int, tuple[asyncio.TimerHandle, _Receipt | None]] = {}
        #: deliver_sm sequence -> receipt waiting for deliver_sm_resp.
        self.unacked: dict[int, _Receipt] = {}

    @property
    def receives(self) -> bool:
        return self.bound in ("bind_transceiver", "bind_receiver")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.sim.sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sim.sessions.discard(self)
        self.sim._held_unbinds = [h for h in self.sim._held_unbinds if h[0] is not self]
        for handle, receipt in self.unanswered.values():
            handle.cancel()
            if receipt is not None and receipt.handle is not None:
                receipt.handle.cancel()
        self.unanswered.clear()
        for receipt in self.unacked.values():
            self.sim._queue_receipt(receipt)
        self.unacked.clear()
        self.sim._notify()

    def on_garbage(self, exc: P.PduError) -> None:
        log.warning("%s: garbage from ESME: %s", self.sim.config.name, exc)
        self.send(P.encode_other("generic_nack", sequence=0, status=0x02))
        self.close()

    def on_pdu(self, raw: bytes) -> None:
        _len, cid, status, seq = P.header(raw)
        sim = self.sim
        if sim.frozen:
            return
        if cid in P.BIND_COMMANDS:
            self.on_bind(raw, cid, seq)
            return
        if sim.hung:
            return
        if cid == P.SUBMIT_SM:
            self.on_submit(raw, seq)
        elif cid == P.DELIVER_SM_RESP:
            receipt = self.unacked.pop(seq, None)
            if receipt is None:
                return
            if status == ROK:
                sim.receipts_acked[receipt.state.value] += 1
            else:
                sim.receipts_refused[status] += 1
                receipt.handle = self.loop.call_later(
                    sim.config.receipt_retry_s, sim._send_receipt, receipt
                )
            sim._notify()
        elif cid == P.ENQUIRE_LINK:
            sim.enquire_links += 1
            self.send(P.encode_other("enquire_link_resp", sequence=seq))
            sim._notify()
        elif cid == P.UNBIND:
            sim.unbinds_received += 1
            sim._held_unbinds.append((self, seq))
            if len(sim._held_unbinds) >= sim.config.unbind_barrier:
                held, sim._held_unbinds = sim._held_unbinds, []
                for session, sequence in held:
                    session.answer_unbind(sequence)
            sim._notify()
        elif cid & P.RESP:
            return
        else:
            self.send(P.encode_other("generic_nack", sequence=seq, status=RINVCMDID))

    def answer_unbind(self, seq: int) -> None:
        """Answer an unbind and close the session."""
        self.send(P.encode_other("unbind_resp", sequence=seq))
        self.sim.unbinds += 1
        self.bound = None
        self.close()

    def on_bind(self, raw: bytes, cid: int, seq: int) -> None:
        req = P.decode_other(raw)
        name = P.command_name(cid)
        cfg = self.sim.config
        if self.bound is not None:
            status = RALYBND
        elif (req.system_id or b"").decode("latin-1") != cfg.system_id:
            status = RINVSYSID
        elif (req.password or b"").decode("latin-1") != cfg.password:
            status = RINVPASWD
        else:
            status = ROK
        self.send(
            P.encode_other(f"{name}_resp", sequence=seq, status=status, system_id=cfg.name[:15])
        )
        if status == ROK:
            self.bound = name
            self.sim.binds += 1
            self.sim.peak_bound = max(self.sim.peak_bound, self.sim.bound_sessions)
            if self.receives:
                self.sim._flush_receipts()
            self.sim._notify()

    def on_submit(self, raw: bytes, seq: int) -> None:
        sim = self.sim
        cfg = sim.config
        pdu = P.decode_submit_sm(raw)
        sim.submit_pdus += 1
        n = sim.submit_pdus
        if sim.drop_after is not None and n >= sim.drop_after:
            sim.drop_after = None
            self.abort()
            return
        if sim.garbage_after is not None and n >= sim.garbage_after:
            sim.garbage_after = None
            self.send(sim.garbage())
            return
        if cfg.generic_nack_share and sim._rng.random() < cfg.generic_nack_share:
            self.send(P.encode_other("generic_nack", sequence=seq, status=RINVCMDID))
            sim.statuses[RINVCMDID] += 1
            sim._notify()
            return
        status = sim._decide(self, pdu)
        if pdu.validity_period and status == ROK and _past(pdu.validity_period):
            # A message whose validity ended before it arrived: an SMSC refuses it, and the
            # count shows that somebody handed over a stale alert.
            sim.stale_submits += 1
            status = RINVEXPIRY
        receipt: _Receipt | None = None
        mid = ""
        if status == ROK:
            mid = sim._next_id()
            if pdu.registered_delivery & 0x03:
                receipt = sim._schedule_receipt(mid, pdu)
        if cfg.submit_latency_s <= 0 or status != ROK:
            self.answer(seq, status, mid, pdu)
            return
        loop = asyncio.get_running_loop()
        handle = loop.call_later(cfg.submit_latency_s, self.answer, seq, status, mid, pdu)
        self.unanswered[seq] = (handle, receipt)

    def answer(self, seq: int, status: int, mid: str, pdu: P.SubmitSm) -> None:
        self.unanswered.pop(seq, None)
        self.send(P.encode_resp(P.SUBMIT_SM_RESP, seq, status, mid))
        self.sim.statuses[status] += 1
        if status == ROK:
            self.sim._count(pdu)
        self.sim._notify()


def _receipt_id(mid: str, fmt: str) -> str:
    """The id of `mid` (lower-case hex) as receipts write it in format `fmt`."""
    if fmt == "decimal":
        return str(int(mid, 16))
    if fmt == "hex_padded":
        return f"{int(mid, 16):010X}"
    if fmt == "same":
        return mid
    raise ValueError(f"receipt_id_format {fmt!r}: expected same, decimal or hex_padded")


def _past(validity: str) -> bool:
    """Whether an absolute SMPP time ("YYMMDDhhmmsstnnp") lies in the past; relative: never."""
    if len(validity) != 16 or validity[15] == "R":
        return False
    stamp = calendar.timegm(time.strptime(validity[:12], "%y%m%d%H%M%S"))
    offset = int(validity[13:15]) * 900 * (-1 if validity[15] == "-" else 1)
    return stamp - offset + int(validity[12]) / 10 < time.time()


class SmscSimulator:
    """An SMSC on 127.0.0.1 for tests and benchmarks; see SmscConfig for its behaviour."""

    def __init__(self, config: SmscConfig | None = None) -> None:
        self.config = config or SmscConfig()
        if self.config.host not in ("127.0.0.1", "localhost"):
            raise ValueError("the simulator binds loopback only")
        self._rng = random.Random(self.config.seed)
        self._server: asyncio.Server | None = None
        self.sessions: set[_SmscSession] = set()
        self.port = 0
        self.hung = self.config.hang  #: when True nothing but binds is answered
        #: When True nothing at all is answered, binds included, and connections stay open (an
        #: SMSC that hangs without closing: `freeze`, `thaw`).
        self.frozen = False
        self.drop_after = self.config.drop_after_submits
        self.garbage_after = self.config.garbage_after_submits
        self._ids = 0
        self._start = 0.0
        self._window_second = -1
        self._window_count = 0
        self._parts: dict[tuple[str, str, int, int], _Parts] = {}
        self._receipt_queue: deque[_Receipt] = deque()
        #: Receipts to send in the next loop turn (receipt_delay_s and submit_latency_s 0).
        self._soon: list[_Receipt] = []
        self._stamp_minute = -1
        self._stamp_text = ""
        self._changed: asyncio.Event | None = None
        #: Full messages accepted per destination (concatenated parts reassembled).
        self.messages: Counter[str] = Counter()
        #: Accepted submit_sm per destination (raw PDUs).
        self.segments: Counter[str] = Counter()
        #: Accepted submit_sm per one-second window since start.
        self.per_second: Counter[int] = Counter()
        #: submit_sm_resp sent, by command status.
        self.statuses: Counter[int] = Counter()
        #: deliver_sm receipts sent and acknowledged, by stat text.
        self.receipts_sent: Counter[str] = Counter()
        self.receipts_acked: Counter[str] = Counter()
        #: deliver_sm_resp with an error status, by status (the receipt is sent again).
        self.receipts_refused: Counter[int] = Counter()
        #: Reassembled texts per destination, when config.keep_texts.
        self.texts: dict[str, list[str]] = {}
        self.submit_pdus = 0  #: every submit_sm received, answered or not
        self.stale_submits = 0  #: submit_sm that arrived after their validity period ended
        self.binds = 0  #: successful binds
        self.peak_bound = 0  #: most sessions bound at once (an operator's session limit)
        self.unbinds = 0  #: unbinds answered
        self.unbinds_received = 0  #: unbinds received, answered or held (unbind_barrier)
        #: Unbinds waiting for unbind_barrier: (session, sequence).
        self._held_unbinds: list[tuple[_SmscSession, int]] = []
        self.enquire_links = 0  #: enquire_link received
        #: Wall-clock arrival times of full messages per destination (config.arrivals_file only).
        self.arrivals: dict[str, list[float]] | None = {} if self.config.arrivals_file else None

    async def start(self) -> int:
        """Listen and return the port."""
        loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._start = loop.time()
        self._server = await loop.create_server(
            lambda: _SmscSession(self), self.config.host, self.config.port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("%s: listening on %s:%d", self.config.name, self.config.host, self.port)
        return self.port

    async def stop(self) -> None:
        """Close every session and stop listening."""
        if self._server is not None:
            self._server.close()
        for s in list(self.sessions):
            s.abort()
        if self._server is not None:
            await self._server.wait_closed()
        self._server = None

    @property
    def bound_sessions(self) -> int:
        """Sessions currently bound."""
        return sum(1 for s in self.sessions if s.bound is not None)

    def drop_connections(self) -> None:
        """Drop every connection now, without unbind."""
        for s in list(self.sessions):
            s.abort()

    def unbind_all(self) -> None:
        """Send unbind to every bound session (an SMSC going into maintenance)."""
        for s in list(self.sessions):
            if s.bound is not None:
                s.send(P.encode_other("unbind", sequence=s.seq()))

    def freeze(self) -> None:
        """Hang without closing: accept connections, keep them open, answer nothing (binds and
        enquire_link included) and send no receipts, until `thaw`."""
        self.frozen = True
        self.hung = True

    def thaw(self) -> None:
        """Answer again (what arrived while frozen stays unanswered) and send held receipts."""
        self.frozen = False
        self.hung = self.config.hang
        if not self.hung:
            self._flush_receipts()

    def send_garbage_now(self) -> None:
        """Write bytes that are not SMPP to every session."""
        for s in list(self.sessions):
            s.send(self.garbage())

    def garbage(self) -> bytes:
        """An impossible PDU: a huge command_length followed by noise."""
        return b"\xde\xad\xbe\xef" + self._rng.randbytes(60)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until predicate() holds, re-checking after every counter change."""
        assert self._changed is not None, "start() first"
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _next_id(self) -> str:
        self._ids += 1
        return f"{self._ids:x}"

    def _decide(self, session: _SmscSession, pdu: P.SubmitSm) -> int:
        cfg = self.config
        if session.bound not in ("bind_transceiver", "bind_transmitter"):
            return RINVBNDSTS
        if len(session.unanswered) >= cfg.window:
            return RMSGQFUL
        if cfg.max_rate is not None:
            second = int(asyncio.get_running_loop().time() - self._start)
            if second != self._window_second:
                self._window_second = second
                self._window_count = 0
            if self._window_count >= cfg.max_rate:
                return RTHROTTLED
            self._window_count += 1
        if cfg.permanent_failure_share and self._rng.random() < cfg.permanent_failure_share:
            return cfg.permanent_failure_status
        if cfg.temporary_failure_share and self._rng.random() < cfg.temporary_failure_share:
            return cfg.temporary_failure_status
        return ROK

    def _count(self, pdu: P.SubmitSm) -> None:
        dest = pdu.destination_addr
        # get() + 1, not Counter's += : every destination is new, and Counter.__missing__ is a
        # Python call per message.
        segments = self.segments
        segments[dest] = segments.get(dest, 0) + 1
        self.per_second[int(asyncio.get_running_loop().time() - self._start)] += 1
        if not pdu.esm_class & ESM_UDHI:
            messages = self.messages
            messages[dest] = messages.get(dest, 0) + 1
            if self.arrivals is not None:
                self.arrivals.setdefault(dest, []).append(time.time())
            if self.config.keep_texts:
                text = decode_payload(pdu.data_coding, pdu.short_message)
                self.texts.setdefault(dest, []).append(text)
            return
        try:
            concat, body = split_udh(pdu.short_message)
        except ValueError:
            log.warning("%s: unreadable UDH to %s counted as one message", self.config.name, dest)
            concat = None
        if concat is None:
            self.messages[dest] += 1
            if self.arrivals is not None:
                self.arrivals.setdefault(dest, []).append(time.time())
            return
        key = (pdu.source_addr, dest, concat.reference, concat.total)
        parts = self._parts.setdefault(key, _Parts())
        parts.numbers.add(concat.number)
        if self.config.keep_texts:
            parts.texts[concat.number] = decode_payload(pdu.data_coding, body)
        if len(parts.numbers) >= concat.total:
            del self._parts[key]
            self.messages[dest] += 1
            if self.arrivals is not None:
                self.arrivals.setdefault(dest, []).append(time.time())
            if self.config.keep_texts:
                text = "".join(parts.texts[i] for i in sorted(parts.texts))
                self.texts.setdefault(dest, []).append(text)

    def _schedule_receipt(self, mid: str, pdu: P.SubmitSm) -> _Receipt:
        cfg = self.config
        draw = self._rng.random()
        if draw < cfg.undeliverable_share:
            state = ReceiptState.UNDELIVERABLE
        elif draw < cfg.undeliverable_share + cfg.expired_share:
            state = ReceiptState.EXPIRED
        else:
            state = ReceiptState.DELIVERED
        receipt = _Receipt(
            _receipt_id(mid, cfg.receipt_id_format),
            pdu.source_addr,
            pdu.destination_addr,
            state,
            self._stamp(),
        )
        loop = asyncio.get_running_loop()
        if cfg.receipt_delay_s <= 0 and cfg.submit_latency_s <= 0:
            # Answered at once, so nothing cancels the receipt: one callback per loop turn sends
            # the receipts of every submit the turn accepted, not a callback per receipt.
            if not self._soon:
                loop.call_soon(self._send_soon)
            self._soon.append(receipt)
        elif cfg.receipt_delay_s <= 0:
            receipt.handle = loop.call_soon(self._send_receipt, receipt)
        else:
            receipt.handle = loop.call_later(cfg.receipt_delay_s, self._send_receipt, receipt)
        return receipt

    def _stamp(self) -> str:
        """Local time as a receipt writes it; formatted once a minute, not once a message."""
        now = time.time()
        minute = int(now // 60)
        if minute != self._stamp_minute:
            self._stamp_minute = minute
            self._stamp_text = receipt_stamp(datetime.fromtimestamp(now))
        return self._stamp_text

    def _receiver(self) -> _SmscSession | None:
        for s in self.sessions:
            if s.receives and s.writable:
                return s
        return None

    def _send_receipt(self, receipt: _Receipt) -> None:
        receipt.handle = None
        session = self._receiver()
        if session is None or self.hung:
            self._queue_receipt(receipt)
            return
        seq = session.seq()
        text = format_receipt_stamped(
            message_id=receipt.message_id,
            state=receipt.state,
            submit_stamp=receipt.submitted,
            done_stamp=self._stamp(),
            error_code=0 if receipt.state is ReceiptState.DELIVERED else 1,
        )
        session.unacked[seq] = receipt
        tlvs = self.config.receipt_tlvs
        session.send(
            P.encode_deliver_sm(
                sequence=seq,
                source_addr=receipt.destination,
                destination_addr=receipt.source,
                short_message=text.encode("latin-1"),
                esm_class=P.ESM_DELIVERY_RECEIPT,
                message_state=TLV_BY_STATE[receipt.state] if tlvs else None,
                receipted_message_id=receipt.message_id if tlvs else None,
            )
        )
        self.receipts_sent[receipt.state.value] += 1

    def _send_soon(self) -> None:
        batch, self._soon = self._soon, []
        for receipt in batch:
            self._send_receipt(receipt)

    def _queue_receipt(self, receipt: _Receipt) -> None:
        self._receipt_queue.append(receipt)

    def _flush_receipts(self) -> None:
        queue, self._receipt_queue = self._receipt_queue, deque()
        for receipt in queue:
            self._send_receipt(receipt)
