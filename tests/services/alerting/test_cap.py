"""CAP 1.2 documents: what is rendered parses back to the same message."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.alerting import cap

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")), max_size=60)
TOKEN = st.from_regex(r"[A-Za-z0-9._@-]{1,20}", fullmatch=True)
MOMENT = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
POINT = st.tuples(
    st.floats(min_value=-90, max_value=90, allow_nan=False),
    st.floats(min_value=-180, max_value=180, allow_nan=False),
)

INFO = st.builds(
    cap.CapInfo,
    language=st.sampled_from(["nl", "fr", "de", "en"]),
    category=st.sampled_from(["Safety", "Met", "CBRNE"]),
    event=TEXT,
    urgency=st.sampled_from(["Immediate", "Expected"]),
    severity=st.sampled_from(["Extreme", "Severe"]),
    certainty=st.sampled_from(["Observed", "Likely"]),
    expires=MOMENT,
    sender_name=TEXT,
    headline=TEXT,
    description=TEXT,
    instruction=TEXT,
    area_desc=TEXT,
    polygons=st.lists(st.lists(POINT, min_size=4, max_size=8).map(tuple), max_size=3).map(tuple),
)
MESSAGE = st.builds(
    cap.CapMessage,
    identifier=TOKEN,
    sender=TOKEN,
    sent=MOMENT,
    status=st.sampled_from(["Actual", "Exercise", "Test"]),
    msg_type=st.sampled_from(["Alert", "Update", "Cancel"]),
    scope=st.just("Public"),
    note=TEXT,
    references=st.lists(st.tuples(TOKEN, TOKEN, MOMENT), max_size=3).map(
        lambda refs: tuple(f"{s},{i},{cap.format_time(t)}" for s, i, t in refs)
    ),
    infos=st.lists(INFO, max_size=4).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(MESSAGE)
def test_render_then_parse_gives_the_message_back(message: cap.CapMessage) -> None:
    assert cap.parse(cap.render(message)) == message


def test_times_are_written_the_cap_way() -> None:
    moment = datetime(2026, 11, 22, 21, 5, 7, 123456, tzinfo=UTC)
    assert cap.format_time(moment) == "2026-11-22T21:05:07-00:00"
    assert cap.parse_time("2026-11-22T22:05:07+01:00") == moment.replace(microsecond=0)


def test_zone_polygons_are_lat_lon_rings() -> None:
    zone = (
        '{"type": "Polygon", "coordinates": [[[3.7, 51.0], [3.8, 51.0], [3.8, 51.1], [3.7, 51.0]]]}'
    )
    assert cap.zone_polygons(zone) == (((51.0, 3.7), (51.0, 3.8), (51.1, 3.8), (51.0, 3.7)),)
