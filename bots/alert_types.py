"""What an alert message is enriched with, and the seam between receiving and enriching."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["Enricher", "Enrichment", "NoEnrichment"]


@dataclass(frozen=True)
class Enrichment:
    """Shown with an alert group's message: a graph and a few lines (runbook, recent changes)."""

    graph_png: bytes | None = None
    lines: tuple[str, ...] = ()


class Enricher(Protocol):
    """Never raises: anything it cannot find (Prometheus down, no runbook) is left out."""

    def enrich(
        self,
        *,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        generator_url: str,
        starts_at: datetime,
    ) -> Enrichment: ...


class NoEnrichment:
    def enrich(
        self,
        *,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        generator_url: str,
        starts_at: datetime,
    ) -> Enrichment:
        return Enrichment()
