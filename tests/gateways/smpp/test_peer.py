"""Interoperability with an independent SMSC: the npm `smpp` package in server mode.

`make smpp-peer` (a prerequisite of `make pytest`) installs it with `npm ci`; without Node.js or
without that install this test fails and says what to run. It never skips.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateways.smpp import (
    BindConfig,
    DeliveryReceipt,
    ReceiptState,
    SmppClient,
    SubmitOutcome,
    SubmitRequest,
)
from gateways.smpp.gsm import is_gsm, segment_count
from tests.gateways.smpp.conftest import FAST

PEER = Path(__file__).parent / "peer"


class Peer:
    """The node SMSC as a subprocess; its JSON lines are read into `events`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.events.append(json.loads(line))
            self._changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        """Events of one kind, in arrival order."""
        return [e for e in self.events if e["event"] == kind]

    async def wait(self, kind: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """Wait for `count` events of a kind."""
        async with asyncio.timeout(timeout):
            while len(self.of(kind)) < count:
                if self._reader.done():
                    raise AssertionError(f"SMSC peer exited: {self.events}")
                self._changed.clear()
                await asyncio.wait(
                    [asyncio.ensure_future(self._changed.wait()), self._reader],
                    return_when=asyncio.FIRST_COMPLETED,
                )
        return self.of(kind)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    """Start the npm SMSC on a free loopback port."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is required for the SMPP interoperability test: install node and npm")
    if not (PEER / "node_modules" / "smpp").is_dir():
        pytest.fail(f"npm smpp is not installed: run `make smpp-peer` (npm ci in {PEER})")
    proc = await asyncio.create_subprocess_exec(
        node,
        "smsc.js",
        "--system-id",
        "tocsin",
        "--password",
        "secret",
        cwd=PEER,
        stdout=asyncio.subprocess.PIPE,
    )
    p = Peer(proc)
    try:
        await p.wait("listening", 1)
        yield p
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(10):
            await proc.wait()
        await p._reader


async def test_against_npm_smpp_server(peer: Peer) -> None:
    port = peer.of("listening")[0]["port"]
    receipts: list[DeliveryReceipt] = []
    client = SmppClient(
        BindConfig(
            name="npm",
            host="127.0.0.1",
            port=port,
            system_id="tocsin",
            password="secret",
            source_addr="TOCSIN",
            **FAST,  # type: ignore[arg-type]
        ),
        on_receipt=receipts.append,
    )
    gsm_long = "Alerte inondation [zone 4] : montez aux etages, coupez le gaz. 5€ " * 3
    ucs2_long = "L\u2019eau monte : \u00e9vacuez la zone rouge imm\u00e9diatement. " * 4
    reqs = [
        SubmitRequest("+32470000001", text="Test: {short} ~ GSM \\ ^ | message"),
        SubmitRequest("+32470000002", text="Ne bougez pas \u2019 UCS-2"),
        SubmitRequest("+32470000003", text=gsm_long),
        SubmitRequest("32470000004", text=ucs2_long),
    ]
    await client.start()
    try:
        await client.wait_bound(10)
        results = await client.submit_many(reqs)
        total = sum(segment_count(r.text) for r in reqs)
        await peer.wait("receipt_acked", total)
    finally:
        await client.close()
    await peer.wait("unbind", 1)

    assert [r.outcome for r in results] == [SubmitOutcome.ACCEPTED] * 4
    assert [len(r.message_ids) for r in results] == [1, 1, 2, 4]
    submits = peer.of("submit_sm")
    assert len(submits) == total
    assert {s["source_addr"] for s in submits} == {"TOCSIN"}
    assert {s["source_addr_ton"] for s in submits} == {5}
    assert {s["dest_addr_ton"] for s in submits} == {1}
    by_dest: dict[str, list[dict[str, Any]]] = {}
    for s in submits:
        by_dest.setdefault(s["destination_addr"], []).append(s)
    for req in reqs:
        parts = sorted(
            by_dest[req.destination.lstrip("+")],
            key=lambda s: s["concat"]["number"] if s["concat"] else 0,
        )
        assert "".join(p["text"] for p in parts) == req.text
        assert {p["data_coding"] for p in parts} == ({0} if is_gsm(req.text) else {8})
        if len(parts) > 1:
            assert [p["concat"]["number"] for p in parts] == list(range(1, len(parts) + 1))
            assert {p["concat"]["total"] for p in parts} == {len(parts)}
            assert len({p["concat"]["ref"] for p in parts}) == 1
            assert {p["esm_class"] & 0x40 for p in parts} == {0x40}
    ids = {mid for r in results for mid in r.message_ids}
    assert {r.message_id for r in receipts} == ids
    assert {r.state for r in receipts} == {ReceiptState.DELIVERED}
    assert {a["command_status"] for a in peer.of("receipt_acked")} == {0}
