"""/graph <panel> [service] [env] [range]: a Grafana dashboard panel drawn without Grafana.

The panel's queries come from observability/grafana-dashboards/ and run on Prometheus when
`sources.metrics: prometheus`; in the simulation, panels that map to simulated signals are
drawn from those (bots/dashboards_sim.py) and the others say they need Prometheus.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from agents.graphs import Graph, Line, render_png
from agents.sources.prometheus import PrometheusSource
from approval_engine.config import format_duration, parse_duration
from bots.dashboards import Panel, fill, legend, load_panels, suggest
from bots.dashboards_sim import PER_DATABASE, SIMULATED_PANELS, lines_for
from bots.errors import CommandError, UsageError
from bots.router import Context, Router
from bots.services import Services
from bots.types import Reply, Table

USAGE = "/graph <panel> [service] [env] [range]"
DEFAULT_RANGE = timedelta(hours=1)
MIN_RANGE = timedelta(minutes=5)
MAX_RANGE = timedelta(days=7)
POINTS = 240  # about one per 4 px of the rendered graph
MAX_LINES = 12
_RANGE_LIKE = re.compile(r"^\d+[A-Za-z]+$")
# Grafana unit → (axis label, factor).
_UNITS = {
    "reqps": ("req/s", 1.0),
    "percent": ("%", 1.0),
    "percentunit": ("%", 100.0),
    "ms": ("ms", 1.0),
    "s": ("s", 1.0),
    "opm": ("per minute", 1.0),
}


def parse_range(text: str) -> timedelta:
    try:
        span = parse_duration(text)
    except ValueError as e:
        raise UsageError(f"{e}. Usage: {USAGE}") from None
    assert isinstance(span, timedelta)
    if not MIN_RANGE <= span <= MAX_RANGE:
        raise CommandError(
            f"The range must be between {format_duration(MIN_RANGE)} and "
            f"{format_duration(MAX_RANGE)}, not {text}."
        )
    return span


def _options(services: Services, words: list[str]) -> tuple[str | None, str, timedelta]:
    """service, env and range from the words after the panel, in any order."""
    targets = services.targets
    environments = targets.all_environments()
    service: str | None = None
    env: str | None = None
    span: timedelta | None = None
    for word in words:
        if _RANGE_LIKE.match(word) and span is None:
            span = parse_range(word)
        elif word in environments and env is None:
            env = word
        elif service is None:
            service = word
        else:
            raise UsageError(
                f"Too many words. Usage: {USAGE}, e.g. /graph replicas checkout prod 6h"
            )
    if service is not None:
        targets.service(service)  # a clear error for an unknown name
        if env is None:
            known = targets.environments(service)
            env = services.default_env if services.default_env in known else known[0]
        targets.check_env(service, env)
    return service, env or services.default_env, span or DEFAULT_RANGE


def _step(span: timedelta) -> timedelta:
    minutes = max(1, math.ceil(span / timedelta(minutes=1) / POINTS))
    return timedelta(minutes=minutes)


def _end(now: datetime, step: timedelta) -> datetime:
    """The end of the step `now` falls in: ranges on whole steps draw the same every time."""
    seconds = step.total_seconds()
    return (
        datetime.fromtimestamp(math.floor(now.timestamp() / seconds) * seconds, now.tzinfo) + step
    )


def _prometheus_lines(
    source: PrometheusSource,
    panel: Panel,
    *,
    service: str | None,
    env: str,
    start: datetime,
    end: datetime,
    step: timedelta,
) -> tuple[list[Line], int]:
    lines: list[Line] = []
    left_out = 0
    for target in panel.targets:
        expr = fill(target.expr, service=service, env=env, step=step, span=end - start)
        for labels, series in source.query_range(expr, start=start, end=end, step=step):
            if len(lines) >= MAX_LINES:
                left_out += 1
                continue
            name = legend(target.legend, labels, fallback=target.ref)
            lines.append(Line(name, tuple(series.times()), tuple(series.values.tolist())))
    return lines, left_out


def _scaled(lines: list[Line], factor: float) -> list[Line]:
    if factor == 1.0:
        return lines
    return [
        Line(line.label, line.times, tuple(v * factor for v in line.values), line.style)
        for line in lines
    ]


def _summary(lines: list[Line], unit: str) -> Table:
    def shown(value: float) -> str:
        return "-" if not math.isfinite(value) else f"{value:.4g}"

    rows = []
    for line in lines:
        finite = [v for v in line.values if math.isfinite(v)]
        last = finite[-1] if finite else math.nan
        low = min(finite) if finite else math.nan
        high = max(finite) if finite else math.nan
        rows.append((line.label, shown(last), shown(low), shown(high)))
    suffix = f" ({unit})" if unit else ""
    return Table(columns=("series", f"last{suffix}", "min", "max"), rows=tuple(rows))


def install(router: Router) -> None:
    @router.command("graph", usage=USAGE, summary="a dashboard panel as a graph")
    def graph(ctx: Context) -> Reply:
        panels = load_panels()
        if not ctx.args:
            raise UsageError(
                f"Usage: {USAGE}, e.g. /graph request-rate checkout prod 6h. "
                f"Panels: {', '.join(panels)}."
            )
        slug = ctx.args[0].lower()
        panel = panels.get(slug)
        if panel is None:
            raise CommandError(suggest(slug, panels))
        services = ctx.services
        service, env, span = _options(services, ctx.args[1:])
        if service is None and panel.needs_service():
            raise UsageError(
                f"/graph {slug} needs a service: /graph {slug} <service> [env] [range] "
                f"(services: {', '.join(services.targets.workloads())})"
            )
        step = _step(span)
        end = _end(services.engine.clock(), step)
        start = end - span
        metrics = services.agents.sources.metrics
        left_out = 0
        if isinstance(metrics, PrometheusSource):
            lines, left_out = _prometheus_lines(
                metrics, panel, service=service, env=env, start=start, end=end, step=step
            )
        else:
            targets = services.targets
            shown = [service or ""]
            if slug in PER_DATABASE:
                shown = [
                    name
                    for name in targets.services()
                    if targets.kind(name) == "database" and env in targets.environments(name)
                ]
            found = lines_for(
                slug,
                metrics,
                services=shown,
                env=env,
                start=start,
                end=end,
                step=step,
                knobs=lambda name: services.engine.current_values(name, env),
            )
            if found is None:
                raise CommandError(
                    f"{slug} needs Prometheus (sources.metrics: prometheus in settings.yaml); "
                    f"from the {metrics.label} /graph draws {', '.join(SIMULATED_PANELS)}."
                )
            lines = found
        unit, factor = _UNITS.get(panel.unit, ("", 1.0))
        lines = _scaled(lines, factor)
        where = f"{service}/{env}" if service else env
        title = f"{panel.title}: {where}, last {format_duration(span)}"
        picture = Graph(title=title, unit=unit, lines=tuple(lines))
        footer = [panel.about] if panel.about else []
        if left_out:
            footer.append(f"{left_out} more series not drawn (at most {MAX_LINES}).")
        if picture.is_empty():
            return Reply(
                text=f"No data for {panel.title} ({where}) in the last "
                f"{format_duration(span)} from {metrics.label}.",
                footer=tuple(footer),
            )
        return Reply(
            text=f"{title} ({metrics.label}).",
            tables=(_summary(lines, unit),),
            image_png=render_png(picture),
            footer=tuple(footer),
        )
