"""Operators, binds and routes from the environment or a TOML file; longest-prefix routing."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.kernel import SettingsError, load_settings
from services.sms.routing import Router, is_e164
from services.sms.settings import Settings

STORES = {"DATABASE_URL": "postgresql://x@127.0.0.1/db", "REDIS_URL": "redis://127.0.0.1:1/0"}


def test_operators_from_the_environment_route_belgian_ranges_and_foreign_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "TOCSIN_SMSC", "proximus=127.0.0.1:2775,orange=127.0.0.1:2776,base=10.0.0.9:2777"
    )
    monkeypatch.setenv("TOCSIN_BINDS_PER_OPERATOR", "3")
    monkeypatch.setenv("TOCSIN_SMPP_BASE_SYSTEM_ID", "base-account")
    monkeypatch.setenv("TOCSIN_SMPP_BASE_PASSWORD", "base-password")
    settings = load_settings(Settings, **STORES)

    ops = settings.operators()
    router = Router(routes=[(op.name, op.prefixes) for op in ops], default=ops[0].name)

    assert [(op.name, len(op.binds)) for op in ops] == [("proximus", 3), ("orange", 3), ("base", 3)]
    assert ops[2].binds[1].name == "base-1"
    assert (ops[2].binds[0].host, ops[2].binds[0].port) == ("10.0.0.9", 2777)
    assert router.route("+32475123456") == "proximus"
    assert router.route("+32491123456") == "orange"
    assert router.route("+32456123456") == "base"  # longer prefix wins over 3245x ranges
    assert router.route("+32485123456") == "base"
    assert router.route("+31612345678") == "proximus"  # foreign: the default operator
    assert settings.grpc_bind_port == 50053
    assert settings.metrics_bind_port == 9103


def test_operators_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "operators.toml"
    path.write_text(
        """
        [operators.proximus]
        prefixes = ["+32472", "32473"]
        binds = [{host = "127.0.0.1", port = 2775, window = 50, system_id = "be-alert"}]
        max_sessions = 6
        [operators.orange]
        prefixes = ["3249"]
        binds = [{port = 2776, name = "orange-main"}, {port = 2776}]
        """,
        encoding="utf-8",
    )
    settings = load_settings(Settings, operators_file=path, default_operator="orange", **STORES)

    ops = settings.operators()

    assert [op.name for op in ops] == ["orange", "proximus"]
    assert [b.name for b in ops[0].binds] == ["orange-main", "orange-1"]
    assert ops[1].prefixes == ("32472", "32473")
    assert (ops[1].binds[0].window, ops[1].binds[0].system_id) == (50, "be-alert")
    # The operator's session limit over every sms process; none given: no limit.
    assert (ops[1].max_sessions, ops[0].max_sessions) == (6, None)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TOCSIN_SMSC": "opA=localhost"}, "TOCSIN_SMSC"),
        ({"TOCSIN_ROUTES": "opZ=3247"}, "TOCSIN_ROUTES"),
        ({"TOCSIN_ROUTES": "opA=32x"}, "TOCSIN_ROUTES"),
        ({"TOCSIN_DEFAULT_OPERATOR": "opQ"}, "TOCSIN_DEFAULT_OPERATOR"),
        ({"TOCSIN_WINDOW": "0"}, "TOCSIN_WINDOW"),
        ({"TOCSIN_SMPP_SESSION_LEASE_S": "0"}, "TOCSIN_SMPP_SESSION_LEASE_S"),
    ],
)
def test_bad_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    with pytest.raises(SettingsError) as caught:
        load_settings(Settings, **STORES)

    assert variable.removeprefix("TOCSIN_").lower() in str(caught.value).lower()


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("+32470123456", True),
        ("+1234567", True),
        ("+123456789012345", True),
        ("+1234567890123456", False),
        ("+123456", False),
        ("32470123456", False),
        ("+032470123456", False),
        ("+3247012345a", False),
        ("+\uff13\uff12470123456", False),  # full-width digits
    ],
)
def test_e164(number: str, valid: bool) -> None:
    assert is_e164(number) is valid


def test_each_operator_may_have_its_own_smpp_account(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOCSIN_SMSC", "proximus=127.0.0.1:2775,base-be=127.0.0.1:2777")
    monkeypatch.setenv("TOCSIN_SMPP_SYSTEM_ID", "shared")
    monkeypatch.setenv("TOCSIN_SMPP_PROXIMUS_SYSTEM_ID", "px-account")
    monkeypatch.setenv("TOCSIN_SMPP_PROXIMUS_PASSWORD", "px-password")
    monkeypatch.setenv("TOCSIN_SMPP_BASE_BE_PASSWORD", "base-password")  # `base-be` as the chart
    ops = {op.name: op for op in load_settings(Settings, **STORES).operators()}

    assert {(b.system_id, b.password) for b in ops["proximus"].binds} == {
        ("px-account", "px-password")
    }
    assert {(b.system_id, b.password) for b in ops["base-be"].binds} == {
        ("shared", "base-password")
    }
    # A bind of the operators file that names its own account keeps it.
    path = tmp_path / "operators.toml"
    path.write_text(
        """
        [operators.proximus]
        binds = [{port = 2775}, {port = 2775, system_id = "px-bind-1", password = "b1"}]
        """,
        encoding="utf-8",
    )
    (proximus,) = load_settings(Settings, operators_file=path, **STORES).operators()
    assert [(b.system_id, b.password) for b in proximus.binds] == [
        ("px-account", "px-password"),
        ("px-bind-1", "b1"),
    ]


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "TOCSIN_SMPP_PROXIMUS_SYSTEM_ID or TOCSIN_SMPP_SYSTEM_ID"),
        (
            {"TOCSIN_SMPP_SYSTEM_ID": "shared"},
            "TOCSIN_SMPP_PROXIMUS_PASSWORD or TOCSIN_SMPP_PASSWORD",
        ),
    ],
)
def test_a_real_smsc_without_an_account_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], missing: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "operators.toml"
    path.write_text(
        '[operators.proximus]\nbinds = [{host = "smsc.proximus.example", port = 2775}]\n',
        encoding="utf-8",
    )

    with pytest.raises(SettingsError) as caught:
        load_settings(Settings, operators_file=path, **STORES)

    assert missing in str(caught.value)
    assert "\n" not in str(caught.value)


def test_loopback_simulators_keep_their_account() -> None:
    (op,) = load_settings(Settings, smsc="opA=127.0.0.1:2775", **STORES).operators()
    assert {(b.system_id, b.password) for b in op.binds} == {("tocsin", "secret")}
