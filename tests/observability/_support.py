"""Paths, binaries and PromQL helpers shared by the observability/ tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO_ROOT / "observability"
RULES_DIR = OBSERVABILITY / "prometheus-rules"
RULE_TESTS_DIR = RULES_DIR / "tests"
RUNBOOKS_DIR = OBSERVABILITY / "runbooks"
ALERTMANAGER_CONFIG = OBSERVABILITY / "alertmanager" / "alertmanager.yml"
DASHBOARDS_DIR = OBSERVABILITY / "grafana-dashboards"
SYNTHETIC_DIR = OBSERVABILITY / "synthetic-tests"
METRICS_DOC = OBSERVABILITY / "metrics.yaml"

RULE_FILES = sorted(RULES_DIR.glob("*.rules.yaml"))
RULE_TEST_FILES = sorted(RULE_TESTS_DIR.glob("*.test.yaml"))
DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))

RUNBOOK_URL_PREFIX = "https://github.com/opsgate/opsgate/blob/main/observability/runbooks/"
SEVERITIES = ("page", "ticket", "info")

# The slug `/graph <slug>` looks a panel up by: the first line of the panel's description.
SLUG_LINE = re.compile(r"/graph ([a-z0-9]+(?:-[a-z0-9]+)*)")

_INSTALL = "Debian: apt-get install prometheus prometheus-alertmanager"


def binary(name: str) -> str:
    """The path of a Prometheus or Alertmanager program; skips the calling test without it."""
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not on PATH ({_INSTALL})")
    return found


def run(argv: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# --- rules ----------------------------------------------------------------------------------


def rules(path: Path) -> Iterator[dict[str, Any]]:
    for group in load_yaml(path)["groups"]:
        yield from group["rules"]


def alerting_rules() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, rule) for path in RULE_FILES for rule in rules(path) if "alert" in rule]


def alert_key(rule: dict[str, Any]) -> tuple[str, str]:
    """An alert is its name and severity: several alerts share a name with different severities."""
    return rule["alert"], str(rule.get("labels", {}).get("severity"))


# --- dashboards -----------------------------------------------------------------------------


def panel_slug(panel: dict[str, Any]) -> str | None:
    lines = str(panel.get("description", "")).splitlines()
    match = SLUG_LINE.fullmatch(lines[0]) if lines else None
    return match.group(1) if match else None


# What a Grafana variable stands for when a query is checked offline.
GRAFANA_VALUES = {
    "service": "checkout",
    "env": "prod",
    "__rate_interval": "5m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def grafana_variables(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(text)}


def substitute(text: str, values: dict[str, str] = GRAFANA_VALUES) -> str:
    """A Grafana query with its variables replaced; KeyError names an unknown variable."""
    return _VARIABLE.sub(lambda m: values[next(g for g in m.groups() if g)], text)


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL with Grafana variables) for every query the dashboard sends to Prometheus."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']!r}", label_values_selector(variable["definition"])


_LABEL_VALUES = re.compile(r"label_values\((?:(.+),\s*)?(\w+)\)")


def label_values_selector(definition: str) -> str:
    """The series selector of a `label_values(selector, label)` variable query."""
    match = _LABEL_VALUES.fullmatch(definition.strip())
    if match is None:
        raise ValueError(f"not a label_values(...) query: {definition!r}")
    selector, label = match.groups()
    return selector or f'{{{label}!=""}}'


# --- PromQL ---------------------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_OFFSET = re.compile(r"\boffset\s+-?\w+", re.IGNORECASE)
_IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][\w:]*+(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "inf", "nan", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: the identifiers left once strings, label
    matchers, ranges, offsets, groupings and function calls are out of the way."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _OFFSET.sub("", text)
    text = _GROUPING.sub("", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}
