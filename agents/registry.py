"""The explicit agent registry: `@registry.agent(name=…, every=…, timeout=…)` adds a class."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from agents.base import Agent, AgentSettings
from agents.errors import UnknownAgentError
from approval_engine.config import parse_duration

__all__ = ["BUILTIN_MODULES", "AgentSpec", "Registry", "registry"]

A = TypeVar("A", bound=type[Agent[Any]])

BUILTIN_MODULES = (
    "agents.burst_predictor",
    "agents.anomaly_detector",
    "agents.cost_watcher",
)


@dataclass(frozen=True)
class AgentSpec:
    """A registered agent: its class, its settings model and its default schedule."""

    name: str
    cls: type[Agent[Any]]
    settings: type[AgentSettings]
    every: timedelta | None
    cron: str | None
    timeout: timedelta
    summary: str

    @property
    def proposes(self) -> bool:
        return self.cls.proposes

    def build(self, settings: AgentSettings) -> Agent[Any]:
        return self.cls(settings)


def _duration(value: str | timedelta, what: str) -> timedelta:
    parsed = parse_duration(value)
    if not isinstance(parsed, timedelta) or parsed <= timedelta(0):
        raise ValueError(f"{what} must be a positive duration, got {value!r}")
    return parsed


class Registry:
    """Agents by name. Tests make their own; the product uses `registry` below."""

    def __init__(self) -> None:
        self._specs: dict[str, AgentSpec] = {}

    def agent(
        self,
        *,
        name: str,
        settings: type[AgentSettings],
        every: str | timedelta | None = None,
        cron: str | None = None,
        timeout: str | timedelta = "2m",
    ) -> Callable[[A], A]:
        if (every is None) == (cron is None):
            raise ValueError(f"agent {name}: give exactly one of every= or cron=")

        def register(cls: A) -> A:
            if name in self._specs:
                raise ValueError(f"agent {name} is registered twice")
            doc = (cls.__doc__ or "").strip().splitlines()
            cls.name = name
            self._specs[name] = AgentSpec(
                name=name,
                cls=cls,
                settings=settings,
                every=None if every is None else _duration(every, "every"),
                cron=cron,
                timeout=_duration(timeout, "timeout"),
                summary=doc[0] if doc else "",
            )
            return cls

        return register

    def get(self, name: str) -> AgentSpec:
        spec = self._specs.get(name)
        if spec is None:
            lowered = {n.lower(): n for n in self._specs}
            if name.lower() in lowered:
                return self._specs[lowered[name.lower()]]
            known = ", ".join(self._specs) or "none"
            raise UnknownAgentError(f"no agent named {name!r}; known agents: {known}")
        return spec

    def names(self) -> list[str]:
        return list(self._specs)

    def __iter__(self) -> Iterator[AgentSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


registry = Registry()


def load_builtin() -> Registry:
    """Import the shipped agents so they register themselves on `registry`."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return registry
