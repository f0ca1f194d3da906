"""RFC 5322 / MIME messages for mass e-mail: one message, many recipients, signed once.

The message carries no recipient of its own (`To: undisclosed-recipients:;`), so the same bytes
(and the same DKIM signature) go to every recipient of every transaction.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from datetime import datetime
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr

import dkim  # type: ignore[import-untyped]

#: Headers the DKIM signature covers (RFC 6376 5.4.1: From is mandatory).
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"content-language",
    b"auto-submitted",
)


_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A domain's DKIM key: `selector._domainkey.domain` publishes its public half."""

    domain: str
    selector: str
    #: PEM (PKCS#1 or PKCS#8) RSA private key.
    private_key: bytes


@dataclass(frozen=True, slots=True)
class Content:
    """What one message says: the same for every recipient of one alert, version and language."""

    from_name: str
    from_address: str
    subject: str
    text: str
    language: str
    message_id: str
    date: datetime
    #: An optional footer line (why the reader gets this, where to unsubscribe).
    footer: str = ""


def _html(content: Content) -> str:
    paragraphs = "".join(
        f"<p>{html.escape(p)}</p>" for p in content.text.split("\n\n") if p.strip()
    )
    footer = f'<hr><p style="font-size:small">{html.escape(content.footer)}</p>'
    return (
        f'<!DOCTYPE html><html lang="{html.escape(content.language)}"><head>'
        f'<meta charset="utf-8"><title>{html.escape(content.subject)}</title></head><body>'
        f"<h1>{html.escape(content.subject)}</h1>{paragraphs}"
        f"{footer if content.footer else ''}</body></html>"
    )


def _text_part(body: str, subtype: str) -> MIMEText:
    return MIMEText(body, subtype, _charset=_UTF8_QP)  # type: ignore[arg-type]


def compose(content: Content) -> bytes:
    """The message as bytes on the wire (CRLF lines, 7-bit: quoted-printable UTF-8 bodies).

    Built with the compat32 API: its `Header` encodes a whole UTF-8 subject as encoded words,
    where the newer header folder drops the space between an encoded and a plain word.
    """
    msg = MIMEMultipart("alternative")
    msg["From"] = formataddr((content.from_name, content.from_address), charset="utf-8")
    msg["To"] = "undisclosed-recipients:;"
    msg["Subject"] = Header(content.subject, "utf-8", header_name="Subject")  # type: ignore[assignment]
    msg["Date"] = format_datetime(content.date)
    msg["Message-ID"] = content.message_id
    msg["Content-Language"] = content.language
    # RFC 3834: machine-generated; auto-responders and vacation replies stay silent.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    # An alert is not bulk mail to delay: no `Precedence: bulk`, which some relays deprioritise.
    text = content.text + (f"\n\n-- \n{content.footer}" if content.footer else "")
    msg.attach(_text_part(text.replace("\n", "\r\n"), "plain"))
    msg.attach(_text_part(_html(content), "html"))
    out = io.BytesIO()
    BytesGenerator(out, policy=compat32.clone(linesep="\r\n", max_line_length=78)).flatten(msg)
    return out.getvalue()


def sign(message: bytes, *, key: DkimKey) -> bytes:
    """The message with a DKIM-Signature (rsa-sha256, relaxed/relaxed) prepended, once."""
    header = dkim.sign(
        message,
        key.selector.encode(),
        key.domain.encode(),
        key.private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=list(SIGNED_HEADERS),
    )
    return bytes(header) + message
