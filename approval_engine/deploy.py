"""The deployer protocol: what ArgoCD (or the demo's stand-in) does after a merge."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

HEALTHY = "Healthy"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
MISSING = "Missing"


@dataclass(frozen=True)
class AppStatus:
    app: str
    sync: str  # Synced | OutOfSync | Unknown
    revision: str | None
    health: str  # Healthy | Progressing | Degraded | Missing | Unknown
    message: str = ""


class Deployer(Protocol):
    def sync(self, app: str, *, revision: str) -> None:
        """Ask for the app to be brought to `revision`; returns before it is done."""
        ...

    def status(self, app: str) -> AppStatus: ...


@runtime_checkable
class StatusBoard(Protocol):
    """A deployer that reads many apps' status in one call (ArgoCD lists applications)."""

    label: str

    def statuses(self, apps: Iterable[str]) -> dict[str, AppStatus]: ...
