"""The generated dashboards are well formed: one data source, no overlapping panels."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.charts.conftest import CHART

BOARDS = sorted((CHART / "dashboards").glob("*.json"))
GRID_WIDTH = 24


def load(path_name: str) -> dict[str, Any]:
    """Return one dashboard."""
    board: dict[str, Any] = json.loads((CHART / "dashboards" / path_name).read_text("utf-8"))
    return board


@pytest.mark.parametrize("name", [path.name for path in BOARDS])
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in load(name)["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= GRID_WIDTH, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{name}: {panel['title']} overlaps another panel"
        taken |= cells


@pytest.mark.parametrize("name", [path.name for path in BOARDS])
def test_every_query_uses_the_chosen_data_source_and_namespace(name: str) -> None:
    board = load(name)
    names = [var["name"] for var in board["templating"]["list"]]
    assert names[:2] == ["datasource", "namespace"]
    panels = [panel for panel in board["panels"] if panel["type"] != "row"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in panels:
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'namespace="$namespace"' in target["expr"], panel["title"]
