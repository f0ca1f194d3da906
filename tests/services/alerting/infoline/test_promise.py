"""The one-hour promise: a line not open an hour after its request raises the alert."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import REGISTRY
from tocsin.alerting.v1 import infoline_pb2 as pb

from services.alerting import audit
from tests.services.alerting.conftest import AUDIT_KEY
from tests.services.alerting.infoline.conftest import LineEnv, MakeEnv, form

pytestmark = pytest.mark.timeout(60)


def overdue_gauge() -> float:
    value = REGISTRY.get_sample_value("tocsin_infoline_overdue_lines")
    assert value is not None
    return value


async def activate(env: LineEnv) -> pb.InfoLine:
    _, mayor, alert_id = await env.ready()
    return await env.stub.ActivateLine(
        pb.ActivateLineRequest(form=form(alert_ids=(alert_id,))), metadata=mayor.metadata
    )


async def test_acknowledged_and_opened_in_time(line_env_factory: MakeEnv) -> None:
    env = await line_env_factory(open_after_s=600, number="1771")
    line = await activate(env)
    await env.syncer.sync_once()
    got = await env.stub.GetLine(pb.GetLineRequest(line_id=line.id), metadata=env.admin)
    assert got.state == pb.LINE_STATE_ACKNOWLEDGED
    assert got.number == "1771"
    await env.control("/control/advance", {"seconds": 601})
    env.clock.advance(minutes=11)
    await env.syncer.sync_once()
    got = await env.stub.GetLine(pb.GetLineRequest(line_id=line.id), metadata=env.admin)
    assert got.state == pb.LINE_STATE_OPEN
    assert not got.overdue
    assert overdue_gauge() == 0
    actions = [
        r["action"]
        for r in await env.harness.pool.fetch(
            "SELECT action FROM audit_log WHERE target = $1 ORDER BY seq", f"infoline:{line.id}"
        )
    ]
    assert actions == [
        "ActivateLine",
        "InfoLineAcknowledged",
        "GetLine",
        "InfoLineOpened",
        "GetLine",
    ]
    # The provider's reports are chained with the calls' entries, under the same key.
    assert (await audit.verify(env.harness.pool, key=AUDIT_KEY)).ok


async def test_a_provider_that_opens_late_raises_the_alert(line_env_factory: MakeEnv) -> None:
    env = await line_env_factory(open_after_s=90 * 60)
    line = await activate(env)
    env.clock.advance(minutes=59)
    await env.syncer.sync_once()
    assert overdue_gauge() == 0
    env.clock.advance(minutes=2)  # 61 minutes after the request, still not open
    await env.syncer.sync_once()
    assert overdue_gauge() == 1
    got = await env.stub.GetLine(pb.GetLineRequest(line_id=line.id), metadata=env.admin)
    assert got.state == pb.LINE_STATE_ACKNOWLEDGED
    assert got.overdue
    noted = await env.harness.pool.fetch(
        "SELECT action FROM audit_log WHERE action = 'InfoLineOverdue' AND target = $1",
        f"infoline:{line.id}",
    )
    assert len(noted) == 1
    await env.syncer.sync_once()  # audited once, however many rounds see it
    assert (
        await env.harness.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'InfoLineOverdue'"
        )
        == 1
    )
    # Half an hour later still, the provider opens: the alert clears, the line stays marked late.
    late_before = REGISTRY.get_sample_value("tocsin_infoline_opened_late_total") or 0
    await env.control("/control/advance", {"seconds": 90 * 60})
    env.clock.advance(minutes=30)
    await env.syncer.sync_once()
    assert overdue_gauge() == 0
    got = await env.stub.GetLine(pb.GetLineRequest(line_id=line.id), metadata=env.admin)
    assert got.state == pb.LINE_STATE_OPEN
    assert got.overdue
    assert REGISTRY.get_sample_value("tocsin_infoline_opened_late_total") == late_before + 1


async def test_a_provider_that_never_opens(line_env_factory: MakeEnv) -> None:
    env = await line_env_factory(never_open=True)
    await activate(env)
    env.clock.advance(hours=3)
    await env.control("/control/advance", {"seconds": 3 * 3600})
    lines = await env.syncer.sync_once()
    assert [x.state.value for x in lines] == ["acknowledged"]
    assert overdue_gauge() == 1


async def test_activation_reaches_a_provider_that_was_down(line_env_factory: MakeEnv) -> None:
    env = await line_env_factory()
    env.sim.config = replace(env.sim.config, unavailable=True)
    line = await activate(env)  # recorded even though the provider did not answer
    assert line.state == pb.LINE_STATE_REQUESTED
    await env.syncer.sync_once()
    assert line.id not in env.sim.lines
    env.sim.config = replace(env.sim.config, unavailable=False)
    await env.syncer.sync_once()
    assert line.id in env.sim.lines
    got = await env.stub.GetLine(pb.GetLineRequest(line_id=line.id), metadata=env.admin)
    assert got.state == pb.LINE_STATE_ACKNOWLEDGED


async def test_a_line_the_provider_lost_does_not_hold_back_the_others(
    line_env_factory: MakeEnv,
) -> None:
    env = await line_env_factory()
    lost = await activate(env)
    await env.syncer.sync_once()
    del env.sim.lines[lost.id]  # the provider answers 404 for it from now on
    _, mayor, alert_id = await env.ready("Brugge")
    other = await env.stub.ActivateLine(
        pb.ActivateLineRequest(form=form(alert_ids=(alert_id,))), metadata=mayor.metadata
    )
    lines = {x.id: x.state.value for x in await env.syncer.sync_once()}
    assert lines == {lost.id: "acknowledged", other.id: "acknowledged"}
