"""Fixtures: simulated SMSCs (well-behaved or broken) and clients bound to them."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateways.smpp import BindConfig, DeliveryReceipt, SmppClient
from simulators.smsc import SmscConfig, SmscSimulator

SmscFactory = Callable[..., Awaitable[SmscSimulator]]


@dataclasses.dataclass
class Bound:
    """A client with what it reported."""

    client: SmppClient
    receipts: list[DeliveryReceipt]
    states: list[bool]


ClientFactory = Callable[..., Awaitable[Bound]]

FAST = {
    "enquire_link_s": 5.0,
    "dead_link_s": 10.0,
    "response_timeout_s": 10.0,
    "reconnect_min_s": 0.02,
    "reconnect_max_s": 0.2,
    "connect_timeout_s": 2.0,
    "unbind_timeout_s": 2.0,
}


def bind_config(sim: SmscSimulator, **fields: Any) -> BindConfig:
    """A BindConfig for `sim`'s account with test-sized timers; `fields` override."""
    settings: dict[str, Any] = {
        "name": "test",
        "host": "127.0.0.1",
        "port": sim.port,
        "system_id": sim.config.system_id,
        "password": sim.config.password,
        "source_addr": "TOCSIN",
        **FAST,
    }
    settings.update(fields)
    return BindConfig(**settings)


@pytest.fixture
async def smsc() -> AsyncIterator[SmscFactory]:
    """Start simulators with the given SmscConfig fields; all stopped after the test."""
    started: list[SmscSimulator] = []

    async def start(**fields: Any) -> SmscSimulator:
        fields.setdefault("seed", 1)
        sim = SmscSimulator(SmscConfig(**fields))
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest.fixture
async def connect() -> AsyncIterator[ClientFactory]:
    """Start clients bound to a simulator; closed after the test."""
    clients: list[SmppClient] = []

    async def start(sim: SmscSimulator, *, wait: bool = True, **fields: Any) -> Bound:
        receipts: list[DeliveryReceipt] = []
        states: list[bool] = []
        client = SmppClient(
            bind_config(sim, **fields), on_receipt=receipts.append, on_bind_state=states.append
        )
        clients.append(client)
        await client.start()
        if wait:
            await client.wait_bound(5)
        return Bound(client, receipts, states)

    yield start
    for client in clients:
        await client.close()
