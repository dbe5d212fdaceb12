"""/predict [service] [env]: the BurstPredictor's demand forecast and the bursts it expects."""

from __future__ import annotations

from agents.burst_predictor import BurstPredictorSettings, Prediction, predict
from agents.graphs import render_png
from approval_engine.config import format_duration
from bots.errors import UsageError
from bots.router import Context, Router
from bots.types import Reply, Table

USAGE = "/predict [service] [env]"


def _window(p: Prediction) -> str:
    if not p.windows:
        return "none"
    w = p.windows[0]
    more = f" (+{len(p.windows) - 1} more)" if len(p.windows) > 1 else ""
    return f"{w.start:%a %H:%M}-{w.end:%H:%M} UTC, {w.peak_rps:.0f} rps{more}"


def _floor(p: Prediction) -> str:
    if p.current_floor is None:
        return "no HPA"
    if p.needed_floor is None or p.needed_floor <= p.current_floor:
        return f"{p.current_floor} (enough)"
    return f"{p.current_floor} → {p.needed_floor}"


def install(router: Router) -> None:
    @router.command("predict", usage=USAGE, summary="demand forecast and expected bursts")
    def predict_command(ctx: Context) -> Reply:
        if len(ctx.args) > 2:
            raise UsageError(f"Usage: {USAGE}")
        services = ctx.services
        runner = services.agents
        agent = runner.get("BurstPredictor")
        settings = agent.settings
        assert isinstance(settings, BurstPredictorSettings)
        names = services.targets.workloads()
        if ctx.args:
            services.targets.service(ctx.args[0])  # a clear error for an unknown name
            names = [ctx.args[0]]
        pairs = [
            (name, env)
            for name in names
            for env in services.targets.environments(name)
            if len(ctx.args) < 2 or env == ctx.args[1]
        ]
        if len(ctx.args) == 2:
            services.targets.check_env(ctx.args[0], ctx.args[1])
        agent_ctx = runner.context(agent.name)
        predictions = [predict(agent_ctx, settings, name, env) for name, env in pairs]
        rows = tuple(
            (
                p.service,
                p.env,
                f"{max(p.point):.0f} rps" if p.point else "-",
                _window(p),
                _floor(p),
                p.note or "",
            )
            for p in predictions
        )
        table = Table(
            title=f"Forecast for the next {format_duration(settings.horizon)} "
            f"({runner.sources.metrics.label})",
            columns=("service", "env", "peak", "burst window", "HPA floor", "note"),
            rows=rows,
        )
        graph = None
        if len(predictions) == 1 or (ctx.args and predictions):
            shown = max(predictions, key=lambda p: len(p.windows))
            graph = shown.graph
        lines = [
            f"{p.service}/{p.env}: {w.start:%a %d %b %H:%M}-{w.end:%H:%M} UTC, peak "
            f"{w.peak_rps:.0f} rps against {w.capacity_before_rps:.0f} rps the HPA would have; "
            f"floor {p.current_floor} → {w.needed_floor}"
            for p in predictions
            for w in p.windows
        ]
        return Reply(
            text="\n".join(lines) if lines else "No bursts expected within the horizon.",
            tables=(table,),
            image_png=render_png(graph) if graph is not None and not graph.is_empty() else None,
        )
