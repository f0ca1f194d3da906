"""The stream entry codec: what any writer encodes, the worker decodes to the same recipients."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.channel import codec

ADDRESS = st.text(min_size=1, max_size=40)
LANGUAGE = st.sampled_from(["nl", "fr", "de", "en"])
HEADER = st.builds(
    codec.Header,
    alert=st.text(min_size=1, max_size=60),
    version=st.integers(min_value=1, max_value=10_000),
    kind=st.sampled_from(codec.KINDS),
    expires=st.floats(min_value=0, max_value=1e11, allow_nan=False),
    sender=st.text(max_size=11),
    texts=st.dictionaries(LANGUAGE, st.text(min_size=1, max_size=200), min_size=1),
)


@given(HEADER, st.lists(st.tuples(ADDRESS, LANGUAGE), max_size=30, unique_by=lambda t: t[0]))
def test_an_encoded_entry_decodes_to_itself(
    header: codec.Header, to: list[tuple[str, str]]
) -> None:
    entry = codec.WorkEntry(header, to, "sms-7")
    fields = codec.encode(entry)
    as_redis_gives = {k.encode(): v.encode() for k, v in fields.items()}

    assert codec.decode(as_redis_gives) == entry
    assert codec.decode(fields) == entry


@given(st.lists(st.tuples(ADDRESS, LANGUAGE), max_size=30))
def test_the_byte_level_join_is_the_same_json(to: list[tuple[str, str]]) -> None:
    joined = codec.join_recipients(
        [codec.escape_address(a.encode()) for a, _ in to],
        [codec.recipient_tail(lang) for _, lang in to],
    )

    assert json.loads(joined) == [[a, lang] for a, lang in to]


def test_entries_cut_recipients_into_batches_of_the_entry_size() -> None:
    header = codec.Header("a", 1, "test", 1e10, "BE-Alert", {"en": "hi"})
    to = [(f"+3247000{i:04d}", "en") for i in range(codec.ENTRY_SIZE * 2 + 1)]

    fields = codec.entries(header, to, prefix="sms-")

    assert [len(json.loads(f["to"])) for f in fields] == [codec.ENTRY_SIZE, codec.ENTRY_SIZE, 1]
    assert [f["batch"] for f in fields] == ["sms-0", "sms-1", "sms-2"]


def test_a_repeated_address_is_one_recipient_with_its_first_language() -> None:
    header = codec.Header("a", 1, "test", 1e10, "", {"en": "hi", "fr": "salut"})
    fields = codec.encode(codec.WorkEntry(header, [("+1", "fr"), ("+2", "en"), ("+1", "en")], "b"))

    assert codec.decode(fields).to == [("+1", "fr"), ("+2", "en")]


def test_text_for_falls_back_to_english_then_any() -> None:
    header = codec.Header("a", 1, "test", 1e10, "", {"en": "hi", "fr": "salut"})
    assert header.text_for("fr") == "salut"
    assert header.text_for("de") == "hi"
    assert codec.Header("a", 1, "test", 1e10, "", {"nl": "hoi"}).text_for("de") == "hoi"


GOOD = {"alert": "a", "version": "1", "expires": "1e10", "texts": '{"en":"x"}', "to": "[]"}


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"alert": ""}, "alert", "empty"),
        ({"version": "one"}, "version", "not an integer"),
        ({"expires": "soon"}, "expires", "not a number"),
        ({"expires": "nan"}, "expires", "not a number"),
        ({"texts": "{"}, "texts", "not JSON"),
        ({"texts": "{}"}, "texts", "must be a non-empty object of language -> text"),
        ({"texts": '{"en": 3}'}, "texts", "must be a non-empty object of language -> text"),
        ({"to": '{"a": 1}'}, "to", "must be an array"),
        ({"to": "[[1, 2]]"}, "to[0]", "must be [address, language]"),
        ({"to": '[["+1", "en"], ["+2"]]'}, "to[1]", "must be [address, language]"),
    ],
)
def test_a_malformed_entry_names_its_field(
    change: dict[str, str], field: str, problem: str
) -> None:
    with pytest.raises(codec.MalformedEntry) as caught:
        codec.decode({**GOOD, **change})
    assert (caught.value.field, caught.value.problem) == (field, problem)


@pytest.mark.parametrize("missing", ["alert", "version", "expires", "texts", "to"])
def test_a_missing_field_is_named(missing: str) -> None:
    fields = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(codec.MalformedEntry, match=f"^{missing}: missing$"):
        codec.decode(fields)
