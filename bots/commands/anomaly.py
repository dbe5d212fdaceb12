"""/anomaly: the anomalies the AnomalyDetector sees open now."""

from __future__ import annotations

from agents.anomaly_detector import AnomalyDetectorSettings, current_anomalies
from bots.commands.agents import ago
from bots.router import Context, Router
from bots.types import Reply, Table


def install(router: Router) -> None:
    @router.command("anomaly", usage="/anomaly", summary="anomalies open now, newest first")
    def anomaly(ctx: Context) -> Reply:
        runner = ctx.services.agents
        detector = runner.get("AnomalyDetector")
        assert isinstance(detector.settings, AnomalyDetectorSettings)
        agent_ctx = runner.context(detector.name)
        found = current_anomalies(agent_ctx, detector.settings)
        last = runner.last_run(detector.name)
        when = (
            f"last run {ago(last.started_at, agent_ctx.now)} ({last.outcome})"
            if last
            else "it has not run yet: /agent AnomalyDetector analyze runs it now"
        )
        if not found:
            return Reply(text=f"No open anomalies; {when}.")
        table = Table(
            title=f"Open anomalies ({when})",
            columns=("service", "env", "signal", "since", "peak", "what"),
            rows=tuple(
                (
                    a.service,
                    a.env,
                    a.signal,
                    f"{a.started:%a %H:%M} UTC",
                    f"{a.peak_score:.2f}",
                    a.describe(),
                )
                for a in found
            ),
        )
        return Reply(tables=(table,))
