"""Rate-limit rules: the TOML rules file, its validation and the built-in defaults."""

from __future__ import annotations

import fnmatch
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

#: The built-in rules, shipped inside the package.
DEFAULT_RULES_FILE = "default_rules.toml"
#: Fraction of each rule's rate the limiter leaves unused unless the rules say otherwise.
DEFAULT_HEADROOM = 0.01
#: Headroom at or above this is refused: it would be a different rate, not a margin.
MAX_HEADROOM = 0.2

_TOP_FIELDS = {"lease", "max_wait", "headroom", "fallback", "bucket"}
_FALLBACK_FIELDS = {"replicas"}
_BUCKET_FIELDS = {"rate", "messages", "minutes", "share", "parent", "capacity"}
_PATTERN_CHARS = set("*?[")


class RulesError(ValueError):
    """A rules file is invalid; the message names the file, the rule and the field."""

    def __init__(self, source: str, rule: str | None, field: str, problem: str) -> None:
        self.source = source
        self.rule = rule
        self.field = field
        self.problem = problem
        where = f"rule {rule!r}, field {field!r}" if rule is not None else f"field {field!r}"
        super().__init__(f"{source}: {where}: {problem}")


class UnknownBucketError(LookupError):
    """No rule names or matches the bucket a caller asked for."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One bucket's limit, with its rate already worked out."""

    #: Exact bucket name, or an fnmatch pattern (`sms:bind:proximus:*`) applying to each match.
    name: str
    #: Tokens added per second.
    rate: float
    #: Most tokens the bucket holds: the largest burst it allows.
    capacity: int

    @property
    def is_pattern(self) -> bool:
        """Whether this rule applies to every bucket its name matches."""
        return bool(_PATTERN_CHARS & set(self.name))


@dataclass(frozen=True, slots=True)
class Rules:
    """A validated rules file."""

    #: The rules, exact names and patterns.
    rules: tuple[Rule, ...]
    #: Tokens a sender asks for per lease, unless it asks for fewer.
    lease: int = 50
    #: Longest a lease may be reserved ahead (seconds); beyond, the script refuses with retry-after.
    max_wait: float = 1.0
    #: Replicas assumed by a process that never reached Redis, to size its fallback bucket.
    fallback_replicas: int = 4
    #: Fraction below each rule's rate at which the limiter paces (and fills its buckets), so that
    #: a few milliseconds of jitter never put a one-second window above the rate.
    headroom: float = DEFAULT_HEADROOM
    #: Where the rules came from, for messages.
    source: str = "<rules>"

    def paced(self, rule: Rule) -> float:
        """The rate the limiter actually grants for `rule`: its rate less the headroom."""
        return rule.rate * (1.0 - self.headroom)

    def resolve(self, bucket: str) -> Rule:
        """Return the rule for `bucket`: its exact rule, else the longest pattern that matches."""
        best: Rule | None = None
        for rule in self.rules:
            if rule.name == bucket:
                return rule
            longer = best is None or len(rule.name) > len(best.name)
            if rule.is_pattern and longer and fnmatch.fnmatchcase(bucket, rule.name):
                best = rule
        if best is None:
            raise UnknownBucketError(f"no rule in {self.source} names or matches bucket {bucket!r}")
        return best

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<rules>") -> Rules:
        """Parse and validate rules from TOML text."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RulesError(source, None, "<syntax>", str(exc)) from exc
        return _parse(data, source)

    @classmethod
    def load(cls, path: str | Path) -> Rules:
        """Read and validate a rules file."""
        path = Path(path)
        return cls.from_toml(path.read_text(encoding="utf-8"), source=str(path))

    @classmethod
    def default(cls) -> Rules:
        """Return the built-in rules (2,000,000 SMS in 45 minutes, split over operators)."""
        return cls.from_toml(default_rules_text(), source=f"ratelimit/{DEFAULT_RULES_FILE}")


def default_rules_text() -> str:
    """Return the TOML text of the built-in rules."""
    return resources.files(__package__).joinpath(DEFAULT_RULES_FILE).read_text(encoding="utf-8")


def _number(source: str, rule: str | None, field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RulesError(source, rule, field, f"must be a finite number, got {value!r}")
    return float(value)


def _positive_int(source: str, rule: str | None, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RulesError(
            source, rule, field, f"must be a whole number of at least 1, got {value!r}"
        )
    return value


def _unknown(source: str, rule: str | None, fields: Mapping[str, Any], known: set[str]) -> None:
    for field in fields:
        if field not in known:
            raise RulesError(
                source, rule, field, f"unknown field; known: {', '.join(sorted(known))}"
            )


def _parse(data: Mapping[str, Any], source: str) -> Rules:
    _unknown(source, None, data, _TOP_FIELDS)
    lease = _positive_int(source, None, "lease", data.get("lease", 50))
    max_wait = _number(source, None, "max_wait", data.get("max_wait", 1.0))
    if max_wait <= 0:
        raise RulesError(source, None, "max_wait", f"must be above 0 seconds, got {max_wait!r}")
    headroom = _number(source, None, "headroom", data.get("headroom", DEFAULT_HEADROOM))
    if not 0 <= headroom < MAX_HEADROOM:
        raise RulesError(
            source,
            None,
            "headroom",
            f"must be at least 0 and below {MAX_HEADROOM:g} (a fraction of each rate), "
            f"got {headroom!r}",
        )
    fallback = data.get("fallback", {})
    if not isinstance(fallback, dict):
        raise RulesError(source, None, "fallback", "must be a table")
    _unknown(source, "fallback", fallback, _FALLBACK_FIELDS)
    replicas = _positive_int(source, "fallback", "replicas", fallback.get("replicas", 4))
    tables = data.get("bucket", {})
    if not isinstance(tables, dict) or not tables:
        raise RulesError(source, None, "bucket", 'needs at least one [bucket."name"] table')
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise RulesError(source, name, "bucket", "must be a table")
        _unknown(source, name, table, _BUCKET_FIELDS)
    rates: dict[str, float] = {}
    for name in tables:
        _rate(source, tables, name, rates, ())
    _check_shares(source, tables)
    rules = tuple(
        Rule(name, rates[name], _positive_int(source, name, "capacity", table.get("capacity")))
        for name, table in tables.items()
    )
    return Rules(
        rules,
        lease=lease,
        max_wait=max_wait,
        fallback_replicas=replicas,
        headroom=headroom,
        source=source,
    )


def _rate(
    source: str,
    tables: Mapping[str, Mapping[str, Any]],
    name: str,
    rates: dict[str, float],
    seen: tuple[str, ...],
) -> float:
    """Work out the rate of rule `name` (tokens per second), following `parent` links."""
    if name in rates:
        return rates[name]
    table = tables[name]
    for extra, partner in (("minutes", "messages"), ("parent", "share")):
        if extra in table and partner not in table:
            raise RulesError(source, name, extra, f"only allowed together with {partner!r}")
    given = [k for k in ("rate", "messages", "share") if k in table]
    if len(given) != 1:
        raise RulesError(
            source, name, "rate", "give exactly one of rate, messages + minutes, share + parent"
        )
    if "rate" in table:
        rate = _number(source, name, "rate", table["rate"])
    elif "messages" in table:
        messages = _number(source, name, "messages", table["messages"])
        if "minutes" not in table:
            raise RulesError(source, name, "minutes", "required with messages")
        minutes = _number(source, name, "minutes", table["minutes"])
        if minutes <= 0:
            raise RulesError(source, name, "minutes", f"must be above 0, got {minutes!r}")
        rate = messages / (minutes * 60.0)
    else:
        share = _number(source, name, "share", table["share"])
        if not 0 < share <= 1:
            raise RulesError(source, name, "share", f"must be above 0 and at most 1, got {share!r}")
        parent = table.get("parent")
        if not isinstance(parent, str) or parent not in tables:
            raise RulesError(source, name, "parent", f"must name another rule, got {parent!r}")
        if parent in seen or parent == name:
            raise RulesError(source, name, "parent", f"loops back through {parent!r}")
        if Rule(parent, 1.0, 1).is_pattern:
            raise RulesError(source, name, "parent", f"must be an exact bucket, not {parent!r}")
        rate = share * _rate(source, tables, parent, rates, (*seen, name))
    if rate <= 0:
        raise RulesError(source, name, given[0], f"gives a rate of {rate!r}; must be above 0")
    rates[name] = rate
    return rate


def _check_shares(source: str, tables: Mapping[str, Mapping[str, Any]]) -> None:
    """Exact children of one parent may not share out more than the whole parent."""
    total: dict[str, float] = {}
    last: dict[str, str] = {}
    for name, table in tables.items():
        if "share" in table and not Rule(name, 1.0, 1).is_pattern:
            parent = str(table["parent"])
            total[parent] = total.get(parent, 0.0) + float(table["share"])
            last[parent] = name
    for parent, shares in total.items():
        if shares > 1.0 + 1e-9:
            raise RulesError(
                source,
                last[parent],
                "share",
                f"the shares of {parent!r} add up to {shares:g}; at most 1",
            )
