"""Grafana dashboard panels found by slug (`/graph <slug>`), their PromQL with variables filled.

A panel's slug is the first line of its `description`: `/graph <slug>` (observability/README.md).
Grafana's variables are filled as Grafana would: `$service` and `$env` (escaped for the PromQL
string they sit in; as a regex inside `=~"…"`, where no service means `.*`), `$__interval`,
`$__rate_interval` (Grafana's rule: the larger of interval + scrape interval and four scrape
intervals) and the `$__range` family. Any other variable is an error naming it.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from approval_engine.config import format_duration
from bots.errors import CommandError, UsageError
from bots.settings import PROJECT_ROOT

__all__ = [
    "DASHBOARDS_DIR",
    "Panel",
    "Target",
    "fill",
    "legend",
    "load_panels",
    "suggest",
]

DASHBOARDS_DIR = PROJECT_ROOT / "observability" / "grafana-dashboards"
SCRAPE_INTERVAL = timedelta(minutes=1)  # what $__rate_interval assumes, as Grafana's default

_SLUG_LINE = re.compile(r"/graph ([a-z0-9]+(?:-[a-z0-9]+)*)")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_REGEX_BEFORE = re.compile(r"[=!]~\s*$")
_REGEX_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Target:
    ref: str
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    slug: str
    title: str
    about: str  # the description's text after the slug line
    unit: str
    dashboard: str  # the dashboard's file name
    targets: tuple[Target, ...]

    def needs_service(self) -> bool:
        """Whether a query matches `service` exactly (not by regex), so one must be named."""
        return any(_exact_use(t.expr, "service") for t in self.targets)

    def uses(self, variable: str) -> bool:
        return any(variable in _variables(t.expr) for t in self.targets)


def load_panels(directory: Path = DASHBOARDS_DIR) -> dict[str, Panel]:
    """Every panel with a slug in the directory's dashboards, by slug."""
    panels: dict[str, Panel] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            dashboard = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CommandError(f"cannot read the dashboard {path.name}: {e}") from e
        for item in dashboard.get("panels", []):
            panel = _panel(item, path.name)
            if panel is not None and panel.slug not in panels:
                panels[panel.slug] = panel
    return panels


def suggest(slug: str, panels: Mapping[str, Panel]) -> str:
    """An error text for an unknown slug: the closest slug, then all of them."""
    close = difflib.get_close_matches(slug, list(panels), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]}?" if close else ""
    return f"There is no panel {slug!r}.{hint} Panels: {', '.join(panels)}."


def fill(
    expr: str,
    *,
    service: str | None,
    env: str,
    step: timedelta,
    span: timedelta,
    scrape_interval: timedelta = SCRAPE_INTERVAL,
) -> str:
    """`expr` with Grafana's variables replaced; UsageError when it needs a service not given."""
    rate = max(step + scrape_interval, 4 * scrape_interval)
    raw = {
        "__interval": format_duration(step),
        "__interval_ms": str(int(step.total_seconds() * 1000)),
        "__rate_interval": format_duration(rate),
        "__range": format_duration(span),
        "__range_s": str(int(span.total_seconds())),
        "__range_ms": str(int(span.total_seconds() * 1000)),
    }
    labels = {"service": service, "env": env}

    def in_string(match: re.Match[str], regex: bool) -> str:
        name = _name(match)
        if name not in labels:
            raise CommandError(f"the panel's query uses ${name}, which /graph cannot fill")
        value = labels[name]
        if value is None:
            if not regex:
                raise UsageError(f"this panel needs a {name}")
            return ".*"
        text = _REGEX_SPECIAL.sub(r"\\\1", value) if regex else value
        return text.replace("\\", "\\\\").replace('"', '\\"')

    def outside(match: re.Match[str]) -> str:
        name = _name(match)
        if name not in raw:
            raise CommandError(f"the panel's query uses ${name} outside a label matcher")
        return raw[name]

    parts: list[str] = []
    at = 0
    for string in _STRING.finditer(expr):
        before = expr[at : string.start()]
        parts.append(_VARIABLE.sub(outside, before))
        regex = bool(_REGEX_BEFORE.search(before))
        parts.append(_VARIABLE.sub(functools.partial(in_string, regex=regex), string.group()))
        at = string.end()
    parts.append(_VARIABLE.sub(outside, expr[at:]))
    return "".join(parts)


def legend(template: str, labels: Mapping[str, str], *, fallback: str) -> str:
    """A series' name from Grafana's legendFormat (`{{pod}}`); the label set when it has none."""
    if template and template != "__auto":
        return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), template).strip() or fallback
    shown = sorted((k, v) for k, v in labels.items() if k != "__name__")
    return "{" + ", ".join(f"{k}={v}" for k, v in shown) + "}" if shown else fallback


def _panel(item: Mapping[str, Any], dashboard: str) -> Panel | None:
    lines = str(item.get("description") or "").splitlines()
    match = _SLUG_LINE.fullmatch(lines[0].strip()) if lines else None
    if match is None:
        return None
    targets = tuple(
        Target(
            ref=str(t.get("refId", "")), expr=str(t["expr"]), legend=str(t.get("legendFormat", ""))
        )
        for t in item.get("targets", [])
        if isinstance(t, dict) and str(t.get("expr") or "").strip()
    )
    unit = (item.get("fieldConfig") or {}).get("defaults", {}).get("unit") or ""
    return Panel(
        slug=match.group(1),
        title=str(item.get("title", match.group(1))),
        about=" ".join(line.strip() for line in lines[1:] if line.strip()),
        unit=str(unit),
        dashboard=dashboard,
        targets=targets,
    )


def _name(match: re.Match[str]) -> str:
    return next(g for g in match.groups() if g)


def _variables(expr: str) -> set[str]:
    return {_name(m) for m in _VARIABLE.finditer(expr)}


def _exact_use(expr: str, variable: str) -> bool:
    at = 0
    for string in _STRING.finditer(expr):
        regex = bool(_REGEX_BEFORE.search(expr[at : string.start()]))
        if not regex and variable in _variables(string.group()):
            return True
        at = string.end()
    return False
