"""Dashboard panels by slug, and Grafana's variables filled the way Grafana fills them."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from bots.dashboards import fill, legend, load_panels, suggest
from bots.errors import CommandError, UsageError
from bots.settings import PROJECT_ROOT

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def test_every_slug_of_the_readme_is_found() -> None:
    panels = load_panels()
    table = (PROJECT_ROOT / "observability" / "README.md").read_text()
    listed = set(re.findall(r"^\| (?:`[\w-]+\.json`)? *\| `([a-z0-9-]+)` \|", table, flags=re.M))
    assert len(listed) >= 20
    assert set(panels) == listed
    replicas = panels["replicas"]
    assert replicas.dashboard == "burst-scaling.json"
    assert replicas.title == "Replicas: ready, desired, min, max"
    assert replicas.unit == "short"
    assert [t.legend for t in replicas.targets] == ["ready", "desired", "min", "max"]
    assert replicas.about.startswith("Ready pods of the Deployment")
    assert replicas.needs_service()
    assert not panels["db-connections"].needs_service()
    assert not panels["alerts-firing"].needs_service()  # service=~"$service"


def test_panels_without_a_slug_line_are_left_out(tmp_path: Path) -> None:
    dashboard = {
        "panels": [
            {"title": "a", "description": "/graph a-b\n\nabout", "targets": [{"expr": "up"}]},
            {"title": "b", "description": "no slug", "targets": [{"expr": "up"}]},
            {"title": "c", "targets": [{"expr": "up"}]},
        ]
    }
    (tmp_path / "d.json").write_text(json.dumps(dashboard))
    assert list(load_panels(tmp_path)) == ["a-b"]


def test_fill_escapes_for_strings_and_regexes() -> None:
    expr = (
        'sum(rate(x{service="$service", env=~"${env}", pod=~"[[service]]-.*"}[$__rate_interval]))'
    )
    filled = fill(expr, service='we"ird.svc', env="prod", step=MINUTE, span=HOUR)
    assert filled == (
        r'sum(rate(x{service="we\"ird.svc", env=~"prod", pod=~"we\"ird\\.svc-.*"}[4m]))'
    )


def test_fill_without_a_service() -> None:
    assert fill('x{service=~"$service"}', service=None, env="prod", step=MINUTE, span=HOUR) == (
        'x{service=~".*"}'
    )
    with pytest.raises(UsageError, match="needs a service"):
        fill('x{service="$service"}', service=None, env="prod", step=MINUTE, span=HOUR)


def test_fill_time_variables() -> None:
    expr = "increase(x[$__range]) / $__range_s + rate(x[$__rate_interval]) + $__interval_ms"
    filled = fill(expr, service=None, env="prod", step=timedelta(minutes=6), span=timedelta(days=1))
    assert filled == "increase(x[1d]) / 86400 + rate(x[7m]) + 360000"


def test_unknown_variables_are_named() -> None:
    with pytest.raises(CommandError, match=r"\$cluster"):
        fill('x{cluster="$cluster"}', service="a", env="b", step=MINUTE, span=HOUR)
    with pytest.raises(CommandError, match=r"\$__from"):
        fill("x offset $__from", service="a", env="b", step=MINUTE, span=HOUR)


def test_legend() -> None:
    labels = {"__name__": "up", "pod": "checkout-1", "route": "/x"}
    assert legend("{{pod}} on {{ route }}", labels, fallback="A") == "checkout-1 on /x"
    assert legend("{{missing}}", labels, fallback="A") == "A"
    assert legend("", labels, fallback="A") == "{pod=checkout-1, route=/x}"
    assert legend("", {}, fallback="A") == "A"


def test_suggest() -> None:
    panels = load_panels()
    assert suggest("replica", panels).startswith("There is no panel 'replica'. Did you mean ")
    assert "Panels: request-rate, burst-ratio" in suggest("zzz", panels)
