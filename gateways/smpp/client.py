"""Asyncio SMPP 3.4 ESME client: binds, window, keepalive, reconnect, submit.

`SmppClient` keeps one bind_transceiver (or a bind_transmitter + bind_receiver pair) up to one
SMSC account, rebuilding it with exponential backoff and jitter whenever it drops. `submit` waits
for a bound session and for room in the window, sends one submit_sm per segment and reports a
`SubmitResult`: it never raises for an SMSC answer and never loses a message silently (a message
whose bind drops before its answer comes back as BIND_LOST).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from gateways.smpp import pdu as P
from gateways.smpp.errors import (
    OUTCOME_SEVERITY,
    BindRefusedError,
    CommandStatus,
    DeadLinkError,
    SessionError,
    SubmitOutcome,
    classify_status,
)
from gateways.smpp.gsm import encode_text
from gateways.smpp.ids import IdFormat, canonical
from gateways.smpp.receipts import DeliveryReceipt
from gateways.smpp.session import LOST, ReceiptHandler, Session

log = logging.getLogger(__name__)

#: SubmitResult.statuses value of a segment left out of a resubmission (accepted earlier).
NOT_SENT = -2
#: SubmitResult.statuses value of a segment the caller's `pace` withdrew before it was written.
WITHDRAWN = -3


class SessionGate(Protocol):
    """Held around every session of a bind: entered before it connects, left once it is closed.

    The caller's say on how many sessions may be open at once (an operator's session limit held
    across processes): entering may wait as long as it likes; the client connects only after it
    returned, and leaves it only after the connection is closed. Called with the link's name
    (`<bind>/<role>`), once per (re)bind.
    """

    def __call__(self, link: str, /) -> AbstractAsyncContextManager[object]: ...


class BindMode(StrEnum):
    """How a client binds to its SMSC account."""

    TRANSCEIVER = "transceiver"  #: one bind_transceiver carries submits and receipts
    PAIR = "pair"  #: a bind_transmitter for submits plus a bind_receiver for receipts


@dataclass(frozen=True, slots=True)
class BindConfig:
    """Settings of one SMPP bind (one SMSC account, one connection or pair)."""

    name: str  # bind name, used in logs and as a metrics label
    host: str  # SMSC host
    port: int  # SMSC port
    system_id: str  # account, at most 15 characters
    password: str  # at most 8 characters
    system_type: str = ""  # sent in the bind, often empty
    mode: BindMode = BindMode.TRANSCEIVER  # transceiver, or transmitter+receiver pair
    window: int = 10  # submit_sm outstanding at most without a response
    enquire_link_s: float = 30.0  # send enquire_link after this long without traffic
    dead_link_s: float = 90.0  # drop the bind after this long without any PDU from the SMSC
    # Drop the bind if a request (submit_sm, or an enquire_link) waits this long for its resp:
    # an SMSC that hangs without closing (issue 16) is left within seconds, not minutes.
    response_timeout_s: float = 5.0
    connect_timeout_s: float = 5.0  # TCP connect plus bind response
    reconnect_min_s: float = 1.0  # first reconnect delay (before jitter)
    # Cap of the exponential backoff: an SMSC back after a long outage is bound again within
    # seconds (issue 16: recovery within 10 s of a fault's end).
    reconnect_max_s: float = 5.0
    source_addr: str = ""  # originator used when a SubmitRequest has no source
    unbind_timeout_s: float = 5.0  # how long close() waits for outstanding resps and unbind_resp
    submit_id_format: IdFormat = IdFormat.TEXT  # how the SMSC writes ids in submit_sm_resp
    receipt_id_format: IdFormat = IdFormat.TEXT  # how it writes them in delivery receipts


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    """One text to one destination; `segments` limits a resubmission to the missing parts."""

    destination: str  # E.164, with or without '+'
    source: str = ""  # originator; empty means BindConfig.source_addr
    text: str = ""
    registered_delivery: bool = True  # ask the SMSC for a delivery receipt
    reference: int | None = None  # concatenation reference; None draws the client's next one
    segments: frozenset[int] | None = None  # 0-based segment indexes to send; None sends all
    #: Awaited before each submit_sm is written, once the bind is up and the window has room: the
    #: caller's rate limit, which operators count in PDUs (a text of N segments is N of them).
    #: Returning False withdraws the segment unsent (outcome WITHDRAWN): the caller's last word on
    #: a text that waited for a bind to come back while its alert was cancelled or expired.
    pace: Callable[[], Awaitable[bool | None]] | None = None
    #: Unix time after which the SMSC must not deliver the text any more (the alert's expiry),
    #: sent as the submit_sm's absolute validity_period; None leaves the SMSC's default.
    expires_at: float | None = None

    def retry(self, result: SubmitResult) -> SubmitRequest:
        """The request that resubmits only the segments `result` did not get accepted."""
        return SubmitRequest(
            destination=self.destination,
            source=self.source,
            text=self.text,
            registered_delivery=self.registered_delivery,
            reference=result.reference,
            segments=result.missing(),
            pace=self.pace,
            expires_at=self.expires_at,
        )


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """Outcome of one SubmitRequest; message_ids has one entry per segment ('' if not accepted)."""

    outcome: SubmitOutcome
    message_ids: list[str]
    command_status: int  # status of the worst segment (-1 when the bind was lost)
    reference: int = 0  # concatenation reference used, to resubmit missing segments
    statuses: list[int] = field(default_factory=list)  # per segment; -1 lost, -2 not in request

    def missing(self) -> frozenset[int]:
        """Indexes of the segments sent in this request that the SMSC did not accept."""
        if self.outcome is SubmitOutcome.ACCEPTED:
            return _NOTHING  # the worst segment was accepted: so was every one sent
        return frozenset(
            i for i, s in enumerate(self.statuses) if s not in (CommandStatus.ESME_ROK, NOT_SENT)
        )


_NOTHING: frozenset[int] = frozenset()
_ROK = int(CommandStatus.ESME_ROK)


def _source_addr(source: str) -> tuple[int, int, str]:
    """TON/NPI for an originator: international for digits, alphanumeric otherwise."""
    digits = source.removeprefix("+")
    if digits.isdigit():
        return 1, 1, digits
    return 5, 0, source


def _destination_addr(destination: str) -> tuple[int, int, str]:
    """TON/NPI for a recipient: international E.164 digits, or unknown (the SMSC judges)."""
    digits = destination.removeprefix("+")
    if digits.isdigit():
        return 1, 1, digits
    return 0, 0, destination


class _Link:
    """One role (transceiver, transmitter or receiver) kept bound by a reconnect loop."""

    def __init__(self, client: SmppClient, bind_command: str) -> None:
        self.client = client
        self.cfg = client.config
        self.bind_command = bind_command
        self.name = f"{self.cfg.name}/{bind_command.removeprefix('bind_')}"
        self.session: Session | None = None
        self.bound = asyncio.Event()
        self.last_error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        attempt = 0
        gate = self.client._session_gate
        while not self.client.closing:
            async with gate(self.name) if gate else contextlib.nullcontext():
                if self.client.closing:
                    break
                try:
                    session = await self._connect_and_bind()
                except (OSError, TimeoutError, SessionError) as exc:
                    self.last_error = exc
                    log.warning("%s: bind failed: %s", self.name, exc)
                else:
                    attempt = 0
                    await self._hold(session)
            if self.client.closing:
                break
            base = min(self.cfg.reconnect_max_s, self.cfg.reconnect_min_s * 2**attempt)
            attempt = min(attempt + 1, 30)
            delay = random.uniform(base / 2, base)
            log.info("%s: reconnecting in %.2fs", self.name, delay)
            await asyncio.sleep(delay)

    async def _hold(self, session: Session) -> None:
        """Keep a bound session up until it closes (the gate is left only after that)."""
        self.session = session
        self.bound.set()
        self.client._bind_changed()
        log.info("%s: bound to %s:%d", self.name, self.cfg.host, self.cfg.port)
        try:
            self.last_error = await self._keepalive(session)
        finally:
            if session.is_open:  # cancelled (client closing): no session outlives its gate
                session.drop(DeadLinkError(f"{self.name}: client stopped"))
            self.bound.clear()
            self.session = None
            self.client._bind_changed()

    async def _connect_and_bind(self) -> Session:
        loop = asyncio.get_running_loop()
        # Even a transmitter gets the handler: a receipt an SMSC sends there must not be lost.
        receipts = self.client._on_receipt
        async with asyncio.timeout(self.cfg.connect_timeout_s):
            _tr, session = await loop.create_connection(
                lambda: Session(name=self.name, on_receipt=receipts), self.cfg.host, self.cfg.port
            )
            try:
                seq = session.next_sequence()
                data = P.encode_other(
                    self.bind_command,
                    sequence=seq,
                    system_id=self.cfg.system_id,
                    password=self.cfg.password,
                    system_type=self.cfg.system_type,
                )
                _cid, status, _ = await session.request(data, seq)
            except BaseException:
                session.drop(DeadLinkError(f"{self.name}: bind interrupted"))
                raise
        if status == -1:
            raise session.closed.result()
        if status != CommandStatus.ESME_ROK:
            session.drop(BindRefusedError(f"{self.name}: bind refused", command_status=status))
            raise BindRefusedError(f"{self.name}: bind refused", command_status=status)
        return session

    async def _keepalive(self, session: Session) -> SessionError:
        cfg = self.cfg
        tick = max(0.01, min(cfg.enquire_link_s, cfg.dead_link_s, cfg.response_timeout_s) / 4)
        loop = asyncio.get_running_loop()
        enquire_sent = 0.0
        unanswered = 0.0  # when the first enquire_link not yet followed by any PDU was sent
        while session.is_open:
            await asyncio.wait([session.closed], timeout=tick)
            if not session.is_open:
                break
            now = loop.time()
            idle = now - session.last_rx
            if idle > cfg.dead_link_s:
                session.drop(DeadLinkError(f"{self.name}: nothing from SMSC for {idle:.1f}s"))
            elif session.oldest_pending_age() > cfg.response_timeout_s:
                session.drop(DeadLinkError(f"{self.name}: a request got no response in time"))
            elif unanswered > session.last_rx and now - unanswered > cfg.response_timeout_s:
                # The SMSC hangs without closing: not even enquire_link is answered.
                session.drop(DeadLinkError(f"{self.name}: enquire_link got no response in time"))
            elif idle >= cfg.enquire_link_s and now - enquire_sent >= cfg.enquire_link_s:
                enquire_sent = now
                if unanswered <= session.last_rx:  # the first enquire_link since the SMSC spoke
                    unanswered = now
                seq = session.next_sequence()
                session.send(P.encode_other("enquire_link", sequence=seq))
        return session.closed.result()

    async def unbind(self) -> None:
        """Wait briefly for outstanding responses, then unbind and close."""
        session = self.session
        if session is None or not session.is_open:
            return
        timeout = self.cfg.unbind_timeout_s
        try:
            async with asyncio.timeout(timeout):
                while session.pending and session.is_open:
                    await asyncio.wait(
                        [fut for fut, _ in session.pending.values()] + [session.closed],
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                if session.is_open:
                    seq = session.next_sequence()
                    await session.request(P.encode_other("unbind", sequence=seq), seq)
        except TimeoutError:
            log.warning("%s: unbind not answered within %.1fs", self.name, timeout)
        session.close()


class SmppClient:
    """An ESME bound to one SMSC account; submits texts and hands receipts to `on_receipt`.

    With a `session_gate`, every session (each link's, each rebind's) is opened inside it.
    """

    def __init__(
        self,
        config: BindConfig,
        *,
        on_receipt: ReceiptHandler | None = None,
        on_bind_state: Callable[[bool], None] | None = None,
        session_gate: SessionGate | None = None,
    ) -> None:
        self.config = config
        self._session_gate = session_gate
        self._on_receipt = on_receipt
        if on_receipt is not None and config.receipt_id_format is not IdFormat.TEXT:
            self._on_receipt = _canonical_receipts(on_receipt, config.receipt_id_format)
        self._submit_ids = config.submit_id_format
        self._on_bind_state = on_bind_state
        self.closing = False
        self._bound_state = False
        self._refs = itertools.count(random.randrange(256))
        self._window: asyncio.Semaphore | None = None
        self._closed = asyncio.Event()
        self._inflight = 0
        if config.mode is BindMode.PAIR:
            self._links = [_Link(self, "bind_transmitter"), _Link(self, "bind_receiver")]
        else:
            self._links = [_Link(self, "bind_transceiver")]
        self._tx = self._links[0]

    @property
    def is_bound(self) -> bool:
        """True while every link of this client is bound."""
        return all(link.bound.is_set() for link in self._links)

    @property
    def load(self) -> float:
        """Submits in progress (sent or waiting for window room) per window slot."""
        return self._inflight / self.config.window

    @property
    def outstanding(self) -> int:
        """submit_sm sent and not yet answered."""
        session = self._tx.session
        return len(session.pending) if session is not None else 0

    async def start(self) -> None:
        """Start binding in the background (returns at once; see wait_bound)."""
        self._window = asyncio.Semaphore(self.config.window)
        for link in self._links:
            link.task = asyncio.create_task(link.run(), name=link.name)

    async def wait_bound(self, timeout: float | None = None) -> None:
        """Wait until every link is bound; TimeoutError names the last bind error."""
        try:
            async with asyncio.timeout(timeout):
                for link in self._links:
                    await link.bound.wait()
        except TimeoutError as exc:
            errors = "; ".join(f"{lk.name}: {lk.last_error}" for lk in self._links)
            raise TimeoutError(f"{self.config.name} not bound: {errors}") from exc

    async def submit(self, req: SubmitRequest) -> SubmitResult:
        """Submit every segment; waits for bind and window room; never raises for SMSC answers."""
        self._inflight += 1
        try:
            return await self._submit(req)
        finally:
            self._inflight -= 1

    async def _submit(self, req: SubmitRequest) -> SubmitResult:
        source = req.source or self.config.source_addr
        ref = next(self._refs) & 0xFF if req.reference is None else req.reference
        encoded = encode_text(req.text, reference=ref)
        wanted = req.segments
        n = len(encoded.parts)
        src_ton, src_npi, src = _source_addr(source)
        dest_ton, dest_npi, dest = _destination_addr(req.destination)
        reg = 1 if req.registered_delivery else 0
        validity = "" if req.expires_at is None else smpp_time(req.expires_at)

        def segment(part: bytes) -> P.SubmitSm:
            return P.SubmitSm(
                sequence=0,
                source_addr=src,
                source_addr_ton=src_ton,
                source_addr_npi=src_npi,
                destination_addr=dest,
                dest_addr_ton=dest_ton,
                dest_addr_npi=dest_npi,
                esm_class=encoded.esm_class,
                registered_delivery=reg,
                data_coding=encoded.data_coding,
                short_message=part,
                validity_period=validity,
            )

        if n == 1 and (wanted is None or 0 in wanted):
            # One segment, the common case: no list of jobs, no gather, no ranking.
            status, mid = await self._submit_segment(segment(encoded.parts[0]), req.pace)
            ok = status == _ROK
            return SubmitResult(_outcome(status), [mid if ok else ""], status, ref, [status])
        jobs = [
            self._submit_segment(segment(part), req.pace)
            for i, part in enumerate(encoded.parts)
            if wanted is None or i in wanted
        ]
        answers = await asyncio.gather(*jobs) if len(jobs) != 1 else [await jobs[0]]
        ids = [""] * n
        statuses = [NOT_SENT] * n
        indexes = range(n) if wanted is None else sorted(i for i in wanted if i < n)
        for i, (status, mid) in zip(indexes, answers, strict=True):
            statuses[i] = status
            ids[i] = mid if status == CommandStatus.ESME_ROK else ""
        outcome, status = _worst(answers)
        return SubmitResult(outcome, ids, status, ref, statuses)

    async def submit_many(self, reqs: Sequence[SubmitRequest]) -> list[SubmitResult]:
        """Submit several requests concurrently (bounded by the window); results in order."""
        return list(await asyncio.gather(*(self.submit(r) for r in reqs)))

    async def _submit_segment(
        self, pdu: P.SubmitSm, pace: Callable[[], Awaitable[bool | None]] | None
    ) -> tuple[int, str]:
        window = self._window
        if window is None:
            raise RuntimeError("SmppClient.start() was not called")
        async with window:
            paced = False
            while True:
                if self.closing:
                    return -1, ""
                session = self._tx.session
                if session is not None and session.is_open:
                    if pace is None or paced:
                        break
                    # The token is taken for this PDU only once it can be written at once; the
                    # bind may have dropped while waiting for the slot, so look again.
                    if await pace() is False:
                        return WITHDRAWN, ""  # withdrawn by the caller: nothing written
                    paced = True
                    continue
                await self._wait_tx_or_close()
            seq = session.next_sequence()
            pdu.sequence = seq
            _cid, status, mid = await session.request(P.encode_submit_sm(pdu), seq)
            if self._submit_ids is not IdFormat.TEXT:
                mid = canonical(mid, self._submit_ids)
            return status, mid

    async def _wait_tx_or_close(self) -> None:
        bound = asyncio.ensure_future(self._tx.bound.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait([bound, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            bound.cancel()
            closed.cancel()

    def _bind_changed(self) -> None:
        state = self.is_bound
        if state != self._bound_state:
            self._bound_state = state
            if self._on_bind_state is not None:
                self._on_bind_state(state)

    async def close(self) -> None:
        """Let outstanding submits finish (bounded), unbind cleanly and stop reconnecting."""
        self.closing = True
        self._closed.set()
        await asyncio.gather(*(link.unbind() for link in self._links))
        for link in self._links:
            if link.task is not None:
                link.task.cancel()
        await asyncio.gather(
            *(link.task for link in self._links if link.task is not None), return_exceptions=True
        )
        for link in self._links:
            link.bound.clear()
        self._bind_changed()


def smpp_time(unix: float) -> str:
    """An absolute SMPP time in UTC ("YYMMDDhhmmss" + tenths, quarter hours "00", "+"), rounded
    up to the tenth: rounded down, a message written in the last tenth before `unix` would carry
    a validity already past and be refused (or counted stale) by the SMSC."""
    tenths_total = math.ceil(round(unix * 10, 6))
    t = time.gmtime(tenths_total // 10)
    return f"{time.strftime('%y%m%d%H%M%S', t)}{tenths_total % 10}00+"


def _canonical_receipts(handler: ReceiptHandler, fmt: IdFormat) -> ReceiptHandler:
    """`handler`, fed receipts whose id is rewritten in the canonical form."""

    def canonical_receipt(receipt: DeliveryReceipt) -> Awaitable[None] | None:
        receipt.message_id = canonical(receipt.message_id, fmt)
        return handler(receipt)

    return canonical_receipt


_OUTCOMES: dict[int, SubmitOutcome] = {}


def _outcome(status: int) -> SubmitOutcome:
    """The outcome of one segment's status (-1: bind lost), remembered per status."""
    outcome = _OUTCOMES.get(status)
    if outcome is None:
        if status == LOST[1]:
            outcome = SubmitOutcome.BIND_LOST
        elif status == WITHDRAWN:
            outcome = SubmitOutcome.WITHDRAWN
        else:
            outcome = classify_status(status)
        if len(_OUTCOMES) < 1024:
            _OUTCOMES[status] = outcome
    return outcome


def _worst(answers: Sequence[tuple[int, str]]) -> tuple[SubmitOutcome, int]:
    """The outcome a caller must act on for a multi-segment result, with its status."""
    best: tuple[int, SubmitOutcome, int] | None = None
    for status, _mid in answers:
        outcome = _outcome(status)
        rank = OUTCOME_SEVERITY.index(outcome)
        if best is None or rank < best[0]:
            best = (rank, outcome, status)
    if best is None:
        return SubmitOutcome.ACCEPTED, 0
    return best[1], best[2]
