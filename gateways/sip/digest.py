"""HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617 with qop=auth, MD5)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from gateways.sip.errors import SipError

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True, slots=True)
class Credentials:
    """A trunk account."""

    username: str  #: the account name the trunk gave us
    password: str  #: its secret


def parse_challenge(value: str) -> dict[str, str]:
    """Parameters of a `Digest ...` WWW-/Proxy-Authenticate value."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipError(f"unsupported authentication scheme {scheme!r}")
    return {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(rest)
    }


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_response(
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    realm: str,
    nonce: str,
    qop: str = "",
    cnonce: str = "",
    nc: str = "00000001",
) -> str:
    """The `response` value of a digest authorisation (shared by UAC and simulator)."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    if qop:
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


def authorization(*, challenge: str, method: str, uri: str, credentials: Credentials) -> str:
    """The Authorization / Proxy-Authorization value answering a challenge."""
    params = parse_challenge(challenge)
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper() != "MD5":
        raise SipError(f"unsupported digest algorithm {algorithm!r}")
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else ""
    cnonce = secrets.token_hex(8) if qop else ""
    response = digest_response(
        method=method,
        uri=uri,
        username=credentials.username,
        password=credentials.password,
        realm=realm,
        nonce=nonce,
        qop=qop,
        cnonce=cnonce,
    )
    parts = [
        f'username="{credentials.username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f'response="{response}"',
        "algorithm=MD5",
    ]
    if qop:
        parts += [f"qop={qop}", "nc=00000001", f'cnonce="{cnonce}"']
    if "opaque" in params:
        parts.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(parts)
