"""A channel's API batch is one text in one language: a header that is not is refused before
anything is kept or written (services/channel/apibatches.py)."""

from __future__ import annotations

from typing import Any

import pytest

from services.channel import apibatches, codec
from services.sms import batches as sms_batches
from services.voice import batches as voice_batches


class NoWrites:
    """A connection or Redis client that fails the test if it is used."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} called: nothing was to be written")


def head(**texts: str) -> codec.Header:
    """An API batch's header with `texts`."""
    return codec.Header(
        alert="api:k", version=1, kind="general", expires=2e9, sender="X", texts=texts
    )


async def test_an_sms_batch_in_another_language_than_its_channels_is_refused() -> None:
    with pytest.raises(ValueError, match="'en' only"):
        await sms_batches.BATCHES.record(NoWrites(), head(fr="Bonjour."))  # type: ignore[arg-type]


async def test_a_batch_of_two_texts_is_refused_before_anything_is_kept_or_written() -> None:
    two = head(nl="Hallo.", fr="Bonjour.")
    for batches in (sms_batches.BATCHES, voice_batches.BATCHES):
        with pytest.raises(ValueError, match="one text"):
            await batches.record(NoWrites(), two)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="one text"):
            await batches.enqueue(NoWrites(), two, ["+3250000001"])  # type: ignore[arg-type]


def test_the_header_is_the_one_both_apis_and_the_repair_write() -> None:
    written = apibatches.header(
        batch_id="api:t:k", sender="BE-Alert", text="Test.", language="de", expires=2e9
    )
    assert (written.kind, dict(written.texts), written.entity) == ("general", {"de": "Test."}, "")
    assert sms_batches.BATCHES.stream == "tocsin:stream:sms"
    assert voice_batches.BATCHES.stream == "tocsin:stream:voice"
