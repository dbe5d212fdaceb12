"""config/agents.yaml: which agents run, when, and with what settings (validated per agent)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agents.base import AgentSettings
from agents.errors import AgentConfigError
from agents.registry import AgentSpec, Registry
from approval_engine.config import Duration, format_duration

__all__ = ["AgentDefaults", "AgentEntry", "AgentsConfig", "ConfiguredAgent", "resolve"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentDefaults(_Strict):
    jitter: Duration = Field(
        default=timedelta(seconds=30), description="random delay added to each scheduled run"
    )
    retries: int = Field(default=2, ge=0, le=10, description="retries after a temporary error")
    retry_delay: Duration = Field(
        default=timedelta(seconds=30), description="wait before a retry when none is advised"
    )
    cooldown: Duration = Field(
        default=timedelta(hours=6),
        description="an agent does not repeat the same change request within this time",
    )
    daily_budget: int = Field(
        default=5, ge=0, le=100, description="change requests per agent per UTC day"
    )
    first_run: Duration = Field(
        default=timedelta(seconds=20), description="delay of a new job's first run after start"
    )


class AgentEntry(_Strict):
    enabled: bool = True
    every: Duration | None = None
    cron: str | None = Field(default=None, description="crontab line, UTC: '*/15 * * * *'")
    timeout: Duration | None = None
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                CronTrigger.from_crontab(value, timezone="UTC")
            except ValueError as e:
                raise ValueError(f"not a crontab line ({e})") from e
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> AgentEntry:
        if self.every is not None and self.cron is not None:
            raise ValueError("give `every` or `cron`, not both")
        return self


class AgentsConfig(_Strict):
    defaults: AgentDefaults = Field(default_factory=AgentDefaults)
    agents: dict[str, AgentEntry] = Field(default_factory=dict)


@dataclass(frozen=True)
class ConfiguredAgent:
    """A registered agent with its schedule and settings from agents.yaml resolved."""

    spec: AgentSpec
    enabled: bool
    every: timedelta | None
    cron: str | None
    timeout: timedelta
    settings: AgentSettings

    @property
    def name(self) -> str:
        return self.spec.name

    def schedule(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron}"
        assert self.every is not None
        return f"every {format_duration(self.every)}"


def resolve(config: AgentsConfig, registry: Registry, *, path: Path) -> list[ConfiguredAgent]:
    """Every registered agent, enabled when agents.yaml says so; each problem names its key."""
    problems: list[str] = []
    for name in config.agents:
        if name not in registry.names():
            problems.append(
                f"{path}: agents.{name}: no such agent (known: {', '.join(registry.names())})"
            )
    resolved: list[ConfiguredAgent] = []
    for spec in sorted(registry, key=lambda s: s.name):
        entry = config.agents.get(spec.name)
        try:
            settings = spec.settings.model_validate(entry.settings if entry else {})
        except ValidationError as e:
            for item in e.errors():
                key = ".".join(str(part) for part in item["loc"])
                where = f"agents.{spec.name}.settings" + (f".{key}" if key else "")
                problems.append(f"{path}: {where}: {item['msg']}")
            continue
        every, cron = spec.every, spec.cron
        if entry is not None and (entry.every is not None or entry.cron is not None):
            every, cron = entry.every, entry.cron
        resolved.append(
            ConfiguredAgent(
                spec=spec,
                enabled=entry is not None and entry.enabled,
                every=every,
                cron=cron,
                timeout=(entry.timeout if entry and entry.timeout else spec.timeout),
                settings=settings,
            )
        )
    if problems:
        raise AgentConfigError(problems)
    return resolved
