"""Risk: a deterministic, explained rating of a change, computed before its PR opens.

Each factor below rates a level and gives a reason a person reads; the change's level is the
highest of its factors' levels (`low` when none applies), and its reasons are listed highest
level first, in the order the factors are checked: freezes, environment, each knob, targets,
confidence. "production" is an environment with `production: true` in policy.yaml.

factor                                                          elsewhere   production
--------------------------------------------------------------  ----------  ----------
a freeze (policy.yaml `freezes:`) holds the environment now     critical    critical
the environment itself                                          low         medium
a capacity cut (replicas, floors, ceilings, CPU or memory
  requests, an instance class's size, a raised HPA target):
  below `rules.large_cut`                                       low         medium
  `rules.large_cut` or more                                     medium      high
more capacity, or a cost increase (the reason says so)          low         low
autoscaling turned off                                          medium      high
an instance class change, in place: Multi-AZ fails over         low         medium
  not Multi-AZ: downtime while it restarts                      medium      high
a move to a burstable class (`db.t…`) of the same size          low         medium
an engine version change (in place, with downtime)              medium      high
an argument that replaces the resource (`engine`,
  `identifier`, a shrinking `allocated_storage`, …): stateful   high        critical
  not stateful                                                  medium      high
`deletion_protection` off                                       high        critical
`skip_final_snapshot` on; `multi_az` off                        medium      high
fewer days of backups                                           low         medium
backups off (`backup_retention_period = 0`)                     high        critical
`publicly_accessible` on; any value holding 0.0.0.0/0 or ::/0   critical    critical
a knob no rule here knows, or a value it cannot compare         medium      medium
2 resources touched (files, Terraform blocks)                   low         low
`rules.many_targets` or more resources touched                  medium      medium
the proposer's confidence (agents give one; people do not):
  below `rules.confidence.high_below`                           high        high
  below `rules.confidence.medium_below`                         medium      medium
  otherwise                                                     low         low

A knob's rule is found by its attribute (the last part of its key, in snake_case:
`autoscaling.minReplicas` → `min_replicas`), then its attribute with its parent
(`resources.requests.cpu` → `requests_cpu`), then its name in targets.yaml; see KNOB_EFFECTS.
A Terraform resource is stateful when its type is in STATEFUL_TYPES or the target is a
`database` in targets.yaml; a database module's inputs are taken to mean what the
aws_db_instance arguments of the same name mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from approval_engine._risk_knobs import (
    KNOB_EFFECTS,
    STATEFUL_TYPES,
    Effect,
    Factor,
    rate_knob,
    touched,
)
from approval_engine.config import Freeze, PolicyConfig, RiskRules, as_utc, weekly_window
from approval_engine.model import EditedKnob, Risk, RiskLevel

__all__ = [
    "KNOB_EFFECTS",
    "STATEFUL_TYPES",
    "Effect",
    "Factor",
    "Risk",
    "RiskLevel",
    "active_freezes",
    "assess",
    "combine",
    "freeze_until",
]

LOW, MEDIUM, HIGH, CRITICAL = RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.CRITICAL


def assess(
    *,
    env: str,
    knobs: Sequence[EditedKnob],
    files: Mapping[str, str],
    stateful: bool,
    confidence: float | None,
    policy: PolicyConfig,
    now: datetime,
) -> Risk:
    """Rate a change: `knobs` as edited, `files` path → text after the edit (for context such
    as a database's multi_az), `stateful` for a database target; pure and deterministic."""
    env_policy = policy.environments.get(env)
    production = env_policy is not None and env_policy.production
    rules = policy.risk.rules
    factors = [
        *(
            Factor(CRITICAL, f"inside freeze {f.name!r} until {until:%Y-%m-%d %H:%M} UTC")
            for f, until in active_freezes(policy.freezes, env, now)
        ),
        Factor(MEDIUM if production else LOW, f"{env} environment"),
    ]
    for knob in knobs:
        factors.extend(
            rate_knob(
                knob,
                text=files.get(knob.path),
                stateful=stateful,
                production=production,
                rules=rules,
            )
        )
    factors.extend(_targets(knobs, rules))
    factors.extend(_confidence(confidence, rules))
    return combine(factors)


def combine(factors: Sequence[Factor]) -> Risk:
    """The highest level of the factors, with their reasons highest level first."""
    level = max((f.level for f in factors), key=lambda lv: lv.rank, default=LOW)
    ordered = sorted(factors, key=lambda f: -f.level.rank)  # stable: ties keep their order
    return Risk(level=level, reasons=tuple(dict.fromkeys(f.reason for f in ordered)))


# --- freezes --------------------------------------------------------------------------------


def freeze_until(freeze: Freeze, now: datetime) -> datetime | None:
    """When the freeze holding at `now` ends, or None when it does not hold then."""
    now = as_utc(now)
    if freeze.weekly is None:
        assert freeze.start is not None and freeze.end is not None  # the model guarantees it
        return freeze.end if freeze.start <= now < freeze.end else None
    start, end = (timedelta(minutes=m) for m in weekly_window(freeze.weekly))
    monday = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=now.weekday())
    offset = now - monday
    if start < end:
        return monday + end if start <= offset < end else None
    if offset >= start:  # the window wraps the week: it ends next week
        return monday + timedelta(days=7) + end
    return monday + end if offset < end else None


def active_freezes(
    freezes: Sequence[Freeze], env: str, now: datetime
) -> list[tuple[Freeze, datetime]]:
    """The freezes that hold `env` at `now`, each with when it ends."""
    held = [(f, freeze_until(f, now)) for f in freezes if f.covers(env)]
    return [(f, until) for f, until in held if until is not None]


def _targets(knobs: Sequence[EditedKnob], rules: RiskRules) -> list[Factor]:
    blocks = list(dict.fromkeys(touched(k)[0] for k in knobs))
    if len(blocks) < 2:
        return []
    level = MEDIUM if len(blocks) >= rules.many_targets else LOW
    return [Factor(level, f"touches {len(blocks)} resources: {', '.join(blocks)}")]


def _confidence(confidence: float | None, rules: RiskRules) -> list[Factor]:
    if confidence is None:
        return []
    for level, below in (
        (HIGH, rules.confidence.high_below),
        (MEDIUM, rules.confidence.medium_below),
    ):
        if confidence < below:
            return [Factor(level, f"proposer's confidence {confidence:.2f} is below {below:g}")]
    return [Factor(LOW, f"proposer's confidence {confidence:.2f}")]
