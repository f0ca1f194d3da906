"""RTP (RFC 3550) sending of pre-encoded G.711 frames from one media clock per process.

One task ticks every 20 ms and sends the next frame of every active playback, so that a thousand
calls cost one timer, not a thousand. Timestamps and sequence numbers follow the 20 ms grid; when
the loop runs late the clock catches up by sending the frames that fell due (receivers' jitter
buffers absorb a late burst better than a hole), and records how late each tick ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Samples per 20 ms frame at 8 kHz, which is also the timestamp step.
FRAME_SAMPLES = 160
#: Bytes of one G.711 frame.
FRAME_BYTES = 160
#: Packet time.
PTIME = 0.020

_HEADER = struct.Struct("!BBHII")


def rtp_packet(
    *, payload_type: int, seq: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    """One RTP packet: version 2, no padding, extension or CSRC."""
    return (
        _HEADER.pack(
            0x80, payload_type | (0x80 if marker else 0), seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
        )
        + payload
    )


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The fixed part of a received RTP header."""

    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int


def parse_rtp(packet: bytes) -> tuple[RtpHeader, bytes] | None:
    """Header and payload of an RTP packet (None when it is not RTP version 2)."""
    if len(packet) < _HEADER.size:
        return None
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(packet)
    if b0 >> 6 != 2:
        return None
    offset = _HEADER.size + 4 * (b0 & 0x0F)
    return RtpHeader(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc), packet[offset:]


@dataclass(eq=False, slots=True)
class Playback:
    """Frames played `repeat` times to one destination; `done` resolves with frames sent."""

    dest: tuple[str, int]
    payload_type: int
    frames: Sequence[bytes]
    repeat: int
    done: asyncio.Future[int]
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    seq: int = field(default_factory=lambda: secrets.randbits(16))
    timestamp: int = field(default_factory=lambda: secrets.randbits(32))
    sent: int = 0

    @property
    def total(self) -> int:
        """Frames in the whole playback."""
        return len(self.frames) * self.repeat

    def stop(self) -> None:
        """End early (the far end hung up)."""
        if not self.done.done():
            self.done.set_result(self.sent)


class MediaClock:
    """Sends every active playback's next frame each 20 ms from one socket and one task."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._active: list[Playback] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: How late each tick ran against the 20 ms grid, in seconds (most recent ticks).
        self.lateness: deque[float] = deque(maxlen=200_000)
        #: Packets the kernel refused (send buffer full).
        self.dropped = 0
        #: Packets sent.
        self.packets = 0

    @classmethod
    async def open(cls, host: str = "127.0.0.1", port: int = 0) -> MediaClock:
        """Bind the RTP socket and start the clock.

        The socket is a plain non-blocking one that only sends, outside the event loop: a
        direct sendto costs half of a transport's, and the clock makes 50 a second per call.
        What the far end sends us stays in a small receive buffer that the kernel lets overflow.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        sock.bind((host, port))
        clock = cls(sock)
        clock._task = asyncio.create_task(clock._run(), name="media-clock")
        return clock

    @property
    def address(self) -> tuple[str, int]:
        """Host and port our RTP leaves from (advertised in SDP)."""
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def active(self) -> int:
        """Playbacks in progress."""
        return len(self._active)

    def play(
        self, *, dest: tuple[str, int], payload_type: int, frames: Sequence[bytes], repeat: int
    ) -> Playback:
        """Start a playback at the next tick."""
        playback = Playback(
            dest, payload_type, frames, repeat, asyncio.get_running_loop().create_future()
        )
        if playback.total == 0:
            playback.done.set_result(0)
            return playback
        self._active.append(playback)
        self._wake.set()
        return playback

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        grid = loop.time()
        while True:
            if not self._active:
                self._wake.clear()
                await self._wake.wait()
                grid = loop.time()
            delay = grid - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            self.lateness.append(max(0.0, now - grid))
            due = max(1, int((now - grid) / PTIME) + 1)
            self._tick(min(due, 5))
            grid += PTIME * min(due, 5)
            if now - grid > 1.0:
                grid = now

    def _tick(self, frames_due: int) -> None:
        sendto = self._sock.sendto
        pack = _HEADER.pack
        still: list[Playback] = []
        for p in self._active:
            if p.done.done():
                continue
            for _ in range(frames_due):
                frame = p.frames[p.sent % len(p.frames)]
                # The marker bit on a playback's first packet: the start of a talkspurt.
                b1 = p.payload_type | 0x80 if p.sent == 0 else p.payload_type
                try:
                    sendto(pack(0x80, b1, p.seq, p.timestamp, p.ssrc) + frame, p.dest)
                    self.packets += 1
                except OSError:  # the send buffer is full, or the far end refused (ICMP)
                    self.dropped += 1
                p.sent += 1
                p.seq = (p.seq + 1) & 0xFFFF
                p.timestamp = (p.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
                if p.sent >= p.total:
                    p.done.set_result(p.sent)
                    break
            else:
                still.append(p)
        self._active = still

    async def close(self) -> None:
        """Stop the clock, end every playback, close the socket."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for p in self._active:
            p.stop()
        self._active = []
        self._sock.close()
