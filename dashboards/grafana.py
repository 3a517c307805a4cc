"""Small builders for classic Grafana dashboard JSON (schemaVersion 39), as plain dicts.

Plain dicts rather than an SDK: no dependency, full control over the JSON, and the output is diffable
in review. Every panel queries the `${datasource}` variable, so file provisioning and the Grafana
sidecar need no datasource name (exported dashboards with `${DS_...}` inputs fail there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
TAG = "lbdoctor"

Json = dict[str, Any]


# Variables -------------------------------------------------------------------------------------


def datasource_variable() -> Json:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(
    name: str,
    label: str,
    query: str,
    *,
    include_all: bool = True,
    multi: bool = True,
    hide: int = 0,
) -> Json:
    """A variable from label_values(); "All" means the regex .*, which also matches a missing label
    (single-cluster Prometheus servers have no `cluster` label at all)."""
    variable: Json = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "current": {},
        "hide": hide,
        "refresh": 2,  # on time-range change: objects come and go
        "sort": 1,
        "regex": "",
        "includeAll": include_all,
        "multi": multi,
        "options": [],
    }
    if include_all:
        variable["allValue"] = ".*"
    return variable


# Panels ----------------------------------------------------------------------------------------


@dataclass
class Query:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False

    def to_json(self, ref_id: str) -> Json:
        target: Json = {
            "datasource": DATASOURCE,
            "refId": ref_id,
            "expr": self.expr,
            "legendFormat": self.legend or "__auto",
            "range": not self.instant,
            "instant": self.instant,
        }
        if self.table:
            target["format"] = "table"
        return target


@dataclass
class Link:
    title: str
    url: str

    def to_json(self) -> Json:
        return {"title": self.title, "url": self.url, "targetBlank": self.url.startswith("http")}


@dataclass
class Panel:
    """One panel. `kind` is the Grafana panel type; width and height are grid units (24 columns)."""

    kind: str
    title: str
    description: str
    queries: list[Query]
    width: int = 12
    height: int = 8
    unit: str = "short"
    mappings: list[Json] = field(default_factory=list)
    thresholds: list[Json] | None = None
    options: Json = field(default_factory=dict)
    custom: Json = field(default_factory=dict)
    overrides: list[Json] = field(default_factory=list)
    transformations: list[Json] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    no_value: str | None = None
    decimals: int | None = None
    min: float | None = None
    max: float | None = None

    def to_json(self, panel_id: int, x: int, y: int) -> Json:
        defaults: Json = {"unit": self.unit, "mappings": self.mappings, "custom": self.custom}
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": self.thresholds or [{"color": "green", "value": None}],
        }
        defaults["color"] = {"mode": "thresholds" if self.kind in ("stat", "table") else "palette-classic"}
        if self.mappings and self.kind in ("state-timeline", "status-history"):
            defaults["color"] = {"mode": "fixed"}
        for key, value in (
            ("noValue", self.no_value),
            ("decimals", self.decimals),
            ("min", self.min),
            ("max", self.max),
        ):
            if value is not None:
                defaults[key] = value
        panel: Json = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": self.width, "h": self.height},
            "targets": [query.to_json(chr(ord("A") + n)) for n, query in enumerate(self.queries)],
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self.options,
        }
        if self.transformations:
            panel["transformations"] = self.transformations
        if self.links:
            panel["links"] = [link.to_json() for link in self.links]
        return panel


def stat(title: str, description: str, expr: str, *, unit: str = "short", bad_from: float | None = 1) -> Panel:
    """A single number, red from `bad_from` up (None: always neutral). No data shows as 0: an empty
    count means "none", not an error."""
    steps: list[Json] = [{"color": "green", "value": None}]
    if bad_from is not None:
        steps.append({"color": "red", "value": bad_from})
    return Panel(
        "stat",
        title,
        description,
        [Query(expr, instant=True)],
        width=4,
        height=4,
        unit=unit,
        thresholds=steps,
        no_value="0",
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value",
            "justifyMode": "center",
            "orientation": "auto",
        },
    )


def timeseries(
    title: str,
    description: str,
    queries: list[Query],
    *,
    unit: str = "short",
    width: int = 12,
    stack: bool = False,
    bars: bool = False,
) -> Panel:
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 20 if stack or bars else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    return Panel(
        "timeseries",
        title,
        description,
        queries,
        width=width,
        unit=unit,
        custom=custom,
        options={
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def table(
    title: str,
    description: str,
    queries: list[Query],
    *,
    columns: dict[str, str],
    width: int = 24,
    height: int = 8,
    overrides: list[Json] | None = None,
    mappings: list[Json] | None = None,
) -> Panel:
    """An instant table. `columns` maps label (or "Value #A") to the header shown, in display order;
    everything else (Time, job, instance, …) is hidden."""
    order = {name: position for position, name in enumerate(columns)}
    return Panel(
        "table",
        title,
        description,
        [Query(q.expr, q.legend, instant=True, table=True) for q in queries],
        width=width,
        height=height,
        mappings=mappings or [],
        overrides=overrides or [],
        transformations=[
            *([{"id": "merge", "options": {}}] if len(queries) > 1 else []),
            {"id": "filterFieldsByName", "options": {"include": {"names": list(columns)}}},
            {"id": "organize", "options": {"excludeByName": {}, "indexByName": order, "renameByName": columns}},
        ],
        options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
    )


def state_timeline(
    title: str, description: str, queries: list[Query], mappings: list[Json], *, width: int = 24, height: int = 8
) -> Panel:
    return Panel(
        "state-timeline",
        title,
        description,
        queries,
        width=width,
        height=height,
        mappings=mappings,
        options={
            "mergeValues": True,
            "showValue": "never",
            "alignValue": "left",
            "rowHeight": 0.85,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "single", "sort": "none"},
        },
        custom={"fillOpacity": 80, "lineWidth": 0},
    )


def status_history(
    title: str, description: str, queries: list[Query], mappings: list[Json], *, width: int = 24, height: int = 8
) -> Panel:
    return Panel(
        "status-history",
        title,
        description,
        queries,
        width=width,
        height=height,
        mappings=mappings,
        options={
            "showValue": "never",
            "rowHeight": 0.85,
            "colWidth": 0.9,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "single", "sort": "none"},
        },
        custom={"fillOpacity": 80, "lineWidth": 0},
    )


def value_mapping(values: dict[int, tuple[str, str]]) -> list[Json]:
    """{0: ("unhealthy", "red"), …} -> Grafana value mappings (number to text and colour)."""
    return [
        {
            "type": "value",
            "options": {
                str(value): {"text": text, "color": color, "index": index}
                for index, (value, (text, color)) in enumerate(sorted(values.items()))
            },
        }
    ]


def link_override(field_name: str, title: str, url: str) -> Json:
    """A data link on one table column (the cell's own value is ${__value.raw})."""
    return {
        "matcher": {"id": "byName", "options": field_name},
        "properties": [{"id": "links", "value": [{"title": title, "url": url, "targetBlank": url.startswith("http")}]}],
    }


# Dashboards ------------------------------------------------------------------------------------


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    variables: list[Json]
    rows: list[list[Panel]]
    links: list[Json] = field(default_factory=list)
    time_from: str = "now-3h"

    def to_json(self) -> Json:
        """Panels are laid out row by row; ids are stable (their position), so regenerating gives the
        same file and Grafana keeps users' per-panel links."""
        panels: list[Json] = []
        y = 0
        for row in self.rows:
            x = 0
            height = 0
            for panel in row:
                if x + panel.width > 24:
                    raise ValueError(f"{self.uid}: row wider than 24 at {panel.title!r}")
                panels.append(panel.to_json(len(panels) + 1, x, y))
                x += panel.width
                height = max(height, panel.height)
            y += height
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": [TAG],
            "editable": False,
            "graphTooltip": 1,
            "timezone": "utc",
            "refresh": "30s",
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "weekStart": "",
            "links": [
                {
                    "type": "dashboards",
                    "title": "lbdoctor",
                    "tags": [TAG],
                    "asDropdown": True,
                    "includeVars": True,
                    "keepTime": True,
                    "icon": "external link",
                    "targetBlank": False,
                    "tooltip": "",
                    "url": "",
                },
                *self.links,
            ],
            "annotations": {"list": []},
            "templating": {"list": self.variables},
            "panels": panels,
        }
