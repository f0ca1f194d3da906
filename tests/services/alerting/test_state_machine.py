"""The alert state machine: the transitions it allows, and those it refuses before any SQL."""

from __future__ import annotations

import asyncpg
import pytest

from services.alerting import lifecycle
from services.alerting.model import State

ALLOWED = {
    (State.DRAFT, State.SENDING),
    (State.DRAFT, State.CANCELLED),
    (State.SENDING, State.SENDING),
    (State.SENDING, State.SENT),
    (State.SENDING, State.CANCELLED),
    (State.SENDING, State.EXPIRED),
    (State.SENT, State.SENT),
    (State.SENT, State.COMPLETE),
    (State.SENT, State.CANCELLED),
    (State.SENT, State.EXPIRED),
    (State.COMPLETE, State.SENT),
    (State.COMPLETE, State.CANCELLED),
}


@pytest.mark.parametrize("before", list(State))
@pytest.mark.parametrize("after", list(State))
def test_only_the_lifecycle_transitions_are_allowed(before: State, after: State) -> None:
    if (before, after) in ALLOWED:
        lifecycle.check(before, after)
    else:
        with pytest.raises(lifecycle.IllegalTransition):
            lifecycle.check(before, after)


def test_cancelled_and_expired_are_final() -> None:
    assert {State.CANCELLED, State.EXPIRED} == lifecycle.FINAL


def test_settling_completes_a_sent_alert_and_expires_a_live_one() -> None:
    assert lifecycle.after_settle(State.SENT, complete=True, expired=False) is State.COMPLETE
    assert lifecycle.after_settle(State.SENT, complete=False, expired=True) is State.EXPIRED
    assert lifecycle.after_settle(State.COMPLETE, complete=True, expired=True) is State.COMPLETE
    assert lifecycle.after_settle(State.CANCELLED, complete=True, expired=True) is State.CANCELLED


async def test_an_illegal_move_is_refused_before_touching_the_row(pg_pool: asyncpg.Pool) -> None:
    async with pg_pool.acquire() as conn:
        with pytest.raises(lifecycle.IllegalTransition, match="from cancelled to sent"):
            await lifecycle.move(
                conn,
                alert_id="00000000-0000-4000-8000-000000000000",
                to=State.SENT,
                only_from=(State.CANCELLED,),
            )
