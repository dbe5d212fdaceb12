"""The deployer protocol: what ArgoCD (or the demo's stand-in) does after a merge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
