"""The engine's SignalMeter on the agents' MetricsSource: a signal's mean over a window."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import numpy as np

from agents.errors import SourceError
from agents.sources.base import MetricsSource

__all__ = ["MetricsMeter"]

log = logging.getLogger(__name__)


class MetricsMeter:
    """Implements approval_engine.slo.SignalMeter.

    A window with fewer than half of its samples present has too little data (None). A signal
    the source does not know for this target is no data either; a source that is down raises
    (SourceUnavailableError), so the verifier tries again later.
    """

    def __init__(
        self,
        source: MetricsSource,
        *,
        samples: int = 30,
        finest: timedelta = timedelta(seconds=15),
    ) -> None:
        self._source = source
        self._samples = samples
        self._finest = finest

    def measure(
        self, signal: str, service: str, env: str, *, start: datetime, end: datetime
    ) -> float | None:
        step = max((end - start) / self._samples, self._finest)
        try:
            series = self._source.series(signal, service, env, start=start, end=end, step=step)
        except SourceError as e:
            log.info("no %s for %s/%s: %s", signal, service, env, e)
            return None
        values = series.values[np.isfinite(series.values)]
        if len(values) == 0 or 2 * len(values) < len(series):
            return None
        return float(values.mean())
