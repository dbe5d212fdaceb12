"""The Agent contract: what an analyzer gets (a read-only context) and returns (Findings)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from agents.graphs import Graph
from agents.sources.base import CostSource, MetricsSource
from approval_engine.model import ChangeRequest, Scalar

__all__ = [
    "Agent",
    "AgentContext",
    "AgentMemory",
    "AgentSettings",
    "Finding",
    "KnobReader",
    "ProposingAgent",
    "Severity",
    "TargetView",
]

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class AgentSettings(BaseModel):
    """Base of every agent's typed settings (the `settings:` of config/agents.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Finding:
    """What one agent run observed; `change` is the wish it makes, if any.

    `key` names the thing observed ("burst:checkout/prod"), so a later run's finding about the
    same thing replaces this one. `score` ranks opportunities in /analysis (higher first).
    """

    agent: str
    key: str
    severity: Severity
    title: str
    detail: str = ""
    service: str | None = None
    env: str | None = None
    evidence: tuple[str, ...] = ()
    score: float = 0.0
    change: ChangeRequest | None = None
    graph: Graph | None = field(default=None, compare=False)


class KnobReader(Protocol):
    """The knobs as the GitOps base branch holds them now; reading only."""

    def current_values(self, service: str, env: str) -> dict[str, Scalar]: ...


class TargetView(Protocol):
    """Which services and environments exist (config/targets.yaml), reading only."""

    def services(self) -> list[str]: ...

    def environments(self, service: str) -> list[str]: ...

    def has_knob(self, service: str, knob: str) -> bool: ...

    def kind(self, service: str) -> str:
        """ "workload" (pods with replicas) or "database"."""
        ...


class AgentMemory(Protocol):
    """A small persistent JSON memory per agent: what it already reported, for example."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...

    def keys(self, prefix: str = "") -> list[str]: ...

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class AgentContext:
    """Everything a run may look at. Nothing in it can change the world."""

    now: datetime
    metrics: MetricsSource
    targets: TargetView
    knobs: KnobReader
    memory: AgentMemory
    cost: CostSource | None = None
    workloads: tuple[str, ...] = ()
    extras: Mapping[str, Any] = field(default_factory=dict)


S = TypeVar("S", bound=AgentSettings)


class Agent(Generic[S]):
    """Subclass, register with `@registry.agent(...)`, and implement `analyze`.

    `optimize` returns findings that carry ChangeRequests; agents that never propose keep
    the default, which analyzes only.
    """

    name: ClassVar[str] = ""
    proposes: ClassVar[bool] = False

    def __init__(self, settings: S) -> None:
        self.settings = settings

    def analyze(self, ctx: AgentContext) -> list[Finding]:
        raise NotImplementedError

    def optimize(self, ctx: AgentContext) -> list[Finding]:
        return self.analyze(ctx)


class ProposingAgent(Agent[S]):
    """An agent whose analysis and proposals are one pass: implement `run`."""

    proposes = True

    def analyze(self, ctx: AgentContext) -> list[Finding]:
        return self.run(ctx, propose=False)

    def optimize(self, ctx: AgentContext) -> list[Finding]:
        return self.run(ctx, propose=True)

    def run(self, ctx: AgentContext, *, propose: bool) -> list[Finding]:
        """The findings; with `propose`, those that want a change carry a ChangeRequest."""
        raise NotImplementedError
