"""The pooled client: per-recipient answers, drops, stale connections, STARTTLS and AUTH."""

from __future__ import annotations

import asyncio
import email
import socket
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.policy import default

from aiosmtpd.handlers import AsyncMessage
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from gateways.smtp import Content, Disposition, RelayConfig, SmtpPool, compose
from tests.gateways.smtp.conftest import RelayFactory

MESSAGE = compose(
    Content(
        from_name="BE-Alert",
        from_address="alert@be-alert.test",
        subject="Überschwemmung: évacuez",
        text="Quittez la zone.",
        language="fr",
        message_id="<m1@be-alert.test>",
        date=datetime(2026, 12, 3, 15, 0, tzinfo=UTC),
    )
)


def _pool(port: int, **fields: object) -> SmtpPool:
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "connections": 2,
        "timeout_s": 5.0,
        **fields,
    }
    return SmtpPool(RelayConfig(**settings))  # type: ignore[arg-type]


async def test_each_recipient_gets_its_own_answer_in_one_transaction(relay: RelayFactory) -> None:
    sim = await relay(temporary_pattern="^busy", permanent_pattern="^nobody")
    pool = _pool(sim.port)
    try:
        replies = await pool.send(
            envelope_from="bounces+t1@be-alert.test",
            recipients=["a@example.org", "busy@example.org", "nobody@example.org", "b@example.org"],
            message=MESSAGE,
        )
    finally:
        await pool.close()
    assert [(r.address, r.disposition, r.code) for r in replies] == [
        ("a@example.org", Disposition.ACCEPTED, 250),
        ("busy@example.org", Disposition.TEMPORARY, 451),
        ("nobody@example.org", Disposition.PERMANENT, 550),
        ("b@example.org", Disposition.ACCEPTED, 250),
    ]
    assert sim.transactions == 1
    assert sim.received == {"a@example.org": 1, "b@example.org": 1}


async def test_a_transaction_where_every_recipient_is_refused_sends_no_data(
    relay: RelayFactory,
) -> None:
    sim = await relay(permanent_pattern="@gone")
    pool = _pool(sim.port, connections=1)
    try:
        first = await pool.send(
            envelope_from="b@x.test", recipients=["a@gone.test", "b@gone.test"], message=MESSAGE
        )
        second = await pool.send(
            envelope_from="b@x.test", recipients=["c@ok.test"], message=MESSAGE
        )
    finally:
        await pool.close()
    assert {r.disposition for r in first} == {Disposition.PERMANENT}
    assert second[0].disposition is Disposition.ACCEPTED
    assert sim.data_commands == 1
    assert sim.connections == 1


async def test_a_drop_after_data_leaves_that_transaction_unknown_and_the_next_works(
    relay: RelayFactory,
) -> None:
    sim = await relay(drop_every=2, permanent_pattern="^no@")
    pool = _pool(sim.port, connections=1)
    try:
        first = await pool.send(envelope_from="b@x.test", recipients=["f@x.test"], message=MESSAGE)
        dropped = await pool.send(
            envelope_from="b@x.test", recipients=["a@x.test", "no@x.test"], message=MESSAGE
        )
        retried = await pool.send(
            envelope_from="b@x.test", recipients=["a@x.test"], message=MESSAGE
        )
    finally:
        await pool.close()
    assert first[0].disposition is Disposition.ACCEPTED
    assert [r.disposition for r in dropped] == [Disposition.UNKNOWN, Disposition.PERMANENT]
    assert retried[0].disposition is Disposition.ACCEPTED
    # The relay took it twice: the duplicate is that one transaction's recipient, nobody else.
    assert sim.received == {"f@x.test": 1, "a@x.test": 2}
    assert sim.connections == 2


async def test_a_drop_before_data_leaves_every_recipient_to_retry(relay: RelayFactory) -> None:
    sim = await relay(drop_every=1, drop_after_data=False)
    pool = _pool(sim.port, connections=1)
    try:
        replies = await pool.send(
            envelope_from="b@x.test", recipients=["a@x.test", "b@x.test"], message=MESSAGE
        )
    finally:
        await pool.close()
    assert {r.disposition for r in replies} == {Disposition.UNKNOWN}
    assert sim.received == {}


async def test_a_connection_the_relay_closed_while_idle_is_replaced_silently(
    relay: RelayFactory,
) -> None:
    sim = await relay()
    pool = _pool(sim.port, connections=1)
    try:
        await pool.send(envelope_from="b@x.test", recipients=["a@x.test"], message=MESSAGE)
        sim.drop_connections()
        await asyncio.sleep(0)
        replies = await pool.send(
            envelope_from="b@x.test", recipients=["b@x.test"], message=MESSAGE
        )
    finally:
        await pool.close()
    assert replies[0].disposition is Disposition.ACCEPTED
    assert sim.received == {"a@x.test": 1, "b@x.test": 1}


async def test_an_unreachable_relay_is_temporary_for_everyone() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        pool = _pool(port, timeout_s=2.0)
        replies = await pool.send(
            envelope_from="b@x.test", recipients=["a@x.test"], message=MESSAGE
        )
        await pool.close()
    assert replies[0].disposition is Disposition.TEMPORARY
    assert replies[0].code == 0


async def test_transactions_share_the_pool_concurrently(relay: RelayFactory) -> None:
    sim = await relay()
    pool = _pool(sim.port, connections=3)
    batches = [[f"u{b}-{i}@x.test" for i in range(100)] for b in range(9)]
    try:
        results = await asyncio.gather(
            *(pool.send(envelope_from="b@x.test", recipients=b, message=MESSAGE) for b in batches)
        )
    finally:
        await pool.close()
    assert all(r.disposition is Disposition.ACCEPTED for rs in results for r in rs)
    assert sim.transactions == 9
    assert sim.connections == 3
    assert len(sim.received) == 900
    assert set(sim.received.values()) == {1}


async def test_busy_counts_the_connections_in_a_transaction(relay: RelayFactory) -> None:
    sim = await relay()
    pool = _pool(sim.port, connections=3)
    assert pool.busy == 0
    sends = asyncio.gather(
        *(
            pool.send(envelope_from="b@x.test", recipients=[f"u{i}@x.test"], message=MESSAGE)
            for i in range(5)
        )
    )
    try:
        await asyncio.sleep(0)  # every send has taken a free connection, or waits for one
        assert pool.busy == 3
        await sends
        assert pool.busy == 0
    finally:
        await pool.close()


class _Inbox(AsyncMessage):
    """aiosmtpd's own message handler: an independent server that keeps what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Message] = []

    async def handle_message(self, message: Message) -> None:
        self.messages.append(message)


async def test_starttls_and_auth_with_aiosmtpd_as_an_independent_server(
    tls_files: tuple[str, str],
) -> None:
    import ssl

    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = _Inbox()
    logins: list[str] = []

    def authenticate(
        server: SMTP, session: object, envelope: object, mech: str, data: object
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == b"relay-secret"
        if ok and isinstance(data, LoginPassword):
            logins.append(data.login.decode())
        return AuthResult(success=ok)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            inbox,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            authenticator=authenticate,
        ),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    pool = _pool(port, tls="starttls", username="tocsin", password="relay-secret", ca_file=cert)
    try:
        replies = await pool.send(
            envelope_from="bounces+t9@be-alert.test",
            recipients=["jean@example.org", "marie@example.org"],
            message=MESSAGE,
        )
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()
    assert {r.disposition for r in replies} == {Disposition.ACCEPTED}
    assert logins == ["tocsin"]
    assert len(inbox.messages) == 1
    received = email.message_from_bytes(inbox.messages[0].as_bytes(), policy=default)
    assert isinstance(received, EmailMessage)
    assert received["Subject"] == "Überschwemmung: évacuez"
    assert received["X-RcptTo"] == "jean@example.org, marie@example.org"


async def test_a_relay_demanding_tls_refuses_a_plain_client(tls_files: tuple[str, str]) -> None:
    cert, key = tls_files
    from simulators.smtp import RelayConfig as SimConfig
    from simulators.smtp import RelaySimulator

    sim = RelaySimulator(SimConfig(username="tocsin", password="pw", tls_cert=cert, tls_key=key))
    await sim.start()
    plain = _pool(sim.port, tls="none")
    good = _pool(sim.port, tls="auto", username="tocsin", password="pw", ca_file=cert)
    try:
        refused = await plain.send(
            envelope_from="b@x.test", recipients=["a@x.test"], message=MESSAGE
        )
        taken = await good.send(envelope_from="b@x.test", recipients=["a@x.test"], message=MESSAGE)
    finally:
        await plain.close()
        await good.close()
        await sim.stop()
    assert refused[0].disposition is not Disposition.ACCEPTED
    assert taken[0].disposition is Disposition.ACCEPTED
    assert sim.received == {"a@x.test": 1}


async def test_an_address_that_cannot_go_on_the_wire_is_refused_without_the_relay(
    relay: RelayFactory,
) -> None:
    sim = await relay()
    pool = _pool(sim.port, connections=1)
    try:
        replies = await pool.send(
            envelope_from="b@x.test",
            recipients=["jürgen@example.de", "a@x.test>\r\nDATA", "ok@x.test"],
            message=MESSAGE,
        )
    finally:
        await pool.close()
    assert [(r.disposition, r.code) for r in replies] == [
        (Disposition.PERMANENT, 553),
        (Disposition.PERMANENT, 553),
        (Disposition.ACCEPTED, 250),
    ]
    assert sim.rcpts == {"ok@x.test": 1}
