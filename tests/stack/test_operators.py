"""One list of operators: the stack's operators file, and everything that names operators agrees."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratelimit.config import Rules
from services.kernel.operators import dump_operators, load_operators, routes
from services.sms.settings import DEFAULT_ROUTES, Settings
from stack.services import OPERATORS_FILE, operators, simulators


def test_the_sms_default_routes_are_the_stack_operators_routes() -> None:
    assert routes(operators()) == DEFAULT_ROUTES


def test_the_limiter_shares_the_national_budget_between_exactly_these_operators() -> None:
    rules = Rules.default()
    named = {
        r.name.removeprefix("sms:op:")
        for r in rules.rules
        if r.name.startswith("sms:op:") and not r.is_pattern
    }
    assert named == {op.name for op in operators()}
    national = rules.resolve("sms:global").rate
    shares = sum(rules.resolve(f"sms:op:{op.name}").rate for op in operators())
    assert shares == pytest.approx(national)


def test_each_operator_gets_its_smsc_simulator_on_the_shifted_port() -> None:
    sims = simulators(operators(offset=1000))
    smscs = {s.name: s for s in sims if s.module == "simulators.smsc"}
    for op in operators():
        sim = smscs[f"smsc-{op.name}"]
        assert sim.port == op.binds[0].port + 1000
        assert sim.args == ("--name", op.name)


def test_the_sms_service_reads_the_file_the_stack_hands_it(tmp_path: Path) -> None:
    path = tmp_path / "operators.toml"
    path.write_text(dump_operators(operators(offset=10)), encoding="utf-8")
    settings = Settings(database_url="postgresql://x/y", redis_url="redis://x", operators_file=path)
    found = {op.name: op for op in settings.operators()}
    for op in operators():
        assert found[op.name].prefixes == op.prefixes
        assert [(b.host, b.port) for b in found[op.name].binds] == [
            (b.host, b.port + 10) for b in op.binds
        ]
    assert load_operators(OPERATORS_FILE)[0].name == settings.operators()[0].name
