"""The read-only source protocols agents see: metric series and the cloud bill."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["CostRow", "CostSource", "MetricsSource", "Series", "grid_size"]

FloatArray = npt.NDArray[np.float64]


def grid_size(start: datetime, end: datetime, step: timedelta) -> int:
    """How many samples start, start + step, … fall before `end`."""
    return max(0, -(-(end - start) // step))


@dataclass(frozen=True)
class Series:
    """Samples on a regular grid: `values[i]` is the value at `start + i * step`.

    NaN marks a missing sample (a scrape gap, or no data yet), so every series of the same
    range and step lines up point for point.
    """

    signal: str
    service: str
    env: str
    start: datetime
    step: timedelta
    values: FloatArray

    def __len__(self) -> int:
        return len(self.values)

    @property
    def end(self) -> datetime:
        """The instant after the last sample's slot."""
        return self.start + self.step * len(self.values)

    def times(self) -> list[datetime]:
        return [self.start + self.step * i for i in range(len(self.values))]

    def observed(self) -> int:
        return int(np.isfinite(self.values).sum())


class MetricsSource(Protocol):
    """Named signals (`requests`, `cpu`, `latency_p95`, …) per service and environment."""

    @property
    def label(self) -> str: ...

    def signals(self) -> tuple[str, ...]: ...

    def series(
        self,
        signal: str,
        service: str,
        env: str,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series:
        """Samples at start, start + step, … before `end`; NaN where there is no sample.

        Raises SourceError for an unknown signal or a bad range, SourceUnavailableError when
        the backend cannot be reached or answers too slowly.
        """
        ...


@dataclass(frozen=True)
class CostRow:
    """One day's unblended cost of one group (an AWS service, or a cost-allocation tag value)."""

    day: date
    group: str
    amount: float
    unit: str = "USD"


class CostSource(Protocol):
    """Daily cost, grouped by AWS service or by the value of a cost-allocation tag."""

    @property
    def label(self) -> str: ...

    def daily_costs(self, *, start: date, end: date, group_by: str) -> list[CostRow]:
        """Rows for each day in [start, end). `group_by` is "service" or "tag:<key>".

        Raises SourceUnavailableError when the bill cannot be read right now.
        """
        ...
