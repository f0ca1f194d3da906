"""SIP messages (RFC 3261 §7): parse a datagram into a request or response, and encode one."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from gateways.sip.errors import SipParseError

#: RFC 3261 §7.3.3 compact header forms we may receive.
COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
}

#: Magic cookie every RFC 3261 branch starts with.
BRANCH_COOKIE = "z9hG4bK"

_TAG = re.compile(r";\s*tag=([^;>\s]+)", re.IGNORECASE)
_BRANCH = re.compile(r";\s*branch=([^;,\s]+)", re.IGNORECASE)
_URI_IN_BRACKETS = re.compile(r"<([^>]*)>")
_CSEQ = re.compile(r"^\s*(\d+)\s+([A-Za-z]+)\s*$")


def new_branch() -> str:
    """A fresh RFC 3261 branch parameter."""
    return BRANCH_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    """A fresh From/To tag."""
    return secrets.token_hex(6)


@dataclass(slots=True)
class Headers:
    """Ordered SIP headers, looked up case-insensitively and by compact form."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """The first value of a header, or None."""
        key = name.lower()
        for k, v in self.items:
            if k == key:
                return v
        return None

    def all(self, name: str) -> list[str]:
        """Every value of a header, in order (comma-joined values stay joined)."""
        key = name.lower()
        return [v for k, v in self.items if k == key]

    def add(self, name: str, value: str) -> None:
        """Append a header."""
        self.items.append((name.lower(), value))


@dataclass(slots=True)
class Request:
    """A SIP request."""

    method: str
    uri: str
    headers: Headers
    body: bytes = b""

    def encode(self) -> bytes:
        """Wire form with a correct Content-Length."""
        return _encode(f"{self.method} {self.uri} SIP/2.0", self.headers, self.body)


@dataclass(slots=True)
class Response:
    """A SIP response."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def encode(self) -> bytes:
        """Wire form with a correct Content-Length."""
        return _encode(f"SIP/2.0 {self.status} {self.reason}", self.headers, self.body)


Message = Request | Response

_CANONICAL = {
    "via": "Via",
    "from": "From",
    "to": "To",
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "contact": "Contact",
    "max-forwards": "Max-Forwards",
    "content-type": "Content-Type",
    "content-length": "Content-Length",
    "www-authenticate": "WWW-Authenticate",
    "proxy-authenticate": "Proxy-Authenticate",
    "proxy-authorization": "Proxy-Authorization",
    "retry-after": "Retry-After",
    "user-agent": "User-Agent",
    "rseq": "RSeq",
    "rack": "RAck",
}


def _encode(first: str, headers: Headers, body: bytes) -> bytes:
    lines = [first]
    for k, v in headers.items:
        if k == "content-length":
            continue
        lines.append(f"{_CANONICAL.get(k, k.title())}: {v}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse(data: bytes) -> Message:
    """Parse one datagram; raises SipParseError naming what is wrong."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    if not sep:
        raise SipParseError("no blank line after the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("headers are not UTF-8") from exc
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    headers = Headers()
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and headers.items:
            k, v = headers.items[-1]
            headers.items[-1] = (k, v + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise SipParseError(f"header line without a name: {line[:40]!r}")
        key = name.strip().lower()
        headers.add(COMPACT.get(key, key), value.strip())
    length = headers.get("content-length")
    if length is not None:
        try:
            body = body[: int(length)]
        except ValueError as exc:
            raise SipParseError(f"Content-Length is not a number: {length!r}") from exc
    for needed in ("via", "call-id", "cseq", "from", "to"):
        if headers.get(needed) is None:
            raise SipParseError(f"missing {needed} header")
    if start.startswith("SIP/2.0 "):
        parts = start.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
            raise SipParseError(f"bad status line {start[:40]!r}")
        return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, body)
    parts = start.split(" ")
    if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha():
        raise SipParseError(f"bad request line {start[:40]!r}")
    return Request(parts[0].upper(), parts[1], headers, body)


def tag_of(value: str | None) -> str:
    """The tag parameter of a From/To value ('' when absent)."""
    if not value:
        return ""
    m = _TAG.search(value)
    return m.group(1) if m else ""


def branch_of(message: Message) -> str:
    """The branch of the topmost Via ('' when absent)."""
    via = message.headers.get("via") or ""
    m = _BRANCH.search(via.split(",")[0])
    return m.group(1) if m else ""


def cseq_of(message: Message) -> tuple[int, str]:
    """CSeq number and method."""
    m = _CSEQ.match(message.headers.get("cseq") or "")
    if m is None:
        raise SipParseError(f"bad CSeq {message.headers.get('cseq')!r}")
    return int(m.group(1)), m.group(2).upper()


def uri_of(value: str) -> str:
    """The URI inside a name-addr (`"x" <sip:a@b>;tag=1` -> `sip:a@b`)."""
    m = _URI_IN_BRACKETS.search(value)
    return m.group(1) if m else value.split(";")[0].strip()
