"""A small Grafana dashboard model: panels in rows, laid out on the grid, rendered to JSON.

Every panel queries the Prometheus data source chosen in the dashboard's `datasource` variable,
scoped to the `namespace` variable, so one Grafana serves several installations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
GRID_WIDTH = 24

Json = dict[str, Any]


def sel(**matchers: str) -> str:
    """Return a selector scoped to the chosen namespace and release, plus `matchers`.

    A value starting with `~` is a regex match, with `!` a negative match. The release label is
    on every series the chart's ServiceMonitor scrapes; kube-state-metrics' and cAdvisor's
    series do not have it (select those by namespace and object name).
    """
    parts = ['namespace="$namespace"', 'release="$release"']
    for label, value in matchers.items():
        op = {"~": "=~", "!": "!="}.get(value[:1])
        if op is None:
            op, value = "=", "=" + value
        parts.append(f'{label}{op}"{value[1:]}"')
    return "{" + ", ".join(parts) + "}"


def rate(metric: str, by: str, **matchers: str) -> str:
    """Return `sum by (by) (rate(metric{...}[$__rate_interval]))`."""
    return f"sum by ({by}) (rate({metric}{sel(**matchers)}[{RATE}]))"


def quantile(q: float, histogram: str, by: str, **matchers: str) -> str:
    """Return the `q` quantile of a histogram, per `by`."""
    buckets = f"rate({histogram}_bucket{sel(**matchers)}[{RATE}])"
    return f"histogram_quantile({q}, sum by ({by}, le) ({buckets}))"


@dataclass(frozen=True)
class Q:
    """One query of a panel."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """A panel; its position is worked out by the layout."""

    title: str
    description: str
    queries: tuple[Q, ...]
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    #: Threshold steps (value, colour) after the base colour; for stat and gauge panels.
    thresholds: tuple[tuple[float, str], ...] = ()
    #: Colour below the first threshold step.
    base: str = "green"
    #: Value -> text mappings, for up/down gauges.
    mappings: tuple[tuple[int, str, str], ...] = ()
    stack: bool = False


@dataclass(frozen=True)
class Row:
    """A titled row of panels."""

    title: str
    panels: tuple[Panel, ...]


UP_DOWN = ((0, "down", "red"), (1, "up", "green"))


def variable(name: str, label: str, query: str, *, multi: bool) -> Json:
    """Return a Prometheus query variable."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"var-{name}"},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "allValue": ".*" if multi else None,
        "current": {},
        "hide": 0,
    }


def field_config(panel: Panel) -> Json:
    """Return the panel's fieldConfig: unit, thresholds, value mappings, stacking."""
    steps: list[Json] = [{"color": panel.base, "value": None}]
    steps += [{"color": colour, "value": value} for value, colour in panel.thresholds]
    defaults: Json = {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if panel.mappings:
        defaults["mappings"] = [
            {
                "type": "value",
                "options": {
                    str(value): {"text": text, "color": colour, "index": i}
                    for i, (value, text, colour) in enumerate(panel.mappings)
                },
            }
        ]
        defaults["color"] = {"mode": "thresholds"}
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if panel.stack else 0,
            "showPoints": "never",
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
    return {"defaults": defaults, "overrides": []}


def options(panel: Panel) -> Json:
    """Return the panel-type specific options."""
    if panel.kind in ("stat", "gauge"):
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area" if panel.kind == "stat" else "none",
            "textMode": "auto",
            "orientation": "auto",
        }
    if panel.kind == "state-timeline":
        return {"showValue": "auto", "mergeValues": True, "rowHeight": 0.9}
    return {
        "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def render_panel(panel: Panel, panel_id: int, x: int, y: int) -> Json:
    """Return a panel's JSON at grid position (x, y)."""
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "range": True,
        }
        for i, query in enumerate(panel.queries)
    ]
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": field_config(panel),
        "options": options(panel),
        "targets": targets,
    }


def layout(rows: tuple[Row, ...]) -> Iterator[Json]:
    """Place rows and their panels left to right, wrapping at the grid width."""
    panel_id = 1
    y = 0
    for row in rows:
        yield {
            "id": panel_id,
            "type": "row",
            "title": row.title,
            "collapsed": False,
            "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
            "panels": [],
        }
        panel_id += 1
        y += 1
        x = line_height = 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            yield render_panel(panel, panel_id, x, y)
            panel_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height


def dashboard(
    *, uid: str, title: str, description: str, rows: tuple[Row, ...], variables: Sequence[Json] = ()
) -> Json:
    """Return a whole dashboard: data source and namespace variables, then `variables`."""
    templating: list[Json] = [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
        },
        variable("namespace", "Namespace", "label_values(tocsin_serving, namespace)", multi=False),
        variable(
            "release",
            "Release",
            'label_values(tocsin_serving{namespace="$namespace"}, release)',
            multi=False,
        ),
    ]
    templating += variables
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tocsin"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": templating},
        "annotations": {"list": []},
        "links": [
            {"type": "dashboards", "tags": ["tocsin"], "asDropdown": True, "title": "Tocsin"}
        ],
        "panels": list(layout(rows)),
    }
