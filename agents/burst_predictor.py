"""BurstPredictor: raise an HPA's floor before recurring bursts new pods would start too late for.

Per workload with an HPA:

1. Demand history at `step` is cut into hours and each keeps its PEAK, so a burst shorter
   than an hour is not averaged away; `forecast()` (the M4-benchmarked one, season 24)
   predicts the next `horizon` of hourly peaks.
2. One pod serves the median of demand / (replicas · cpu/100) at 100 % CPU.
3. An hour of the horizon is a burst hour when
   - in `recurrence` of the past weeks (two at least) the same hour of the week held a rise
     of `min_lift_pct` that came faster than `pod_start` plus one sample and lasted as
     long: a step the HPA cannot follow, unlike the morning ramp (hourly numbers cannot
     tell the two apart), and no one-off;
   - its expected peak (the forecast, or the hour before times the past bursts' median
     lift when that is higher: blending smooths a burst that one holiday week lacked)
     rises `min_lift_pct` over the hour before;
   - the pods the HPA runs for the hour before (at the target CPU, at least the floor)
     cannot carry that peak plus `headroom` at 100 % CPU while new pods start.
4. The floor proposed serves the peak plus headroom at the target CPU.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from agents._burst import (
    BurstPredictorSettings,
    BurstWindow,
    Prediction,
    hpa_knobs,
    predict,
)
from agents.base import AgentContext, Finding, ProposingAgent
from agents.registry import registry
from approval_engine.model import ChangeRequest, KnobChange, Scalar

__all__ = ["BurstPredictor", "BurstPredictorSettings", "BurstWindow", "Prediction", "predict"]

FloatArray = npt.NDArray[np.float64]


@registry.agent(name="BurstPredictor", settings=BurstPredictorSettings, every="15m", timeout="2m")
class BurstPredictor(ProposingAgent[BurstPredictorSettings]):
    """Forecasts demand bursts an HPA cannot absorb while pods start; proposes a higher floor."""

    def run(self, ctx: AgentContext, *, propose: bool) -> list[Finding]:
        findings: list[Finding] = []
        for service in ctx.workloads:
            for env in ctx.targets.environments(service):
                if not _enabled(ctx.knobs.current_values(service, env)):
                    continue  # no HPA, no floor to raise
                prediction = predict(ctx, self.settings, service, env)
                found = _finding(self.name, prediction, propose=propose)
                if found is not None:
                    findings.append(found)
        return findings


def _finding(agent: str, p: Prediction, *, propose: bool) -> Finding | None:
    """One finding per workload: its windows (and the proposal), or why nothing was forecast."""
    where = f"{p.service}/{p.env}"
    if p.note:
        return Finding(
            agent=agent,
            key=f"burst:{where}",
            severity="info",
            title=f"{where}: no burst forecast ({p.note})",
            service=p.service,
            env=p.env,
        )
    if not p.windows or p.pod_capacity_rps is None or p.current_floor is None:
        return None
    timely = [w for w in p.windows if not w.late]
    # The window that sets the floor speaks for the finding; else the first (late) one.
    main = max(timely, key=lambda w: w.needed_floor) if timely else p.windows[0]
    more = f" (+{len(p.windows) - 1} more)" if len(p.windows) > 1 else ""
    spike = (
        f"Traffic spike expected {main.label()}{more}, {main.lift_pct:+.0f} % over the hour before"
    )
    evidence = (*(_evidence(p, w) for w in p.windows), _capacity_line(p), _blend(p))
    change = None
    if not timely:
        title = f"{where}: {spike}; too late for a reviewed change, scale by hand"
    elif p.raises_floor:
        title = f"{where}: {spike}. minReplicas {p.current_floor} → {p.needed_floor}"
        change = _change(p, spike, main, evidence) if propose else None
    else:
        title = f"{where}: {spike}; the floor is already at the agent's max_floor"
    shortfall = main.planned_rps / main.capacity_before_rps - 1.0
    return Finding(
        agent=agent,
        key=f"burst:{where}",
        severity="critical" if not timely else "warning",
        title=title,
        detail=_detail(p),
        service=p.service,
        env=p.env,
        evidence=evidence,
        score=round(max(shortfall, 0.0) * main.confidence, 4),
        change=change,
        graph=p.graph,
    )


def _change(
    p: Prediction, spike: str, main: BurstWindow, evidence: tuple[str, ...]
) -> ChangeRequest:
    assert p.needed_floor is not None and p.current_floor is not None
    changes = [KnobChange("min_replicas", p.needed_floor)]
    knobs = f"minReplicas {p.current_floor} → {p.needed_floor}"
    if p.current_max is not None and p.current_max < p.needed_floor:
        changes.append(KnobChange("max_replicas", p.needed_floor))
        knobs += f", maxReplicas {p.current_max} → {p.needed_floor}"
    return ChangeRequest(
        kind="burst",
        service=p.service,
        env=p.env,
        changes=tuple(changes),
        rationale=f"{spike}. {knobs}",
        requested_by="agent:BurstPredictor",
        confidence=round(main.confidence, 2),
        evidence=evidence,
    )


def _evidence(p: Prediction, w: BurstWindow) -> str:
    target = p.target_cpu or 0.0
    return (
        f"{w.label()}: peak {w.peak_rps:.0f} rps expected (forecast {w.forecast_rps:.0f}, "
        f"upper band {w.upper_rps:.0f}; {w.before_rps:.0f} the hour before, ×{w.past_lift:.2f} "
        f"in past bursts); the HPA would hold {w.pods_before} pods "
        f"= {w.capacity_before_rps:.0f} rps at 100 % CPU; {w.needed_floor} pods serve "
        f"{w.planned_rps:.0f} rps (peak + headroom) at {target:g} % CPU; "
        f"window {w.start:%Y-%m-%dT%H:%MZ} to "
        f"{w.end:%Y-%m-%dT%H:%MZ}, pods ready by {w.ready_by:%H:%M}; the rise showed in "
        f"{w.weeks_seen} of the last {w.weeks_observed} weeks"
        + ("; too late for review" if w.late else "")
    )


def _capacity_line(p: Prediction) -> str:
    one = p.pod_capacity_rps or 0.0
    target = p.target_cpu or 0.0
    return (
        f"one pod serves {one:.1f} rps at 100 % CPU, {one * target / 100:.1f} at the "
        f"{target:g} % target (median over {p.history_days:.0f} days); current floor "
        f"{p.current_floor}, max {p.current_max}"
    )


def _blend(p: Prediction) -> str:
    parts = sorted(p.weights.items(), key=lambda kv: -kv[1])
    blend = ", ".join(f"{name} {weight:.0%}" for name, weight in parts if weight >= 0.01)
    return f"forecast of hourly peaks blends {blend or 'the last day repeated'}"


def _detail(p: Prediction) -> str:
    lines = [
        f"{len(p.windows)} burst window(s) in the next {len(p.times)} h that the pods the HPA "
        "already runs cannot carry while new pods start:"
    ]
    lines += [
        f"- {w.label()}: {w.peak_rps:.0f} rps vs {w.capacity_before_rps:.0f} rps, "
        f"floor {w.needed_floor} needed{' (too late for review)' if w.late else ''}"
        for w in p.windows
    ]
    return "\n".join(lines)


def _enabled(values: Mapping[str, Scalar]) -> bool:
    try:
        return hpa_knobs(values) is not None
    except ValueError:
        return True  # predict() reports the broken knobs
