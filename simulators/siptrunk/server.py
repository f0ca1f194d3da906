"""A SIP trunk as an operator runs one: UAS over UDP, per-call RTP receivers, counters per number.

It answers INVITEs with configured shares of answered, busy, unanswered and rejected calls after a
ring delay; refuses calls above its channel limit with 503 and Retry-After; challenges with digest
authentication when it has an account; drops INVITEs or sends garbage on demand. Each answered
call gets its own RTP socket, which checks SSRC, sequence numbers, timestamps and arrival times,
so a test can judge that every answered call heard the whole message twice and nobody was called
twice (`destinations`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from gateways.sip.digest import digest_response, parse_challenge
from gateways.sip.errors import SipError, SipParseError
from gateways.sip.message import Headers, Request, Response, branch_of, new_tag, parse, uri_of
from gateways.sip.rtp import FRAME_BYTES, FRAME_SAMPLES, PTIME, parse_rtp
from simulators.siptrunk.config import TrunkConfig

log = logging.getLogger(__name__)

Address = tuple[str, int]
OUTCOMES = ("answer", "busy", "no_answer", "reject")


@dataclass(eq=False, slots=True)
class CallRecord:
    """One INVITE dialog as the trunk saw it."""

    number: str  #: user part of the Request-URI
    call_id: str  #: SIP Call-ID
    outcome: str  #: answer, busy, no_answer, reject, unavailable, cancelled, redirected, no_prack
    source: tuple[str, int] = ("", 0)  #: where the INVITE came from (which dialer)
    answered: bool = False  #: a 200 OK went out
    pracked: bool = False  #: its reliable 183 was acknowledged with a PRACK
    acked: bool = False  #: its ACK came
    ended: bool = False  #: BYE or CANCEL received, or a final failure sent
    frames: int = 0  #: RTP packets received
    payload_bytes: int = 0  #: audio bytes received
    seq_errors: int = 0  #: packets whose sequence number did not follow the previous
    ts_errors: int = 0  #: packets whose timestamp did not advance by 160
    ssrc_changes: int = 0  #: packets with another SSRC than the first
    late_frames: int = 0  #: packets arriving more than 60 ms after the previous
    jitter_ms: float = 0.0  #: RFC 3550 interarrival jitter estimate at the end
    payload_type: int = -1  #: RTP payload type of the first packet
    audio: bytearray = field(default_factory=bytearray)  #: payloads, when keep_audio

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio received."""
        return self.payload_bytes / 8000


@dataclass(slots=True)
class Destination:
    """Counters of one called number."""

    calls: int = 0  #: distinct Call-IDs that reached the trunk's decision
    answered: int = 0  #: of those, answered
    audio_seconds: float = 0.0  #: audio received over all its calls


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTrunkSimulator, record: CallRecord, dest: Destination) -> None:
        self.owner, self.record, self.dest = owner, record, dest
        self.keep = owner.config.keep_audio
        self.ssrc = -1
        self.seq = -1
        self.ts = -1
        self.last = 0.0
        self.transit = 0.0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not a registered subclass of asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        parsed = parse_rtp(data)
        if parsed is None or self.record.ended or self.owner.gone:
            return
        header, payload = parsed
        r = self.record
        now = time.monotonic()
        if self.ssrc < 0:
            self.ssrc, r.payload_type = header.ssrc, header.payload_type
        else:
            if header.ssrc != self.ssrc:
                r.ssrc_changes += 1
            if header.seq != (self.seq + 1) & 0xFFFF:
                r.seq_errors += 1
            if header.timestamp != (self.ts + FRAME_SAMPLES) & 0xFFFFFFFF:
                r.ts_errors += 1
            gap = now - self.last
            if gap > 3 * PTIME:
                r.late_frames += 1
            transit = now * 8000 - header.timestamp
            d = abs(transit - self.transit) if r.frames > 1 else 0.0
            r.jitter_ms += (d / 8 - r.jitter_ms) / 16
            self.transit = transit
        if r.frames == 0:
            self.transit = now * 8000 - header.timestamp
        self.seq, self.ts, self.last = header.seq, header.timestamp, now
        r.frames += 1
        self.owner._touch()
        r.payload_bytes += len(payload)
        self.dest.audio_seconds += len(payload) / 8000
        if self.keep:
            r.audio += payload
        if len(payload) != FRAME_BYTES:
            r.ts_errors += 1


@dataclass(eq=False, slots=True)
class _Dialog:
    record: CallRecord
    invite: Request
    addr: Address
    to_tag: str
    last: Response | None = None
    rtp: _Rtp | None = None
    holds_channel: bool = True
    timer: asyncio.TimerHandle | None = None
    reliable: Response | None = None  #: the reliable 183 waiting for its PRACK


class SipTrunkSimulator(asyncio.DatagramProtocol):
    """The trunk; `start()` binds it, `records` and `destinations` hold what it saw."""

    def __init__(self, config: TrunkConfig) -> None:
        self.config = config
        self.records: list[CallRecord] = []
        self.destinations: dict[str, Destination] = {}
        #: Calls holding a channel now, and the most ever.
        self.active = 0
        self.max_active = 0
        #: INVITE datagrams received (retransmissions included), 503s sent, CANCELs received.
        self.invites = 0
        self.unavailable = 0
        self.cancels = 0
        #: PRACKs received (RFC 3262), redirects sent (302).
        self.pracks = 0
        self.redirects = 0
        #: When set, the trunk has gone away: every datagram is ignored.
        self.gone = False
        self._drop = config.drop_invites
        self._drop_pracks = config.drop_pracks
        self._dialogs: dict[str, _Dialog] = {}
        self._attempts: dict[str, int] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._changed: asyncio.Event | None = None

    def _touch(self) -> None:
        """Wake whoever waits in `wait_until` (only built while someone waits)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds; re-checked on every datagram the trunk handles."""
        while not predicate():
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    async def start(self) -> int:
        """Bind the SIP socket; returns its port."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.config.host, self.config.port)
        )
        return self.port

    @property
    def port(self) -> int:
        """SIP UDP port."""
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    async def stop(self) -> None:
        """Close every socket."""
        for d in self._dialogs.values():
            if d.timer is not None:
                d.timer.cancel()
            if d.rtp is not None and d.rtp.transport is not None:
                d.rtp.transport.close()
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not a registered subclass of asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    # --- SIP ---

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._touch()
        if self.gone:
            return
        try:
            msg = parse(data)
        except SipParseError:
            return
        if isinstance(msg, Response):
            return
        call_id = msg.headers.get("call-id") or ""
        dialog = self._dialogs.get(call_id)
        if msg.method == "INVITE":
            self._on_invite(msg, addr, dialog)
        elif msg.method == "ACK" and dialog is not None:
            self._on_ack(dialog)
        elif msg.method == "CANCEL":
            self._on_cancel(msg, addr, dialog)
        elif msg.method == "PRACK":
            self._on_prack(msg, addr, dialog)
        elif msg.method == "BYE":
            self._reply(msg, addr, 200, "OK")
            if dialog is not None:
                self._end(dialog)
        elif msg.method != "ACK":
            self._reply(msg, addr, 200 if msg.method == "OPTIONS" else 501, "OK")

    def _on_invite(self, invite: Request, addr: Address, dialog: _Dialog | None) -> None:
        self.invites += 1
        if self._drop > 0:
            self._drop -= 1
            return
        if dialog is not None and branch_of(dialog.invite) == branch_of(invite):
            if dialog.last is not None:  # a retransmission: repeat our last answer
                self._send(dialog.last, addr)
            return
        if self.config.username and not self._authorised(invite):
            challenge = (
                f'Digest realm="{self.config.realm}", nonce="{secrets.token_hex(8)}", '
                'algorithm=MD5, qop="auth"'
            )
            self._reply(
                invite,
                addr,
                401,
                "Unauthorized",
                to_tag=new_tag(),
                extra=[("www-authenticate", challenge)],
            )
            return
        number = uri_of(invite.uri).split(":", 1)[-1].split("@")[0]
        call_id = invite.headers.get("call-id") or ""
        target = self.config.redirects.get(number)
        if target is not None:
            self._redirect(invite, addr, number, target)
            return
        outcome = self._draw(number)
        record = CallRecord(number=number, call_id=call_id, outcome=outcome, source=addr)
        self.records.append(record)
        dest = self.destinations.setdefault(number, Destination())
        dest.calls += 1
        dialog = _Dialog(record, invite, addr, new_tag())
        self._dialogs[call_id] = dialog
        if self.active >= self.config.channels or outcome == "unavailable":
            record.outcome, record.ended = "unavailable", True
            dialog.holds_channel = False
            self.unavailable += 1
            dialog.last = self._reply(
                invite,
                addr,
                503,
                "Service Unavailable",
                to_tag=dialog.to_tag,
                extra=[("retry-after", str(c.retry_after))]
                if (c := self.config).retry_after
                else [],
            )
            return
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        dialog.last = self._reply(invite, addr, 100, "Trying")
        loop = asyncio.get_running_loop()
        dialog.timer = loop.call_later(self.config.ring_delay / 2, self._ring, dialog)

    def _redirect(self, invite: Request, addr: Address, number: str, target: str) -> None:
        """302 to `target`: the call is recorded against the number dialled, then ended."""
        call_id = invite.headers.get("call-id") or ""
        record = CallRecord(number, call_id, "redirected", source=addr, ended=True)
        self.records.append(record)
        self.destinations.setdefault(number, Destination()).calls += 1
        self.redirects += 1
        dialog = _Dialog(record, invite, addr, new_tag(), holds_channel=False)
        self._dialogs[call_id] = dialog
        contact = f"<sip:{target}@{self.config.host}:{self.port}>"
        dialog.last = self._reply(
            invite,
            addr,
            302,
            "Moved Temporarily",
            to_tag=dialog.to_tag,
            extra=[("contact", contact)],
        )

    def _draw(self, number: str) -> str:
        attempt = self._attempts.get(number, 0)
        self._attempts[number] = attempt + 1
        script = self.config.scripts.get(number)
        if script and attempt < len(script):
            return script[attempt]
        c = self.config
        digest = hashlib.blake2b(f"{c.seed}:{number}:{attempt}".encode(), digest_size=8).digest()
        x = int.from_bytes(digest) / 2**64
        total = c.answer_share + c.busy_share + c.no_answer_share + c.reject_share
        x *= total or 1.0
        for name, share in zip(
            OUTCOMES, (c.answer_share, c.busy_share, c.no_answer_share, c.reject_share), strict=True
        ):
            if x < share:
                return name
            x -= share
        return "answer"

    def _authorised(self, invite: Request) -> bool:
        value = invite.headers.get("authorization")
        if not value:
            return False
        try:
            p = parse_challenge(value)
        except SipError:
            return False
        expected = digest_response(
            method="INVITE",
            uri=p.get("uri", ""),
            username=self.config.username,
            password=self.config.password,
            realm=p.get("realm", ""),
            nonce=p.get("nonce", ""),
            qop=p.get("qop", ""),
            cnonce=p.get("cnonce", ""),
            nc=p.get("nc", "00000001"),
        )
        return p.get("username") == self.config.username and p.get("response") == expected

    def _ring(self, dialog: _Dialog) -> None:
        if dialog.record.ended:
            return
        supported = ",".join(dialog.invite.headers.all("supported")).lower()
        if self.config.reliable and "100rel" in supported:
            self._ring_reliably(dialog)
            return
        dialog.last = self._reply(dialog.invite, dialog.addr, 180, "Ringing", to_tag=dialog.to_tag)
        self._after_ring(dialog)

    def _after_ring(self, dialog: _Dialog) -> None:
        if dialog.record.outcome == "no_answer":
            return
        loop = asyncio.get_running_loop()
        dialog.timer = loop.call_later(self.config.ring_delay / 2, self._final, dialog)

    def _ring_reliably(self, dialog: _Dialog) -> None:
        """183 with Require: 100rel and RSeq 1, resent on T1 doubling until its PRACK."""
        dialog.reliable = dialog.last = self._reply(
            dialog.invite,
            dialog.addr,
            183,
            "Session Progress",
            to_tag=dialog.to_tag,
            extra=[
                ("require", "100rel"),
                ("rseq", "1"),
                ("contact", f"<sip:{dialog.record.number}@{self.config.host}:{self.port}>"),
            ],
        )
        t1 = self.config.t1
        loop = asyncio.get_running_loop()

        def again(interval: float) -> None:
            if dialog.reliable is None or dialog.record.ended or self.gone:
                return
            if interval >= 64 * t1:  # RFC 3262 §3: no PRACK, the call is refused with a 5xx
                dialog.record.outcome = "no_prack"
                self._fail(dialog, 504, "Server Time-out")
                return
            self._send(dialog.reliable, dialog.addr)
            dialog.timer = loop.call_later(interval, again, interval * 2)

        dialog.timer = loop.call_later(t1, again, 2 * t1)

    def _on_prack(self, prack: Request, addr: Address, dialog: _Dialog | None) -> None:
        self.pracks += 1
        if self._drop_pracks > 0:
            self._drop_pracks -= 1
            return
        if dialog is not None and dialog.record.pracked:  # our 200 was lost: say it again
            self._reply(prack, addr, 200, "OK")
            return
        rack = (prack.headers.get("rack") or "").split()
        invite_cseq = (dialog.invite.headers.get("cseq") or "").split()[:1] if dialog else []
        if (
            dialog is None
            or dialog.reliable is None
            or rack[:1] != ["1"]
            or rack[1:2] != invite_cseq
        ):
            self._reply(prack, addr, 481, "Call/Transaction Does Not Exist")
            return
        self._reply(prack, addr, 200, "OK")
        dialog.reliable = None
        dialog.record.pracked = True
        if dialog.timer is not None:
            dialog.timer.cancel()
        self._after_ring(dialog)

    def _final(self, dialog: _Dialog) -> None:
        record = dialog.record
        if record.ended:
            return
        if record.outcome == "busy":
            self._fail(dialog, 486, "Busy Here")
        elif record.outcome == "reject":
            self._fail(dialog, 404, "Not Found")
        else:
            asyncio.get_running_loop().create_task(self._answer(dialog))

    def _fail(self, dialog: _Dialog, status: int, reason: str) -> None:
        dialog.last = self._reply(dialog.invite, dialog.addr, status, reason, to_tag=dialog.to_tag)
        self._end(dialog)

    async def _answer(self, dialog: _Dialog) -> None:
        loop = asyncio.get_running_loop()
        record = dialog.record
        dest = self.destinations[record.number]
        rtp = _Rtp(self, record, dest)
        await loop.create_datagram_endpoint(lambda: rtp, local_addr=(self.config.host, 0))
        assert rtp.transport is not None
        if record.ended:  # cancelled while the socket opened
            rtp.transport.close()
            return
        dialog.rtp = rtp
        rtp_port = rtp.transport.get_extra_info("sockname")[1]
        body = (
            "v=0\r\n"
            f"o=trunk 1 1 IN IP4 {self.config.host}\r\ns=trunk\r\n"
            f"c=IN IP4 {self.config.host}\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\n"
            "a=recvonly\r\n"
        ).encode()
        record.answered = True
        dest.answered += 1
        dialog.last = self._reply(
            dialog.invite,
            dialog.addr,
            200,
            "OK",
            to_tag=dialog.to_tag,
            body=body,
            extra=[
                ("contact", f"<sip:{record.number}@{self.config.host}:{self.port}>"),
                ("content-type", "application/sdp"),
            ],
        )
        self._retransmit_ok(dialog, self.config.t1)

    def _retransmit_ok(self, dialog: _Dialog, interval: float) -> None:
        """Timer G: repeat the 200 OK until its ACK arrives (64*T1 at most)."""
        if dialog.record.acked or dialog.record.ended or interval > 32 * self.config.t1:
            return
        loop = asyncio.get_running_loop()

        def again() -> None:
            if not (dialog.record.acked or dialog.record.ended or self.gone) and dialog.last:
                self._send(dialog.last, dialog.addr)
                self._retransmit_ok(dialog, min(interval * 2, 4.0))

        dialog.timer = loop.call_later(interval, again)

    def _on_ack(self, dialog: _Dialog) -> None:
        dialog.record.acked = True

    def _on_cancel(self, cancel: Request, addr: Address, dialog: _Dialog | None) -> None:
        self.cancels += 1
        self._reply(cancel, addr, 200, "OK", to_tag=dialog.to_tag if dialog else "")
        if dialog is None or dialog.record.answered or dialog.record.ended:
            return
        dialog.record.outcome = "cancelled"
        self._fail(dialog, 487, "Request Terminated")

    def _end(self, dialog: _Dialog) -> None:
        record = dialog.record
        if record.ended:
            return
        record.ended = True
        if dialog.timer is not None:
            dialog.timer.cancel()
        if dialog.holds_channel:
            self.active -= 1
            dialog.holds_channel = False
        if dialog.rtp is not None and dialog.rtp.transport is not None:
            dialog.rtp.transport.close()

    def _reply(
        self,
        req: Request,
        addr: Address,
        status: int,
        reason: str,
        *,
        to_tag: str = "",
        body: bytes = b"",
        extra: list[tuple[str, str]] | None = None,
    ) -> Response:
        h = Headers()
        for name in ("via", "from"):
            for value in req.headers.all(name):
                h.add(name, value)
        to = req.headers.get("to") or ""
        if to_tag and ";tag=" not in to:
            to = f"{to};tag={to_tag}"
        h.add("to", to)
        h.add("call-id", req.headers.get("call-id") or "")
        h.add("cseq", req.headers.get("cseq") or "")
        for name, value in extra or []:
            h.add(name, value)
        resp = Response(status, reason, h, body)
        self._send(resp, addr)
        return resp

    def _send(self, resp: Response, addr: Address) -> None:
        if self._transport is None or self._transport.is_closing() or self.gone:
            return
        if self.config.garbage:
            self._transport.sendto(b"\x00\xffnot sip at all\r\n\r\n", addr)
        self._transport.sendto(resp.encode(), addr)

    # --- judging ---

    def called_twice(self) -> list[str]:
        """Numbers whose message was answered more than once."""
        return sorted(n for n, d in self.destinations.items() if d.answered > 1)

    def summary(self) -> dict[str, float]:
        """Counters for a benchmark or a log line."""
        answered = [r for r in self.records if r.answered]
        return {
            "invites": self.invites,
            "calls": len(self.records),
            "answered": len(answered),
            "numbers": len(self.destinations),
            "numbers_answered_twice": len(self.called_twice()),
            "unavailable": self.unavailable,
            "cancels": self.cancels,
            "max_concurrent": self.max_active,
            "audio_seconds": round(sum(r.audio_seconds for r in answered), 3),
            "seq_errors": sum(r.seq_errors for r in answered),
            "ts_errors": sum(r.ts_errors for r in answered),
            "late_frames": sum(r.late_frames for r in answered),
        }
