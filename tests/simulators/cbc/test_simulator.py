"""`python -m simulators.cbc`: osmo-cbc's ECBE checks and its one-message-per-identifier rule."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import pytest

from simulators.cbc.config import CbcConfig
from simulators.cbc.ecbe import BadRequest, check_message
from simulators.cbc.server import CbcSimulator

pytestmark = pytest.mark.timeout(30)


def body(**changes: Any) -> dict[str, Any]:
    """A valid cbc_message, with changes at the top level."""
    out: dict[str, Any] = {
        "cbe_name": "tocsin",
        "category": "high_priority",
        "repetition_period": 60,
        "scope": {"scope_plmn": {}},
        "smscb_message": {
            "message_id": 4370,
            "serial_nr": {
                "serial_nr_decoded": {"geo_scope": "plmn_wide", "msg_code": 7, "update_nr": 0}
            },
            "payload": {"payload_encoded": {"dcs": 5, "pages": ["0d" * 82]}},
        },
    }
    out.update(changes)
    return out


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"cbe_name": None}, "cbe_name"),
        ({"category": "urgent"}, "category"),
        ({"repetition_period": 4096}, "repetition_period"),
        ({"scope": {"scope_cells": {"cells": ["c1"]}}}, "scope_plmn"),
        ({"smscb_message": {}}, "serial_nr"),
    ],
)
def test_bad_messages_name_their_field(changes: dict[str, Any], named: str) -> None:
    """osmo-cbc's rules, each refusal naming the field (plmn-only, as osmo-cbc)."""
    with pytest.raises(BadRequest, match=named):
        check_message(body(**changes), plmn_only=True)


async def test_one_message_per_identifier_and_misbehaviour() -> None:
    """409 while an identifier is active, 404 deleting an unknown one; outage answers 503."""
    sim = CbcSimulator(CbcConfig())
    port = await sim.start()
    url = f"http://127.0.0.1:{port}/api/ecbe/v1/message"
    try:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for method, target, payload in [
                ("POST", url, body()),
                ("POST", url, body()),
                ("DELETE", f"{url}/4370", None),
                ("DELETE", f"{url}/4370", None),
            ]:
                async with http.request(method, target, json=payload) as resp:
                    statuses.append(resp.status)
            assert statuses == [201, 409, 200, 404]
            sim.set(outage=True)
            async with http.post(url, json=body()) as resp:
                assert resp.status == 503
    finally:
        await sim.stop()


def post(url: str, payload: dict[str, Any]) -> int:
    """POST JSON, return the status (errors included)."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            status: int = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status


def test_runs_as_a_process_and_reports_on_stop() -> None:
    """`python -m simulators.cbc` prints where it listens, and what it saw when stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.cbc", "--name", "opA", "--lbsms-zone", "polygon"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "listening"
        assert ready["name"] == "opA"
        assert ready["port"] > 0
        base = f"http://127.0.0.1:{ready['port']}"
        assert post(f"{base}/api/ecbe/v1/message", body()) == 201
        lbsms = {"request_id": "r1", "texts": {"nl": "Test"}, "validity_s": 60}
        assert post(f"{base}/lbsms/v1/requests", {**lbsms, "zone": {"cells": ["c1"]}}) == 400
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        summary = json.loads(out.splitlines()[-1])
        assert summary["event"] == "stopped"
        assert (summary["message_ids"], summary["active"], summary["deleted"]) == (
            [4370],
            [4370],
            0,
        )
        assert summary["lbsms_requests"] == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
