"""The simulators' shared command line: flags from a config dataclass, the JSON lines."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import pytest

from simulators import cli


@dataclass(frozen=True)
class _Config:
    host: str = "127.0.0.1"
    name: str = "sim"
    port: int = 0
    latency_s: float = 0.5
    max_rate: int | None = None
    status: int = 0x58
    fast: bool = False
    tls: bool = True
    scripts: dict[str, str] = field(default_factory=dict)


def _parse(
    argv: list[str],
    *,
    skip: Collection[str] = ("host", "scripts"),
    negatable: bool = False,
    types: Mapping[str, Callable[[str], object]] | None = None,
) -> dict[str, object]:
    p = cli.parser("simulators.example", "An example.")
    cli.add_config_flags(p, _Config, skip=skip, negatable=negatable, types=types)
    return cli.arguments(p, argv)


def test_each_field_is_a_flag_with_its_default_and_type() -> None:
    assert _parse([]) == {
        "name": "sim",
        "port": 0,
        "latency_s": 0.5,
        "max_rate": None,
        "status": 0x58,
        "fast": False,
        "tls": True,
    }
    args = _parse(
        ["--name", "opA", "--port", "7", "--latency-s", "0.25", "--max-rate", "3", "--fast"]
    )
    assert (args["name"], args["port"], args["latency_s"]) == ("opA", 7, 0.25)
    assert (args["max_rate"], args["fast"]) == (3, True)


@dataclass(frozen=True)
class _Plain:
    host: str = "127.0.0.1"
    port: int = 0


def test_skipped_fields_have_no_flag_and_host_is_skipped_by_default() -> None:
    with pytest.raises(SystemExit):
        _parse(["--host", "0.0.0.0"])
    p = cli.parser("simulators.example", None)
    cli.add_config_flags(p, _Plain)
    assert cli.arguments(p, ["--port", "9"]) == {"port": 9}


def test_switches_can_be_turned_off_when_negatable() -> None:
    assert _parse(["--no-tls"], negatable=True)["tls"] is False
    with pytest.raises(SystemExit):
        _parse(["--no-tls"])


def test_a_field_may_name_its_own_type() -> None:
    assert _parse(["--status", "0x45"], types={"status": lambda v: int(v, 0)})["status"] == 0x45


def test_the_log_level_is_taken_out_of_the_arguments() -> None:
    assert "log_level" not in _parse(["--log-level", "DEBUG"])


def test_say_prints_one_json_line_the_event_first(capsys: pytest.CaptureFixture[str]) -> None:
    cli.say("stopped", name="opA", messages=2)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.endswith("\n")
    assert list(json.loads(out).items()) == [("event", "stopped"), ("name", "opA"), ("messages", 2)]
