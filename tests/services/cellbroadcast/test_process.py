"""`python -m services.cellbroadcast` with three simulated operators, called as alerting does."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from tocsin.cellbroadcast.v1 import cellbroadcast_pb2_grpc

from services.alerting.model import Channel
from services.alerting.ports import BroadcastContent
from services.alerting.remote import CellBroadcastClient
from services.cellbroadcast.settings import Settings
from services.kernel.errors import InvalidArgument
from simulators.cbc.config import CbcConfig
from simulators.cbc.server import CbcSimulator
from simulators.lbsms.server import polygon_km2
from stack.embedded import ManagedProcess
from tests.services.cellbroadcast.conftest import CELLS, OPERATORS, ZONE
from tests.services.kernel.conftest import ServiceProcess, watch_until

pytestmark = pytest.mark.timeout(90)


def content(version: int = 1, *, text: str = "Blijf binnen.") -> BroadcastContent:
    """A test alert's content in Dutch and English."""
    return BroadcastContent(
        version=version,
        kind="test",
        severity="Minor",
        urgency="Immediate",
        certainty="Observed",
        texts=(("nl", text), ("en", "Stay inside.")),
        expires_unix_s=(datetime.now(UTC) + timedelta(hours=1)).timestamp(),
        sender="BE-Alert",
    )


@pytest.fixture
async def service(
    start_service: object, pg_dsn: str, private_redis: ManagedProcess, sims: dict[str, CbcSimulator]
) -> ServiceProcess:
    """The service, SERVING, with every simulated operator as CBC and LB-SMS platform."""
    urls = ",".join(f"{op}=http://127.0.0.1:{s.port}" for op, s in sims.items())
    proc: ServiceProcess = start_service(  # type: ignore[operator]
        "cellbroadcast",
        database_url=pg_dsn,
        redis_url=private_redis.url,
        TOCSIN_CBC=urls,
        TOCSIN_LBSMS=urls,
        TOCSIN_RETRY_MIN_S="0.05",
        TOCSIN_RETRY_MAX_S="0.2",
    )
    await watch_until(proc.target, health_pb2.HealthCheckResponse.SERVING)
    return proc


async def test_alerting_client_broadcasts_updates_and_withdraws(
    service: ServiceProcess, sims: dict[str, CbcSimulator]
) -> None:
    """The test identifier, an update as delete-then-post, LB-SMS phones, then the withdrawal."""
    async with grpc.aio.insecure_channel(service.target) as channel:
        client = CellBroadcastClient(
            cellbroadcast_pb2_grpc.CellBroadcastServiceStub(channel), timeout_s=10
        )
        acks = await client.broadcast(
            alert_id="t1",
            cap_xml="<alert/>",
            cells=CELLS,
            location_based_sms=False,
            content=content(),
        )
        assert [(a.operator, a.accepted, a.cells) for a in acks] == [
            (op, True, 3) for op in sorted(OPERATORS)
        ]
        lb = await client.broadcast(
            alert_id="t1",
            cap_xml="<alert/>",
            cells=CELLS,
            location_based_sms=True,
            content=content(),
        )
        assert {a.phones for a in lb} == {750}
        await client.broadcast(
            alert_id="t1",
            cap_xml="<alert/>",
            cells=CELLS,
            location_based_sms=False,
            content=content(2, text="Einde van de test."),
        )
        await client.withdraw(alert_id="t1")
        status = await client.status(alert_id="t1")
    for sim in sims.values():
        assert [(e.method, e.message_id, e.status) for e in sim.state.events] == [
            ("POST", 4380, 201),
            ("POST", 4393, 201),
            ("DELETE", 4380, 200),
            ("DELETE", 4393, 200),
            ("POST", 4380, 201),
            ("POST", 4393, 201),
            ("DELETE", 4380, 200),
            ("DELETE", 4393, 200),
        ]
        assert sim.lbsms.cancelled == ["t1.v1"]
    cb = [s for s in status if s.channel is Channel.CELL_BROADCAST and s.action == "broadcast"]
    assert {(s.version, s.state) for s in cb} == {(1, "withdrawn"), (2, "withdrawn")}


async def test_bad_request_names_the_field(service: ServiceProcess) -> None:
    """A text over 15 pages is INVALID_ARGUMENT on `texts`, not a stack trace."""
    async with grpc.aio.insecure_channel(service.target) as channel:
        client = CellBroadcastClient(
            cellbroadcast_pb2_grpc.CellBroadcastServiceStub(channel), timeout_s=10
        )
        with pytest.raises(InvalidArgument) as caught:
            await client.broadcast(
                alert_id="t2",
                cap_xml="",
                cells=CELLS,
                location_based_sms=False,
                content=content(text="ë" * 700),
            )
    assert caught.value.field == "texts"


def test_operators_file_gives_each_operator_its_platforms(tmp_path: Path) -> None:
    """`[operators.<name>.cbc]` and `.lbsms` sections, additive to the SMS ones."""
    path = tmp_path / "operators.toml"
    path.write_text(
        "[operators.proximus]\nprefixes = ['3247']\n"
        "[operators.proximus.cbc]\nurl = 'http://127.0.0.1:8101'\nscope = 'plmn'\n"
        "[operators.proximus.lbsms]\nurl = 'http://127.0.0.1:8201'\n"
        "[operators.base]\nprefixes = ['3248']\n"
        "[operators.base.cbc]\nurl = 'http://127.0.0.1:8103'\n",
        encoding="utf-8",
    )
    settings = Settings(database_url="postgresql://x/y", redis_url="redis://x", operators_file=path)
    platforms = {p.operator: p for p in settings.platforms()}
    proximus = platforms["proximus"].cbc
    assert proximus is not None
    assert proximus.scope == "plmn"
    assert platforms["proximus"].lbsms is not None
    assert platforms["base"].lbsms is None
    path.write_text("[operators.orange.cbc]\nscope = 'cells'\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"operators\.orange\.cbc\.url"):
        settings.platforms()


async def test_lbsms_zone_follows_each_operators_setting(
    start_service: object, pg_dsn: str, private_redis: ManagedProcess, tmp_path: Path
) -> None:
    """The operators file says `zone = "polygon"` for south: its platform gets the alert's zone
    (from alerting's request) and counts the phones in it; north gets its cells."""
    sims = {
        name: CbcSimulator(CbcConfig(name=name, lbsms_zones=(zone,)))
        for name, zone in (("north", "cells"), ("south", "polygon"))
    }
    for sim in sims.values():
        await sim.start()
    path = tmp_path / "operators.toml"
    path.write_text(
        f"[operators.north.lbsms]\nurl = 'http://127.0.0.1:{sims['north'].port}'\n"
        f"[operators.south.lbsms]\nurl = 'http://127.0.0.1:{sims['south'].port}'\n"
        "zone = 'polygon'\n",
        encoding="utf-8",
    )
    try:
        proc: ServiceProcess = start_service(  # type: ignore[operator]
            "cellbroadcast",
            database_url=pg_dsn,
            redis_url=private_redis.url,
            TOCSIN_OPERATORS_FILE=str(path),
        )
        await watch_until(proc.target, health_pb2.HealthCheckResponse.SERVING)
        async with grpc.aio.insecure_channel(proc.target) as channel:
            client = CellBroadcastClient(
                cellbroadcast_pb2_grpc.CellBroadcastServiceStub(channel), timeout_s=10
            )
            acks = await client.broadcast(
                alert_id="p1",
                cap_xml="<alert/>",
                cells={"north": ("n1", "n2"), "south": ()},
                location_based_sms=True,
                content=replace(content(), zone_geojson=ZONE),
            )
    finally:
        for sim in sims.values():
            await sim.stop()
    phones = round(polygon_km2(json.loads(ZONE)) * 400)
    assert {(a.operator, a.accepted, a.phones) for a in acks} == {
        ("north", True, 500),
        ("south", True, phones),
    }
    assert sims["north"].lbsms.requests["p1.v1"]["zone"] == {"cells": ["n1", "n2"]}
    assert sims["south"].lbsms.requests["p1.v1"]["zone"] == {"polygon": json.loads(ZONE)}


def test_an_lbsms_zone_setting_is_checked(tmp_path: Path) -> None:
    """`zone` is cells or polygon; anything else is refused at start naming the key."""
    path = tmp_path / "operators.toml"
    path.write_text(
        "[operators.base.lbsms]\nurl = 'http://127.0.0.1:8103'\nzone = 'circle'\n",
        encoding="utf-8",
    )
    settings = Settings(database_url="postgresql://x/y", redis_url="redis://x", operators_file=path)
    with pytest.raises(ValueError, match=r"operators\.base\.lbsms\.zone"):
        settings.platforms()
    path.write_text(
        "[operators.base.lbsms]\nurl = 'http://127.0.0.1:8103'\nzone = 'polygon'\n",
        encoding="utf-8",
    )
    (base,) = settings.platforms()
    assert base.lbsms is not None
    assert base.lbsms.zone == "polygon"
