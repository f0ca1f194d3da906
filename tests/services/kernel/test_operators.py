"""The operators file: read, written back unchanged, and bad fields named."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from services.kernel.operators import (
    Bind,
    Operator,
    OperatorsFileError,
    dump_operators,
    load_operators,
    parse_operators,
    routes,
)

FILE = """
[operators."proximus"]
prefixes = ["+3247", "3246"]
binds = [{ host = "smsc.example", port = 2775, window = 10, name = "p-0" }]
max_sessions = 24

[operators."proximus".cbc]
url = "https://cbc.example/cap"
message_ids = [4370, 4371]
limits = { pages = 15, tls = true }

[operators.orange]
binds = [{ port = 2776 }]
"""


def test_an_operator_holds_its_sms_settings_and_other_channels_sections(tmp_path: Path) -> None:
    path = tmp_path / "operators.toml"
    path.write_text(FILE, encoding="utf-8")
    proximus, orange = load_operators(path)
    assert proximus == Operator(
        name="proximus",
        prefixes=("3247", "3246"),
        binds=(Bind("smsc.example", 2775, {"window": 10, "name": "p-0"}),),
        max_sessions=24,
        sections={
            "cbc": {
                "url": "https://cbc.example/cap",
                "message_ids": [4370, 4371],
                "limits": {"pages": 15, "tls": True},
            }
        },
    )
    assert orange.binds == (Bind("127.0.0.1", 2776),)
    assert orange.max_sessions is None  # no limit unless the file gives one
    assert routes((proximus, orange)) == "proximus=3247,3246"


def test_what_is_written_reads_back_the_same(tmp_path: Path) -> None:
    ops = parse_operators(tomllib.loads(FILE), source="t")
    assert parse_operators(tomllib.loads(dump_operators(ops)), source="dump") == ops


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "no [operators.<name>] table"),
        ("[operators.Bad]\n", "operators.Bad: the name must match"),
        ('[operators.a]\nprefixes = ["32x"]\n', "operators.a.prefixes"),
        ("[operators.a]\nbinds = [{ host = 'h' }]\n", "operators.a.binds[0].port"),
        ("[operators.a]\nshare = 0.5\n", "operators.a.share: unknown key"),
        ("[operators.a]\nmax_sessions = 0\n", "operators.a.max_sessions: must be a positive"),
        ("[operators.a]\nmax_sessions = '4'\n", "operators.a.max_sessions: must be a positive"),
        ("[other]\n", "unknown top-level keys ['other']"),
    ],
)
def test_a_bad_field_is_named(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "operators.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(OperatorsFileError, match=re.escape(named)):
        load_operators(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(OperatorsFileError, match=re.escape("nowhere.toml")):
        load_operators(tmp_path / "nowhere.toml")
