"""The Grafana dashboards: valid JSON, one slug per panel, PromQL that parses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability._support import (
    DASHBOARDS,
    GRAFANA_VALUES,
    OBSERVABILITY,
    binary,
    dashboard_queries,
    grafana_variables,
    load_json,
    panel_slug,
    run,
    substitute,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24


@pytest.fixture(params=DASHBOARDS, ids=lambda p: p.name)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    loaded: dict[str, Any] = load_json(request.param)
    return loaded


def test_the_dashboards_are_there() -> None:
    assert {p.name for p in DASHBOARDS} >= {"burst-scaling.json", "opsgate-overview.json"}


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["id"] is None, "provisioned dashboards leave id to Grafana"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("service", "env"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["definition"].startswith("label_values(")
        assert variable["query"]["query"] == variable["definition"]


def test_panel_shape(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    for panel in dashboard["panels"]:
        title = panel["title"]
        assert panel["type"], title
        assert panel["datasource"] == DATASOURCE, f"{title}: datasource should be {DATASOURCE}"
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), title
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, f"{title} is wider than the grid"
        targets = panel["targets"]
        assert targets, f"{title} has no queries"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), f"{title}: refIds repeat"
        for target in targets:
            assert target["expr"].strip(), f"{title} {target['refId']} has an empty expr"
            assert target.get("datasource", DATASOURCE) == DATASOURCE


def test_panel_titles_are_unique(dashboard: dict[str, Any]) -> None:
    titles = [panel["title"] for panel in dashboard["panels"]]
    repeated = sorted({t for t in titles if titles.count(t) > 1})
    assert not repeated, f"titles used twice: {repeated}"


def test_every_panel_has_a_slug_unique_across_dashboards() -> None:
    seen: dict[str, str] = {}
    for path in DASHBOARDS:
        for panel in load_json(path)["panels"]:
            slug = panel_slug(panel)
            where = f"{path.name}: {panel['title']!r}"
            assert slug, f"{where}: its description should start with the line '/graph <slug>'"
            assert slug not in seen, f"slug {slug!r} of {where} is also {seen[slug]}"
            seen[slug] = where


def test_queries_use_only_known_variables(dashboard: dict[str, Any]) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]} | set(GRAFANA_VALUES)
    for where, expr in dashboard_queries(dashboard):
        unknown = grafana_variables(expr) - defined
        assert not unknown, f"{where} uses undefined variables {sorted(unknown)}"


def _record_name(path: Path, where: str) -> str:
    """A valid metric name that says where a query comes from, for promtool's error message."""
    return ":".join(re.sub(r"\W+", "_", part).strip("_") for part in (path.stem, where))


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    """promtool parses each query as the expression of a recording rule: no server needed."""
    groups = []
    for path in DASHBOARDS:
        dashboard = load_json(path)
        rules = [
            {"record": _record_name(path, where), "expr": substitute(expr)}
            for where, expr in dashboard_queries(dashboard)
        ]
        groups.append({"name": path.name, "rules": rules})
    assert all(group["rules"] for group in groups)
    rules_file = tmp_path / "dashboard-queries.rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    result = run([binary("promtool"), "check", "rules", str(rules_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_slug_is_in_the_readme() -> None:
    readme = (OBSERVABILITY / "README.md").read_text(encoding="utf-8")
    slugs = {panel_slug(panel) for path in DASHBOARDS for panel in load_json(path)["panels"]}
    missing = sorted(s for s in slugs if s and f"| `{s}` |" not in readme)
    assert not missing, f"observability/README.md does not list the slugs {missing}"
