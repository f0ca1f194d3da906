"""The SMS service's shutdown fits in TOCSIN_SHUTDOWN_GRACE_S, whatever the grace."""

from __future__ import annotations

import pytest

from services.sms.__main__ import shutdown_budget


@pytest.mark.parametrize("grace_s", [1.0, 10.0, 20.0, 45.0, 300.0])
def test_the_shares_add_up_to_the_grace(grace_s: float) -> None:
    budget = shutdown_budget(grace_s)
    shares = (budget.work_s, budget.write_s, budget.unbind_s, budget.server_s)
    assert all(share >= 0 for share in shares)
    assert sum(shares) == pytest.approx(grace_s)


def test_production_grace_leaves_most_of_it_to_the_work_in_hand() -> None:
    # values-production.yaml: 60 s grace - 10 s preStop - 5 s margin = 45 s.
    budget = shutdown_budget(45.0)
    assert (budget.write_s, budget.unbind_s, budget.server_s) == (10.0, 4.5, 4.5)
    assert budget.work_s == 26.0


def test_a_short_grace_goes_to_handing_work_back_before_finishing_it() -> None:
    budget = shutdown_budget(0.2)
    assert budget.work_s == 0
    assert budget.write_s == pytest.approx(0.16)
