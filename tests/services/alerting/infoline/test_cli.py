"""`python -m services.alerting.cli infoline ...`, run as its own process."""

from __future__ import annotations

import pytest
from tocsin.alerting.v1 import infoline_pb2 as pb

from tests.services.alerting.conftest import PASSWORD
from tests.services.alerting.infoline.conftest import MakeEnv, form
from tests.services.alerting.test_cli import cli

pytestmark = pytest.mark.timeout(120)


async def test_show_list_and_staffing(line_env_factory: MakeEnv) -> None:
    env = await line_env_factory(calls={"nl": 200, "fr": 60})
    entity_id, mayor, alert_id = await env.ready()
    line = await env.stub.ActivateLine(
        pb.ActivateLineRequest(form=form(alert_ids=(alert_id,))), metadata=mayor.metadata
    )
    await env.control("/control/advance", {"seconds": 600 + 3600})
    await env.syncer.sync_once()
    login = {"TOCSIN_USER": "admin", "TOCSIN_PASSWORD": PASSWORD}
    base = ("--target", env.target, "infoline")
    code, out = await cli(*base, "show", line.id, **login)
    assert code == 0, out
    assert f"line {line.id} (D5, provider): open, number 1771" in out
    code, out = await cli(*base, "list", "--entity", str(entity_id), **login)
    assert code == 0, out
    assert line.id in out
    code, out = await cli(*base, "staffing", line.id, **login)
    assert code == 0, out
    assert "80% within 20 s" in out
    assert "14 (" in out  # nl: 200 calls of 3 minutes need 14 operators
    code, out = await cli(*base, "persons", "--entity", str(entity_id), **login)
    assert code == 0, out
    assert "mayor-gent (mayor)" in out
    code, out = await cli(*base, "show", "not-a-line", **login)
    assert code == 1
    assert "INVALID_ARGUMENT: line_id:" in out
