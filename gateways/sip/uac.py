"""An asyncio SIP user agent client over UDP (RFC 3261) that plays a message and hangs up.

One `SipUac` per process owns one UDP socket for signalling and shares one `MediaClock` for RTP.
`call()` runs the whole life of one attempt: INVITE with an SDP offer (retransmitted on timer A
until a provisional answer, given up on timer B), digest authentication once when challenged,
CANCEL at the ring timeout or when the caller abandons, ACK of every final answer, the message
played twice from pre-encoded frames, then BYE (a non-INVITE transaction on timers E and F).
A 503's Retry-After holds back every new INVITE to that trunk until it has passed. A 300-302
redirect is followed to its first Contact (at most MAX_REDIRECTS times, always through the trunk),
and a reliable provisional answer (RFC 3262, `Require: 100rel`) is acknowledged with a PRACK.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from gateways.sip import sdp
from gateways.sip.digest import Credentials, authorization
from gateways.sip.errors import CallOutcome, SipError, SipParseError, classify_status
from gateways.sip.message import (
    Headers,
    Request,
    Response,
    branch_of,
    cseq_of,
    new_branch,
    new_tag,
    parse,
    uri_of,
)
from gateways.sip.rtp import MediaClock, Playback

log = logging.getLogger(__name__)

Address = tuple[str, int]

#: Redirects (300-302) followed per call; one more is sorted as a rejection (a redirect loop).
MAX_REDIRECTS = 3
#: Redirect statuses that are followed; 305 (use proxy) and 380 (alternative service) are not.
REDIRECTS = frozenset({300, 301, 302})


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 §17 timer values (tests shrink them; production keeps the defaults)."""

    t1: float = 0.5  #: round-trip estimate: first retransmission interval
    t2: float = 4.0  #: longest retransmission interval of a non-INVITE request

    @property
    def timer_b(self) -> float:
        """Give up an INVITE that drew no answer at all (also timer F for non-INVITE)."""
        return 64 * self.t1


@dataclass(frozen=True, slots=True)
class Trunk:
    """Where calls go and who we are to it."""

    host: str  #: the trunk's SIP address
    port: int  #: its UDP port
    domain: str = ""  #: host part of the Request-URI; host:port when empty
    caller: str = "tocsin"  #: user part of our From
    credentials: Credentials | None = None  #: answered to a 401/407 challenge, if set

    @property
    def address(self) -> Address:
        """Where to send."""
        return (self.host, self.port)


@dataclass(frozen=True, slots=True)
class Prompt:
    """One message, pre-encoded as 20 ms G.711 frames in both laws."""

    pcma: Sequence[bytes]  #: A-law frames of 160 bytes
    pcmu: Sequence[bytes]  #: mu-law frames of 160 bytes

    def frames(self, payload_type: int) -> Sequence[bytes]:
        """Frames for the codec the far end chose."""
        return self.pcma if payload_type == sdp.PCMA else self.pcmu


@dataclass(frozen=True, slots=True)
class CallResult:
    """How one attempt ended."""

    outcome: CallOutcome  #: what the dialer should do next
    status: int  #: final SIP status of the INVITE; 0 when none came
    call_id: str  #: SIP Call-ID
    retry_after: float | None = None  #: seconds from a 503's Retry-After
    frames_sent: int = 0  #: RTP frames played
    frames_total: int = 0  #: frames of the full playback (message times repeat)
    callee_hung_up: bool = False  #: the far end sent BYE during playback
    bye_answered: bool = False  #: our BYE drew a final response
    redirected_to: str = ""  #: the Request-URI of the last INVITE when a 3xx was followed
    pracks: int = 0  #: reliable provisional answers acknowledged with a PRACK

    @property
    def heard_fully(self) -> bool:
        """Every frame of every repetition went out."""
        return self.outcome is CallOutcome.ANSWERED and 0 < self.frames_total <= self.frames_sent


@dataclass(slots=True)
class Stats:
    """Counters a service exports as metrics."""

    invites: int = 0  #: INVITE transactions started (auth retries and redirects included)
    redirects: int = 0  #: 3xx answers followed to their Contact
    pracks: int = 0  #: PRACKs sent for reliable provisional answers (RFC 3262)
    retransmissions: int = 0  #: requests sent again on a timer
    parse_errors: int = 0  #: datagrams that were not SIP
    unmatched: int = 0  #: responses matching no transaction or dialog


@dataclass(eq=False, slots=True)
class _Dialog:
    ack: Request
    dest: Address
    playback: Playback | None = None
    remote_bye: bool = False


@dataclass(eq=False, slots=True)
class _Leg:
    """What stays fixed across the INVITE, CANCEL, ACK and BYE of one call."""

    uri: str
    from_: str
    to: str
    call_id: str
    dest: Address
    via_host: str
    cseq: int = 1  #: CSeq of the current INVITE (its ACK and CANCEL share it)
    last_cseq: int = 1  #: the highest CSeq used in the call (PRACK and BYE take the next)
    extra: list[tuple[str, str]] = field(default_factory=list)
    pracks: int = 0

    def next_cseq(self) -> int:
        """A CSeq above every one used so far in the call."""
        self.last_cseq += 1
        return self.last_cseq


class SipUac(asyncio.DatagramProtocol):
    """SIP UAC on one UDP socket; `call()` may run concurrently for thousands of calls."""

    def __init__(self, *, clock: MediaClock, timers: Timers, user_agent: str) -> None:
        self.clock = clock
        self.timers = timers
        self.user_agent = user_agent
        self.stats = Stats()
        self._transport: asyncio.DatagramTransport | None = None
        self._tx: dict[tuple[str, str], asyncio.Queue[Response | None]] = {}
        self._dialogs: dict[str, _Dialog] = {}
        self._blocked_until: dict[Address, float] = {}
        self._background: set[asyncio.Task[Response | None]] = set()

    @classmethod
    async def open(
        cls,
        *,
        clock: MediaClock,
        host: str = "127.0.0.1",
        port: int = 0,
        timers: Timers | None = None,
        user_agent: str = "tocsin",
    ) -> SipUac:
        """Bind the signalling socket."""
        loop = asyncio.get_running_loop()
        uac = cls(clock=clock, timers=timers or Timers(), user_agent=user_agent)
        await loop.create_datagram_endpoint(lambda: uac, local_addr=(host, port))
        return uac

    @property
    def address(self) -> Address:
        """Host and port of our signalling socket."""
        assert self._transport is not None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not a registered subclass of asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP socket error: %s", exc)

    def close(self) -> None:
        """Close the socket; calls in progress end on their timers."""
        for task in self._background:
            task.cancel()
        if self._transport is not None:
            self._transport.close()

    # --- receiving ---

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if data in (b"\r\n\r\n", b"\r\n"):
            return  # keep-alive
        try:
            msg = parse(data)
            if isinstance(msg, Response):
                self._on_response(msg)
            else:
                self._on_request(msg, addr)
        except SipParseError as exc:
            self.stats.parse_errors += 1
            log.debug("dropped a datagram from %s: %s", addr, exc)

    def _on_response(self, resp: Response) -> None:
        _, method = cseq_of(resp)
        queue = self._tx.get((branch_of(resp), method))
        if queue is not None:
            queue.put_nowait(resp)
            return
        dialog = self._dialogs.get(resp.headers.get("call-id") or "")
        if dialog is not None and method == "INVITE" and 200 <= resp.status < 300:
            self._send(dialog.ack, dialog.dest)  # our ACK was lost: the 200 came again
            return
        self.stats.unmatched += 1

    def _on_request(self, req: Request, addr: Address) -> None:
        if req.method == "ACK":
            return
        dialog = self._dialogs.get(req.headers.get("call-id") or "")
        if req.method == "BYE" and dialog is not None:
            dialog.remote_bye = True
            if dialog.playback is not None:
                dialog.playback.stop()
            self._reply(req, addr, 200, "OK")
        elif req.method == "OPTIONS":
            self._reply(req, addr, 200, "OK")
        elif req.method in ("BYE", "CANCEL") or dialog is not None:
            self._reply(req, addr, 481, "Call/Transaction Does Not Exist")
        else:
            self._reply(req, addr, 501, "Not Implemented")

    def _reply(self, req: Request, addr: Address, status: int, reason: str) -> None:
        headers = Headers()
        for name in ("via", "from", "to", "call-id", "cseq"):
            for value in req.headers.all(name):
                headers.add(name, value)
        self._send(Response(status, reason, headers), addr)

    def _send(self, msg: Request | Response, dest: Address) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(msg.encode(), dest)

    # --- building requests ---

    def _request(
        self,
        leg: _Leg,
        method: str,
        *,
        branch: str,
        cseq: int,
        uri: str | None = None,
        to: str | None = None,
        body: bytes = b"",
    ) -> Request:
        h = Headers()
        h.add("via", f"SIP/2.0/UDP {leg.via_host};branch={branch};rport")
        h.add("max-forwards", "70")
        h.add("from", leg.from_)
        h.add("to", to or leg.to)
        h.add("call-id", leg.call_id)
        h.add("cseq", f"{cseq} {method}")
        if method == "INVITE":
            h.add(
                "contact",
                f"<sip:{uri_of(leg.from_).split(':', 1)[1].split('@')[0]}@{leg.via_host}>",
            )
            for name, value in leg.extra:
                h.add(name, value)
            h.add("allow", "INVITE, ACK, CANCEL, BYE, PRACK, OPTIONS")
            h.add("supported", "100rel")
        h.add("user-agent", self.user_agent)
        if body:
            h.add("content-type", "application/sdp")
        return Request(method, uri or leg.uri, h, body)

    # --- one call ---

    async def call(
        self,
        *,
        trunk: Trunk,
        number: str,
        prompt: Prompt,
        ring_timeout: float,
        repeat: int = 2,
        abandon: asyncio.Event | None = None,
        on_answer: Callable[[], None] | None = None,
    ) -> CallResult:
        """Call `number`, play `prompt` `repeat` times if answered, hang up; never raises."""
        loop = asyncio.get_running_loop()
        local_host, local_port = self.address
        call_id = f"{secrets.token_hex(12)}@{local_host}"
        await self._honour_retry_after(trunk.address, abandon)
        if abandon is not None and abandon.is_set():
            return CallResult(CallOutcome.ABANDONED, 0, call_id)
        domain = trunk.domain or f"{trunk.host}:{trunk.port}"
        leg = _Leg(
            uri=f"sip:{number}@{domain}",
            from_=f"<sip:{trunk.caller}@{local_host}>;tag={new_tag()}",
            to=f"<sip:{number}@{domain}>",
            call_id=call_id,
            dest=trunk.address,
            via_host=f"{local_host}:{local_port}",
        )
        rtp_host, rtp_port = self.clock.address
        offer = sdp.offer(host=rtp_host, port=rtp_port, session_id=secrets.randbelow(2**31))
        ring_deadline = loop.time() + ring_timeout
        challenged = False
        redirects = 0
        while True:
            invite = self._request(leg, "INVITE", branch=new_branch(), cseq=leg.cseq, body=offer)
            final, cancelled = await self._invite(leg, invite, ring_deadline, abandon)
            if final is None:
                outcome = cancelled or CallOutcome.TRUNK_TROUBLE
                return CallResult(outcome, 0, call_id, pracks=leg.pracks)
            if (
                final.status in (401, 407)
                and trunk.credentials
                and not challenged
                and not cancelled
            ):
                challenged = True
                ask, answer = (
                    ("www-authenticate", "authorization")
                    if final.status == 401
                    else ("proxy-authenticate", "proxy-authorization")
                )
                try:
                    value = authorization(
                        challenge=final.headers.get(ask) or "",
                        method="INVITE",
                        uri=leg.uri,
                        credentials=trunk.credentials,
                    )
                except SipError as exc:
                    log.warning("cannot answer the trunk's challenge: %s", exc)
                    return CallResult(CallOutcome.REJECTED, final.status, call_id)
                leg.extra = [(answer, value)]
                leg.cseq = leg.next_cseq()
                continue
            contact = final.headers.get("contact")
            if final.status in REDIRECTS and contact and not cancelled:
                if redirects == MAX_REDIRECTS:
                    log.warning("call %s: more than %d redirects", call_id, MAX_REDIRECTS)
                    break
                # The new target is reached through the trunk all the same (it is our outbound
                # proxy): only the Request-URI and To change, the Call-ID and From stay.
                redirects += 1
                self.stats.redirects += 1
                leg.uri = uri_of(contact.split(",")[0])
                leg.to = f"<{leg.uri}>"
                leg.extra = []
                leg.cseq = leg.next_cseq()
                challenged = False
                continue
            break
        if final.status >= 300:
            retry_after = _retry_after(final)
            if final.status == 503 and retry_after:
                until = loop.time() + retry_after
                self._blocked_until[trunk.address] = max(
                    until, self._blocked_until.get(trunk.address, 0.0)
                )
            outcome = cancelled or classify_status(final.status)
            return CallResult(
                outcome,
                final.status,
                call_id,
                retry_after=retry_after,
                redirected_to=leg.uri if redirects else "",
                pracks=leg.pracks,
            )
        result = await self._answered(leg, final, prompt, repeat, cancelled, on_answer)
        return replace(result, redirected_to=leg.uri if redirects else "", pracks=leg.pracks)

    async def _answered(
        self,
        leg: _Leg,
        ok: Response,
        prompt: Prompt,
        repeat: int,
        cancelled: CallOutcome | None,
        on_answer: Callable[[], None] | None,
    ) -> CallResult:
        to = ok.headers.get("to") or leg.to
        contact = ok.headers.get("contact")
        target = uri_of(contact) if contact else leg.uri
        ack = self._request(leg, "ACK", branch=new_branch(), cseq=leg.cseq, uri=target, to=to)
        dialog = _Dialog(ack, leg.dest)
        self._dialogs[leg.call_id] = dialog
        self._send(ack, leg.dest)
        try:
            media = None if cancelled else sdp.parse_answer(ok.body)
        except SipError as exc:
            log.warning("call %s answered with unusable SDP: %s", leg.call_id, exc)
            cancelled = CallOutcome.TRUNK_TROUBLE
            media = None
        sent = total = 0
        if media is not None:
            if on_answer is not None:
                on_answer()
            frames = prompt.frames(media.payload_type)
            dialog.playback = self.clock.play(
                dest=(media.host, media.port),
                payload_type=media.payload_type,
                frames=frames,
                repeat=repeat,
            )
            total = dialog.playback.total
            sent = await dialog.playback.done
        bye_answered = False
        try:
            if not dialog.remote_bye:
                bye = self._request(
                    leg, "BYE", branch=new_branch(), cseq=leg.next_cseq(), uri=target, to=to
                )
                bye_answered = await self._non_invite(bye, leg.dest) is not None
        finally:
            self._dialogs.pop(leg.call_id, None)
        return CallResult(
            cancelled or CallOutcome.ANSWERED,
            ok.status,
            leg.call_id,
            frames_sent=sent,
            frames_total=total,
            callee_hung_up=dialog.remote_bye,
            bye_answered=bye_answered,
        )

    async def _honour_retry_after(self, dest: Address, abandon: asyncio.Event | None) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self._blocked_until.get(dest, 0.0) - loop.time()) > 0:
            if abandon is None:
                await asyncio.sleep(wait)
                continue
            try:
                await asyncio.wait_for(abandon.wait(), wait)
                return
            except TimeoutError:
                pass

    async def _invite(
        self, leg: _Leg, invite: Request, ring_deadline: float, abandon: asyncio.Event | None
    ) -> tuple[Response | None, CallOutcome | None]:
        """Run one INVITE client transaction; returns its final response and why we cancelled."""
        loop = asyncio.get_running_loop()
        t = self.timers
        branch = branch_of(invite)
        queue: asyncio.Queue[Response | None] = asyncio.Queue()
        self._tx[(branch, "INVITE")] = queue
        watcher: asyncio.Task[bool] | None = None
        if abandon is not None:
            watcher = asyncio.create_task(abandon.wait())
            watcher.add_done_callback(lambda f: None if f.cancelled() else queue.put_nowait(None))
        self.stats.invites += 1
        self._send(invite, leg.dest)
        start = loop.time()
        interval, next_retx, timer_b = t.t1, start + t.t1, start + t.timer_b
        provisional = abandoned = False
        rseq = -1  #: RSeq of the last reliable provisional answer acknowledged
        cancelled: CallOutcome | None = None
        cancel_deadline = 0.0
        try:
            while True:
                now = loop.time()
                if cancelled is None:
                    if not provisional and now >= timer_b:
                        return None, (CallOutcome.ABANDONED if abandoned else None)
                    if not provisional and now >= next_retx:
                        self._send(invite, leg.dest)
                        self.stats.retransmissions += 1
                        interval *= 2
                        next_retx = now + interval
                    want = (
                        CallOutcome.ABANDONED
                        if abandoned
                        else CallOutcome.NO_ANSWER
                        if now >= ring_deadline
                        else None
                    )
                    if want is not None and provisional:
                        cancelled = want
                        cancel_deadline = now + t.timer_b
                        self._cancel(leg, invite)
                elif now >= cancel_deadline:
                    return None, cancelled
                wakes = [cancel_deadline] if cancelled else []
                if cancelled is None and now < ring_deadline:
                    wakes.append(ring_deadline)
                if cancelled is None and not provisional:
                    wakes += [next_retx, timer_b]
                timeout = max(0.0, min(wakes) - now) if wakes else None
                try:
                    resp = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    continue
                if resp is None:
                    abandoned = True
                    continue
                if resp.status < 200:
                    provisional = True
                    rseq = self._prack(leg, resp, rseq)
                    continue
                if resp.status >= 300:
                    ack = self._request(
                        leg,
                        "ACK",
                        branch=branch,
                        cseq=leg.cseq,
                        to=resp.headers.get("to") or leg.to,
                    )
                    self._send(ack, leg.dest)
                return resp, cancelled
        finally:
            del self._tx[(branch, "INVITE")]
            if watcher is not None:
                watcher.cancel()

    def _cancel(self, leg: _Leg, invite: Request) -> None:
        cancel = self._request(leg, "CANCEL", branch=branch_of(invite), cseq=leg.cseq)
        self._in_background(self._non_invite(cancel, leg.dest))

    def _in_background(self, transaction: Coroutine[Any, Any, Response | None]) -> None:
        task = asyncio.create_task(transaction)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _prack(self, leg: _Leg, resp: Response, acked: int) -> int:
        """PRACK a reliable provisional answer (RFC 3262) once; the RSeq acknowledged so far."""
        if resp.status == 100 or "100rel" not in (resp.headers.get("require") or "").lower():
            return acked
        try:
            rseq = int((resp.headers.get("rseq") or "").strip())
        except ValueError:
            log.debug("call %s: reliable %d without a usable RSeq", leg.call_id, resp.status)
            return acked
        if rseq <= acked:
            return acked  # a retransmission: the PRACK transaction retransmits on its own
        contact = resp.headers.get("contact")
        prack = self._request(
            leg,
            "PRACK",
            branch=new_branch(),
            cseq=leg.next_cseq(),
            uri=uri_of(contact) if contact else leg.uri,
            to=resp.headers.get("to") or leg.to,
        )
        prack.headers.add("rack", f"{rseq} {leg.cseq} INVITE")
        leg.pracks += 1
        self.stats.pracks += 1
        self._in_background(self._non_invite(prack, leg.dest))
        return rseq

    async def _non_invite(self, req: Request, dest: Address) -> Response | None:
        """Run a non-INVITE client transaction (timers E and F); None when it timed out."""
        loop = asyncio.get_running_loop()
        t = self.timers
        key = (branch_of(req), req.method)
        queue: asyncio.Queue[Response | None] = asyncio.Queue()
        self._tx[key] = queue
        deadline = loop.time() + t.timer_b
        interval = t.t1
        self._send(req, dest)
        try:
            while (remaining := deadline - loop.time()) > 0:
                try:
                    resp = await asyncio.wait_for(queue.get(), min(interval, remaining))
                except TimeoutError:
                    self._send(req, dest)
                    self.stats.retransmissions += 1
                    interval = min(2 * interval, t.t2)
                    continue
                if resp is None:
                    continue
                if resp.status >= 200:
                    return resp
                interval = t.t2
            return None
        finally:
            del self._tx[key]


def _retry_after(resp: Response) -> float | None:
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value.split(";")[0].split("(")[0].strip())
    except ValueError:
        return None
