"""Rules files: defaults, derived rates, patterns, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratelimit import Rules, RulesError, UnknownBucketError
from ratelimit.__main__ import main
from ratelimit.config import DEFAULT_HEADROOM


def test_default_global_rate_is_two_million_in_45_minutes() -> None:
    rules = Rules.default()
    assert rules.resolve("sms:global").rate == pytest.approx(2_000_000 / (45 * 60))
    assert round(rules.resolve("sms:global").rate, 1) == 740.7


def test_default_operators_split_the_global_rate_by_share() -> None:
    rules = Rules.default()
    operators = ["proximus", "orange", "base"]
    total = sum(rules.resolve(f"sms:op:{op}").rate for op in operators)
    assert total == pytest.approx(rules.resolve("sms:global").rate)
    assert rules.resolve("sms:op:proximus").rate == pytest.approx(0.45 * 2_000_000 / 2700)


def test_default_capacities_equal_the_lease_so_leases_tile() -> None:
    rules = Rules.default()
    assert {rule.capacity for rule in rules.rules} == {rules.lease}


def test_exact_rule_wins_then_longest_pattern() -> None:
    rules = Rules.from_toml(
        """
        [bucket."sms:bind:*"]
        rate = 100
        capacity = 10
        [bucket."sms:bind:orange:*"]
        rate = 50
        capacity = 10
        [bucket."sms:bind:orange:b2"]
        rate = 20
        capacity = 10
        """
    )
    assert rules.resolve("sms:bind:orange:b2").rate == 20
    assert rules.resolve("sms:bind:orange:b1").rate == 50
    assert rules.resolve("sms:bind:base:b1").rate == 100
    with pytest.raises(UnknownBucketError, match="sms:global"):
        rules.resolve("sms:global")


def test_a_rules_file_loads_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('lease = 80\nmax_wait = 2.5\n[bucket."a"]\nrate = 5\ncapacity = 100\n')
    rules = Rules.load(path)
    assert (rules.lease, rules.max_wait, rules.source) == (80, 2.5, str(path))


GOOD = '[bucket."sms:global"]\nrate = 100\ncapacity = 100\n'


def test_the_limiter_paces_below_each_rate_by_the_headroom() -> None:
    default = Rules.default()
    assert default.headroom == DEFAULT_HEADROOM == 0.01
    national = default.resolve("sms:global")
    # 740.7/s configured, 733.3/s granted: a second holds 733 or 734 messages, never 741.
    assert default.paced(national) == pytest.approx(national.rate * 0.99)
    assert round(default.paced(national), 1) == 733.3
    rules = Rules.from_toml("headroom = 0.1\n" + GOOD)
    assert rules.paced(rules.resolve("sms:global")) == pytest.approx(90)
    assert Rules.from_toml("headroom = 0\n" + GOOD).headroom == 0


@pytest.mark.parametrize(
    ("text", "rule", "field"),
    [
        ('[bucket."sms:global"]\nrate = 100\n', "sms:global", "capacity"),
        ('[bucket."sms:global"]\nrate = 100\ncapacity = 0\n', "sms:global", "capacity"),
        ('[bucket."sms:global"]\nrate = -1\ncapacity = 5\n', "sms:global", "rate"),
        ('[bucket."sms:global"]\nrate = "fast"\ncapacity = 5\n', "sms:global", "rate"),
        ('[bucket."sms:global"]\ncapacity = 5\n', "sms:global", "rate"),
        ('[bucket."x"]\nrate = 1\nmessages = 5\nminutes = 1\ncapacity = 5\n', "x", "rate"),
        ('[bucket."x"]\nmessages = 5\ncapacity = 5\n', "x", "minutes"),
        ('[bucket."x"]\nmessages = 5\nminutes = 0\ncapacity = 5\n', "x", "minutes"),
        ('[bucket."x"]\nrate = 5\nminutes = 3\ncapacity = 5\n', "x", "minutes"),
        ('[bucket."x"]\nrate = 5\ncapacity = 5\nburst = 3\n', "x", "burst"),
        (GOOD + '[bucket."op"]\nshare = 1.5\nparent = "sms:global"\ncapacity = 5\n', "op", "share"),
        (GOOD + '[bucket."op"]\nshare = 0.5\nparent = "nope"\ncapacity = 5\n', "op", "parent"),
        (GOOD + '[bucket."op"]\nshare = 0.5\ncapacity = 5\n', "op", "parent"),
        (
            '[bucket."a"]\nshare = 0.5\nparent = "b"\ncapacity = 5\n'
            '[bucket."b"]\nshare = 0.5\nparent = "a"\ncapacity = 5\n',
            "b",
            "parent",
        ),
        (
            GOOD + '[bucket."o1"]\nshare = 0.6\nparent = "sms:global"\ncapacity = 5\n'
            '[bucket."o2"]\nshare = 0.6\nparent = "sms:global"\ncapacity = 5\n',
            "o2",
            "share",
        ),
        ("lease = 0\n" + GOOD, None, "lease"),
        ("headroom = 0.2\n" + GOOD, None, "headroom"),
        ("headroom = -0.01\n" + GOOD, None, "headroom"),
        ('headroom = "0.5%"\n' + GOOD, None, "headroom"),
        ("max_wait = 0\n" + GOOD, None, "max_wait"),
        ("speed = 3\n" + GOOD, None, "speed"),
        ("[fallback]\nreplicas = 0\n" + GOOD, "fallback", "replicas"),
        ("lease = 50\n", None, "bucket"),
        ("[bucket\n", None, "<syntax>"),
    ],
)
def test_a_bad_rules_file_gives_one_error_naming_rule_and_field(
    tmp_path: Path, text: str, rule: str | None, field: str
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as caught:
        Rules.load(path)
    assert (caught.value.rule, caught.value.field) == (rule, field)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert f"field {field!r}" in message
    if rule is not None:
        assert f"rule {rule!r}" in message


def test_the_command_line_names_the_rule_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(GOOD + '[bucket."sms:op:x"]\nshare = 2\nparent = "sms:global"\ncapacity = 5\n')
    assert main(["check", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{path}: rule 'sms:op:x', field 'share': must be above 0 and at most 1, got 2.0"
    )
    path.write_text(GOOD)
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out == "sms:global\t100.0/s\tcapacity 100\n"
