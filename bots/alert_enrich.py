"""What an alert's message shows besides the alert: its graph, its runbook, recent changes.

The graph is the alert's expression (the `g0.expr` of its generatorURL) over the last hour,
from the configured Prometheus. A comparison with a number at the top (`x / y > 2`, the first
operand of an `and`) is drawn as its left side with the threshold as a dotted line, so the
graph shows the value approaching and crossing it, not only the minutes it fired. Only series
whose labels agree with the alert's are drawn.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

from agents.graphs import Graph, Line, Span, render_png
from agents.sources.prometheus import PrometheusSource
from approval_engine.config import format_duration
from approval_engine.engine import Engine, utc_now
from approval_engine.model import Proposal, State
from bots.alert_types import Enrichment
from bots.dashboards import legend

__all__ = ["AlertEnricher", "alert_expression", "split_threshold"]

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_LINES = 8
MAX_CHANGES = 3
# Labels Alertmanager or the rule adds that the expression's series do not carry.
_ALERT_ONLY = frozenset({"alertname", "severity", "alertstate"})
_SKIPPED = frozenset({State.REJECTED, State.EXPIRED, State.SUPERSEDED})
_VERB = {
    State.OPEN: "proposed",
    State.APPROVED: "approved",
    State.MERGED: "merged",
    State.SYNCING: "merged, syncing",
    State.APPLIED: "applied",
    State.FAILED: "failed",
    State.ROLLED_BACK: "rolled back",
}
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(\s*bool\b)?")
_SET_OPERATOR = re.compile(r"\b(and|or|unless)\b")


def alert_expression(generator_url: str) -> str | None:
    """The PromQL of Prometheus's generatorURL (`…/graph?g0.expr=…`), or None."""
    try:
        query = parse_qs(urlsplit(generator_url).query)
    except ValueError:
        return None
    found = query.get("g0.expr")
    return found[0].strip() if found and found[0].strip() else None


def _top_level(expr: str) -> list[tuple[int, int]]:
    """(start, end) of the stretches of `expr` outside brackets and strings."""
    stretches: list[tuple[int, int]] = []
    depth, quote, start, index = 0, "", 0, 0
    while index < len(expr):
        char = expr[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
                start = index + 1
        elif char in "\"'`":
            if depth == 0:
                stretches.append((start, index))
            quote = char
        elif char in "([{":
            if depth == 0:
                stretches.append((start, index))
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                start = index + 1
        index += 1
    if depth == 0 and not quote:
        stretches.append((start, len(expr)))
    return [(a, b) for a, b in stretches if b > a]


def split_threshold(expr: str) -> tuple[str, float | None]:
    """`a / b > 2 and c > 1` → ("a / b", 2.0); anything else → (expr, None)."""
    stretches = _top_level(expr)
    for a, b in stretches:
        found = _SET_OPERATOR.search(expr, a, b)
        if found:
            if found.group(1) == "or":
                return expr, None
            return split_threshold(expr[: found.start()])
    for a, b in stretches:
        found = _COMPARISON.search(expr, a, b)
        if found and not found.group(2):
            left, right = expr[: found.start()].strip(), expr[found.end() :]
            if left and _NUMBER.match(right):
                return left, float(right)
            return expr, None
    return expr, None


def _agrees(series_labels: Mapping[str, str], alert_labels: Mapping[str, str]) -> bool:
    return all(
        alert_labels[k] == v
        for k, v in series_labels.items()
        if k in alert_labels and k not in _ALERT_ONLY
    )


@dataclass(frozen=True)
class AlertEnricher:
    """An Enricher over the configured Prometheus (None: no graphs) and the engine's proposals."""

    prometheus: PrometheusSource | None
    engine: Engine | None
    window: timedelta = timedelta(hours=1)
    changes_since: timedelta = timedelta(hours=24)
    step: timedelta = timedelta(minutes=1)
    clock: Callable[[], datetime] = utc_now

    def enrich(
        self,
        *,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        generator_url: str,
        starts_at: datetime,
    ) -> Enrichment:
        lines: list[str] = []
        runbook = annotations.get("runbook_url", "").strip()
        if runbook:
            lines.append(f"Runbook: {runbook}")
        lines.extend(self._safely("recent changes", lambda: self._changes(labels), []))
        png = self._safely("graph", lambda: self._png(labels, generator_url, starts_at), None)
        return Enrichment(graph_png=png, lines=tuple(lines))

    def _png(
        self, labels: Mapping[str, str], generator_url: str, starts_at: datetime
    ) -> bytes | None:
        graph = self.graph(labels, generator_url, starts_at)
        return render_png(graph) if graph is not None else None

    def _safely(self, what: str, make: Callable[[], T], default: T) -> T:
        try:
            return make()
        except Exception as e:  # an alert is still worth sending without its extras
            log.warning("alert enrichment: no %s (%s: %s)", what, type(e).__name__, e)
            return default

    def graph(
        self, labels: Mapping[str, str], generator_url: str, starts_at: datetime
    ) -> Graph | None:
        """The alert's expression over the window, or None; raises what Prometheus raises."""
        expr = alert_expression(generator_url)
        if self.prometheus is None or expr is None:
            return None
        end = self.clock()
        start = end - self.window
        shown, threshold = split_threshold(expr)
        found = self._lines(shown, labels, start, end)
        if not found and threshold is not None:
            threshold = None
            found = self._lines(expr, labels, start, end)
        if not found:
            return None
        if threshold is not None:
            found.append(Line(f"threshold {threshold:g}", (start, end), (threshold,) * 2, ":"))
        since = max(start, starts_at)
        graph = Graph(
            title=f"{labels.get('alertname', 'alert')}: {_where(labels)}, "
            f"last {format_duration(self.window)}",
            unit="",
            lines=tuple(found),
            spans=(Span(f"firing since {starts_at:%H:%M} UTC", since, end),) if since < end else (),
        )
        return None if graph.is_empty() else graph

    def _lines(
        self, expr: str, labels: Mapping[str, str], start: datetime, end: datetime
    ) -> list[Line]:
        assert self.prometheus is not None
        results = self.prometheus.query_range(expr, start=start, end=end, step=self.step)
        lines = []
        for series_labels, series in results:
            if not _agrees(series_labels, labels) or not series.observed():
                continue
            name = legend("", series_labels, fallback="value")
            values = tuple(float(v) if math.isfinite(v) else math.nan for v in series.values)
            lines.append(Line(name, tuple(series.times()), values))
            if len(lines) == MAX_LINES:
                break
        return lines

    def _changes(self, labels: Mapping[str, str]) -> list[str]:
        service = labels.get("service")
        if self.engine is None or not service:
            return []
        env = labels.get("env")
        since = self.clock() - self.changes_since
        recent = [
            p
            for p in self.engine.proposals(active_only=False)
            if p.service == service
            and (not env or p.env == env)
            and p.state not in _SKIPPED
            and p.state_since >= since
        ]
        recent.sort(key=lambda p: p.state_since, reverse=True)
        return [_change_line(p) for p in recent[:MAX_CHANGES]]


def _where(labels: Mapping[str, str]) -> str:
    service, env = labels.get("service", ""), labels.get("env", "")
    return f"{service}/{env}" if service and env else service or env or "all"


def _change_line(proposal: Proposal) -> str:
    """E.g. `checkout/prod: min_replicas 2 → 4 applied at 10:02 UTC (scale-3)`."""
    changes = _knobs(proposal) or proposal.title
    verb = _VERB.get(proposal.state, proposal.state.value)
    return (
        f"{proposal.service}/{proposal.env}: {changes} {verb} at "
        f"{proposal.state_since:%H:%M} UTC ({proposal.id})"
    )


def _knobs(proposal: Proposal) -> str:
    knobs: Sequence[str] = [f"{k.knob} {k.old} → {k.new}" for k in proposal.knobs]
    return ", ".join(knobs)
