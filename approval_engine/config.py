"""Config models the engine owns (targets, policy, users) and the YAML loader every part uses."""

from __future__ import annotations

import re
from datetime import timedelta
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


# --- policy.yaml --------------------------------------------------------------------------


class EnvironmentPolicy(Strict):
    quorum: int = Field(default=1, ge=1, le=10, description="approvals needed to merge")
    approvers: list[str] = Field(
        default_factory=list, description="people allowed to approve here; empty means anyone"
    )


class ServiceLimits(Strict):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=50, ge=1)


class PolicyConfig(Strict):
    environments: dict[str, EnvironmentPolicy] = Field(min_length=1)
    proposal_ttl: Duration = Field(default=timedelta(hours=24))
    sync_timeout: Duration = Field(default=timedelta(minutes=10))
    default_limits: ServiceLimits = Field(default_factory=ServiceLimits)
    limits: dict[str, ServiceLimits] = Field(default_factory=dict)
    propose_role: Role = "operator"
    approve_role: Role = "approver"

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
