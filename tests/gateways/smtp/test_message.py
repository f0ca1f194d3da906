"""Messages as a mail reader sees them: headers, both parts, UTF-8 intact, DKIM that verifies."""

from __future__ import annotations

import base64
import email
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default

import dkim  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization

from gateways.smtp import Content, DkimKey, RelayConfig, SmtpPool, compose, sign
from tests.gateways.smtp.conftest import RelayFactory

CONTENT = Content(
    from_name="BE-Alert Gent",
    from_address="alert@be-alert.test",
    subject="OEFENING - Overstroming: ga naar hogere verdieping \u2013 Ærø ĳs",
    text="Évacuez le quartier Sint-Pieters.\n\nÉcoutez la radio locale. Ça va durer.",
    language="fr",
    message_id="<tocsin.a1.2.fr@be-alert.test>",
    date=datetime(2026, 12, 3, 15, 0, 7, tzinfo=UTC),
    footer="Vous êtes inscrit sur be-alert.test.",
)


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_the_message_parses_with_headers_and_both_parts() -> None:
    raw = compose(CONTENT)
    assert raw.isascii(), "7-bit on the wire: no relay needs 8BITMIME or SMTPUTF8"
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    msg = _parse(raw)
    assert msg["Subject"] == CONTENT.subject
    assert msg["From"].addresses[0].display_name == "BE-Alert Gent"
    assert msg["From"].addresses[0].addr_spec == "alert@be-alert.test"
    assert msg["To"] == "undisclosed-recipients:;"
    assert msg["Message-ID"] == "<tocsin.a1.2.fr@be-alert.test>"
    assert msg["Date"].datetime == CONTENT.date
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Content-Language"] == "fr"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    text = plain.get_content()
    assert "Évacuez le quartier Sint-Pieters." in text
    assert "Ça va durer." in text
    assert "Vous êtes inscrit" in text
    page = html.get_content()
    assert "<p>Évacuez le quartier Sint-Pieters.</p>" in page
    assert "Ærø ĳs" in page
    assert 'lang="fr"' in page


def test_html_is_escaped() -> None:
    raw = compose(
        Content(
            from_name="x",
            from_address="a@b.test",
            subject="<b>",
            text="<script>alert(1)</script> & co",
            language="en",
            message_id="<m@b.test>",
            date=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )
    html = _parse(raw).get_body(preferencelist=("html",))
    assert html is not None
    page = html.get_content()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "&amp; co" in page


def _dns(private_pem: bytes) -> dict[bytes, bytes]:
    key = serialization.load_pem_private_key(private_pem, password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {b"mail2026._domainkey.be-alert.test.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)}


async def test_dkim_signed_once_verifies_after_the_relay(
    relay: RelayFactory, dkim_key: bytes
) -> None:
    key = DkimKey(domain="be-alert.test", selector="mail2026", private_key=dkim_key)
    signed = sign(compose(CONTENT), key=key)
    records = _dns(dkim_key)
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: records.get(name))
    # The very same bytes go to every recipient: what each relay receives verifies.
    sim = await relay(keep_messages=True)
    pool = SmtpPool(RelayConfig(host="127.0.0.1", port=sim.port, tls="none", connections=1))
    try:
        await pool.send(
            envelope_from="bounces+t@be-alert.test",
            recipients=["a@example.org", "b@example.org"],
            message=signed,
        )
    finally:
        await pool.close()
    for address in ("a@example.org", "b@example.org"):
        (received,) = sim.messages[address]
        assert dkim.verify(received, dnsfunc=lambda name, timeout=5: records.get(name))
        assert _parse(received)["Subject"] == CONTENT.subject
    tampered = signed.replace(b"Sint-Pieters", b"Sint-Amands")
    assert not dkim.verify(tampered, dnsfunc=lambda name, timeout=5: records.get(name))
