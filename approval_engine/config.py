"""Config models the engine owns (targets, policy, users) and the YAML loader every part uses."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from approval_engine.errors import ConfigError
from approval_engine.model import Scalar
from approval_engine.slo import SloCheck

ROLES: tuple[str, ...] = ("viewer", "operator", "approver", "admin")
Role = Literal["viewer", "operator", "approver", "admin"]

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: Any) -> Any:
    """Accept `90s`, `15m`, `24h`, `7d` as well as what pydantic takes for a timedelta."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration like 30s, 15m, 24h or 7d")
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return value


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration: `15m`, `48h`, `7d`, as people write them in config."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(positive)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- targets.yaml -------------------------------------------------------------------------


class KnobSpec(Strict):
    """Where a knob lives: a key in a file of the GitOps repo, or a fixed value."""

    file: str | None = Field(default=None, description="repo path; {service} and {env} expand")
    key: str | None = Field(default=None, description="dotted YAML key or Terraform address")
    value: Scalar | None = Field(default=None, description="a constant, for knobs no file holds")

    @model_validator(mode="after")
    def _one_source(self) -> KnobSpec:
        if self.value is None and (self.file is None or self.key is None):
            raise ValueError("a knob needs either `file` and `key`, or `value`")
        if self.value is not None and (self.file is not None or self.key is not None):
            raise ValueError("a knob has either `file` and `key`, or `value`, not both")
        return self


class ServiceTarget(Strict):
    kind: Literal["workload", "database"] = Field(
        default="workload", description="workloads run pods with replicas; databases do not"
    )
    environments: list[str] = Field(min_length=1)
    argocd_app: str = Field(default="{service}-{env}", description="ArgoCD application name")
    knobs: dict[str, KnobSpec]
    slo: dict[str, SloCheck | None] | None = Field(
        default=None,
        description="per signal, replaces the default `slo:` check; null turns one off",
    )


class TargetsConfig(Strict):
    services: dict[str, ServiceTarget] = Field(min_length=1)
    signals: dict[str, str] = Field(
        default_factory=dict,
        description="PromQL per named signal; $service and $env expand (string.Template)",
    )

    @field_validator("signals")
    @classmethod
    def _templates(cls, signals: dict[str, str]) -> dict[str, str]:
        for name, text in signals.items():
            template = Template(text)
            if not template.is_valid():
                raise ValueError(f"{name}: a $ that starts no placeholder ($$ is a literal $)")
            unknown = sorted(set(template.get_identifiers()) - {"service", "env"})
            if unknown:
                raise ValueError(f"{name}: unknown placeholder ${unknown[0]}; use $service, $env")
        return signals

    slo: dict[str, SloCheck] = Field(
        default_factory=dict,
        description="checks after each apply, per signal, for every workload (approval_engine.slo)",
    )


# --- policy.yaml --------------------------------------------------------------------------


class EnvironmentPolicy(Strict):
    quorum: int = Field(default=1, ge=1, le=10, description="approvals needed to merge")
    approvers: list[str] = Field(
        default_factory=list, description="people allowed to approve here; empty means anyone"
    )
    production: bool = Field(
        default=False,
        description="changes here rate at least medium risk, and capacity cuts rate higher",
    )
    daily_changes: int | None = Field(
        default=None,
        ge=1,
        description="proposals opened per UTC day, reverts not counted; none: no budget",
    )


class ServiceLimits(Strict):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=50, ge=1)


class LevelPolicy(Strict):
    """What a risk level demands on top of its environment's rules."""

    quorum_at_least: int = Field(default=1, ge=1, le=10, description="approvals, at least")
    approver_role: Role | None = Field(
        default=None, description="a role at least one of the approvers must hold"
    )


class CriticalPolicy(LevelPolicy):
    approver_role: Literal["admin"] = Field(
        default="admin", description="critical risk needs an admin among the approvers, always"
    )


class ConfidenceRules(Strict):
    medium_below: float = Field(default=0.8, ge=0, le=1, description="rates medium below this")
    high_below: float = Field(default=0.5, ge=0, le=1, description="rates high below this")

    @model_validator(mode="after")
    def _ordered(self) -> ConfidenceRules:
        if self.high_below > self.medium_below:
            raise ValueError("high_below must not be above medium_below")
        return self


class RiskRules(Strict):
    """The thresholds of approval_engine.risk; its module docstring says what each factor rates."""

    confidence: ConfidenceRules = Field(default_factory=ConfidenceRules)
    large_cut: float = Field(
        default=0.5, gt=0, le=1, description="a capacity cut of this fraction or more rates higher"
    )
    many_targets: int = Field(
        default=3, ge=2, description="a change touching this many resources rates medium"
    )


class RiskPolicy(Strict):
    """Per risk level, what approving demands; a level also demands what the lower ones do."""

    low: LevelPolicy = Field(default_factory=LevelPolicy)
    medium: LevelPolicy = Field(default_factory=LevelPolicy)
    high: LevelPolicy = Field(default_factory=LevelPolicy)
    critical: CriticalPolicy = Field(default_factory=CriticalPolicy)
    rules: RiskRules = Field(default_factory=RiskRules)


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MOMENT = r"(mon|tue|wed|thu|fri|sat|sun)\s+([01]?\d|2[0-3]):([0-5]\d)"
_WEEKLY = re.compile(rf"^\s*{_MOMENT}\s*-\s*{_MOMENT}\s*$", re.IGNORECASE)
MINUTES_PER_WEEK = 7 * 24 * 60


def weekly_window(text: str) -> tuple[int, int]:
    """`fri 16:00 - mon 08:00` as (start, end) minutes after Monday 00:00 UTC."""
    match = _WEEKLY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a weekly window like 'fri 16:00 - mon 08:00' (UTC)")
    day1, hour1, minute1, day2, hour2, minute2 = match.groups()
    start = _DAYS.index(day1.lower()) * 1440 + int(hour1) * 60 + int(minute1)
    end = _DAYS.index(day2.lower()) * 1440 + int(hour2) * 60 + int(minute2)
    if start == end:
        raise ValueError(f"{text!r} starts where it ends; a freeze needs some length")
    return start, end


def as_utc(value: datetime) -> datetime:
    """A datetime in UTC; one written without an offset is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UTCDatetime = Annotated[datetime, AfterValidator(as_utc)]


class Freeze(Strict):
    """A change freeze: an absolute range (`start`, `end`), or a `weekly` window, both UTC.

    The window holds from its start (included) to its end (excluded). A weekly window may
    wrap the week's end: `fri 16:00 - mon 08:00`.
    """

    name: str = Field(min_length=1)
    envs: list[str] = Field(default_factory=list, description="environments; empty means all")
    start: UTCDatetime | None = Field(default=None, description="ISO 8601; no offset means UTC")
    end: UTCDatetime | None = Field(default=None, description="ISO 8601; no offset means UTC")
    weekly: str | None = Field(default=None, description="`fri 16:00 - mon 08:00`, in UTC")

    @model_validator(mode="after")
    def _one_window(self) -> Freeze:
        if self.weekly is not None:
            if self.start is not None or self.end is not None:
                raise ValueError("a freeze has either `weekly`, or `start` and `end`, not both")
            weekly_window(self.weekly)
            return self
        if self.start is None or self.end is None:
            raise ValueError("a freeze needs `start` and `end`, or `weekly`")
        if self.end <= self.start:
            raise ValueError("`end` must be after `start`")
        return self

    def covers(self, env: str) -> bool:
        return not self.envs or env in self.envs


class RollbackPolicy(Strict):
    """What a revert (opened by opsgate after a degraded apply, or by /rollback) needs."""

    fast_track: bool = Field(
        default=False,
        description="reverts need `quorum` approvals, not their environment's and risk's",
    )
    quorum: int | None = Field(
        default=None, ge=1, le=10, description="with fast_track: approvals a revert needs (1)"
    )

    @model_validator(mode="after")
    def _quorum_needs_fast_track(self) -> RollbackPolicy:
        if self.quorum is not None and not self.fast_track:
            raise ValueError("quorum applies only with fast_track: true")
        return self


class PolicyConfig(Strict):
    environments: dict[str, EnvironmentPolicy] = Field(min_length=1)
    proposal_ttl: Duration = Field(default=timedelta(hours=24))
    sync_timeout: Duration = Field(default=timedelta(minutes=10))
    verify_window: Duration = Field(
        default=timedelta(minutes=15),
        description="SLOs are compared over this long after an apply and as long before it",
    )
    rollback: RollbackPolicy = Field(default_factory=RollbackPolicy)
    default_limits: ServiceLimits = Field(default_factory=ServiceLimits)
    limits: dict[str, ServiceLimits] = Field(default_factory=dict)
    propose_role: Role = "operator"
    approve_role: Role = "approver"
    risk: RiskPolicy = Field(default_factory=RiskPolicy)
    freezes: list[Freeze] = Field(default_factory=list)

    @model_validator(mode="after")
    def _freezes_known(self) -> PolicyConfig:
        names: set[str] = set()
        for freeze in self.freezes:
            if freeze.name in names:
                raise ValueError(f"freezes: two freezes are named {freeze.name!r}")
            names.add(freeze.name)
            unknown = sorted(set(freeze.envs) - set(self.environments))
            if unknown:
                raise ValueError(
                    f"freezes: {freeze.name!r} names environment {unknown[0]!r}, "
                    f"which `environments` does not have"
                )
        return self

    def limits_for(self, service: str) -> ServiceLimits:
        return self.limits.get(service, self.default_limits)


# --- users.yaml ---------------------------------------------------------------------------


class Person(Strict):
    roles: list[Role] = Field(min_length=1)
    github: str | None = None
    identities: list[str] = Field(
        default_factory=list,
        description="platform identities: slack:U…, telegram:<id>, console:name",
    )


class UsersConfig(Strict):
    unknown: Literal["viewer", "refuse"] = Field(
        default="refuse", description="what an identity that no person claims may do"
    )
    people: dict[str, Person] = Field(min_length=1)

    @model_validator(mode="after")
    def _identities_unique(self) -> UsersConfig:
        seen: dict[str, str] = {}
        for name, person in self.people.items():
            for identity in person.identities:
                if identity in seen:
                    raise ValueError(
                        f"identity {identity} is claimed by {seen[identity]} and {name}"
                    )
                seen[identity] = name
        return self


# --- loading ------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file (merge keys and anchors allowed) or raise ConfigError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError([f"{path}: file not found"]) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{path}: cannot read: {e}"]) from e
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as e:
        raise ConfigError([f"{path}: not valid YAML: {e}".replace("\n", " ")]) from e


def validation_problems(path: Path, error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        problems.append(f"{path}: {key}: {item['msg']}")
    return problems


def load_model(path: Path, model: type[M], *, missing_ok: bool = False) -> M:
    """Load one config file into its model; every problem names file, key and reason."""
    data = {} if missing_ok and not path.exists() else read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: (top level): expected a mapping, got {type(data).__name__}"])
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_problems(path, e)) from e
