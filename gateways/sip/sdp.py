"""SDP (RFC 4566) for a send-only G.711 audio offer, and reading the answer."""

from __future__ import annotations

from dataclasses import dataclass

from gateways.sip.errors import SipError

#: Static RTP payload types of G.711 (RFC 3551).
PCMU = 0
PCMA = 8


@dataclass(frozen=True, slots=True)
class MediaAnswer:
    """Where and how the far end wants our audio."""

    host: str  #: connection address of the audio
    port: int  #: its RTP port
    payload_type: int  #: PCMA (8) or PCMU (0), the first of ours it accepted


def offer(*, host: str, port: int, session_id: int) -> bytes:
    """An offer of PCMA and PCMU at 8 kHz in 20 ms packets, which we only send."""
    return (
        "v=0\r\n"
        f"o=tocsin {session_id} {session_id} IN IP4 {host}\r\n"
        "s=tocsin\r\n"
        f"c=IN IP4 {host}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP {PCMA} {PCMU}\r\n"
        f"a=rtpmap:{PCMA} PCMA/8000\r\n"
        f"a=rtpmap:{PCMU} PCMU/8000\r\n"
        "a=ptime:20\r\n"
        "a=sendonly\r\n"
    ).encode()


def parse_answer(body: bytes) -> MediaAnswer:
    """Read the audio destination and codec from an SDP answer."""
    host = ""
    port = -1
    formats: list[int] = []
    for raw in body.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line.startswith("c=") and (not host or port < 0):
            host = line.split()[-1]
        elif line.startswith("m=audio ") and port < 0:
            fields = line.split()
            try:
                port = int(fields[1].split("/")[0])
                formats = [int(f) for f in fields[3:] if f.isdigit()]
            except (IndexError, ValueError) as exc:
                raise SipError(f"bad SDP media line {line!r}") from exc
    if not host or port <= 0:
        raise SipError("SDP answer has no audio connection address or port")
    chosen = next((f for f in formats if f in (PCMA, PCMU)), None)
    if chosen is None:
        raise SipError(f"SDP answer accepts neither PCMA nor PCMU: {formats}")
    return MediaAnswer(host=host, port=port, payload_type=chosen)
