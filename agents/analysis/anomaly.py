"""Streaming, causal anomaly scores in [0, 1] for one metric series (the AnomalyDetector agent).

Each row is scored from itself and earlier rows only, so a score never changes once given.
Two kinds of novelty are measured against a bounded memory of recent rows:

- value novelty: how far the new value lies from the nearest value seen before, relative
  to the spread of the memory (new highs, new lows, values in a gap never visited);
- shape novelty: how far the last few rows, as a short curve, lie from the nearest earlier
  curve, relative to how far curves usually lie from their nearest neighbour (a flat
  stretch in a periodic signal, spikes that come closer together).

The stronger of the two becomes the raw score. An alert is repeated only when a raw score
beats what came shortly before it (with that memory fading linearly), because one
incident should page once, not on every row it lasts.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

__all__ = ["AnomalyDetector", "AnomalyParams"]

FloatArray = npt.NDArray[np.float64]
Timestamp = datetime | float | str


@dataclass(frozen=True, kw_only=True)
class AnomalyParams:
    """Settings of the detector; the defaults are the one set used on every series.

    Lengths count rows, so they assume a regular sampling interval.
    """

    memory: int = 3000
    """Rows remembered for comparison (about ten days of 5-minute samples)."""
    warmup: int = 150
    """Rows scored 0 while the memory is too small to judge novelty."""
    value_scale: float = 0.2
    """Distance to the nearest remembered value, as a fraction of the memory's range,
    that scores 1 − 1/e."""
    shape_length: int = 4
    """Rows in the short curve compared for shape novelty."""
    shape_scale: float = 10.0
    """Nearest-curve distance, in units of its usual value, that scores 1 − 1/e."""
    shape_floor: float = 0.05
    """Fraction of the memory's range added to the usual curve distance, so that a
    noiseless signal does not turn every rounding difference into an alert."""
    shape_weight: float = 0.5
    """Shape novelty counts this much against value novelty."""
    baseline_rows: int = 2000
    """Rows over which the usual nearest-curve distance is averaged."""
    refractory: int = 200
    """Rows during which an earlier raw score (fading linearly) must be beaten to alert."""

    def __post_init__(self) -> None:
        if self.shape_length < 2:
            raise ValueError("shape_length must be at least 2")
        if self.memory < 4 * self.shape_length:
            raise ValueError("memory must hold at least four shapes")
        for name in ("value_scale", "shape_scale", "shape_floor", "shape_weight"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.shape_weight > 1:
            raise ValueError("shape_weight above 1 would push scores past 1")
        if min(self.warmup, self.refractory) < 0 or self.baseline_rows < 1:
            raise ValueError("warmup and refractory must be ≥ 0, baseline_rows ≥ 1")


class AnomalyDetector:
    """Score one series row by row: `update(timestamp, value)` returns a score in [0, 1].

    NaN values (scrape gaps) score 0 and are not remembered. Timestamps must not go
    backwards; they are otherwise unused, since rows are assumed evenly spaced.
    """

    def __init__(self, params: AnomalyParams | None = None) -> None:
        self.params = params or AnomalyParams()
        p = self.params
        # Twice the memory, so appending stays O(1) and the memory is one contiguous slice.
        self._buffer = np.zeros(2 * p.memory)
        self._end = 0
        self._rows = 0
        self._last_time = -math.inf
        self._shape_distances: deque[float] = deque(maxlen=p.baseline_rows)
        self._shape_sum = 0.0
        # Ring of recent raw scores: slot i holds the row whose number is i modulo its size.
        span = max(p.refractory, 1)
        self._recent_raw = np.zeros(span)
        # Fading weights of the ring, read as a slice that starts at the current slot.
        self._fade = (np.arange(2 * span) % span) / span

    def update(self, timestamp: Timestamp, value: float) -> float:
        """Remember the row and return its anomaly score."""
        self._check_order(timestamp)
        if not math.isfinite(value):
            return 0.0
        self._remember(float(value))
        h = self._memory()
        spread = float(np.ptp(h)) + 1e-9 + 1e-6 * abs(float(h[-1]))
        shape_part = self._shape_score(h, spread)
        raw = 0.0
        if self._rows > self.params.warmup:
            raw = max(self._value_score(h, spread), self.params.shape_weight * shape_part)
        return self._after_refractory(raw)

    def _check_order(self, timestamp: Timestamp) -> None:
        seconds = _seconds(timestamp)
        if seconds < self._last_time:
            raise ValueError(f"timestamp {timestamp!r} is earlier than the previous row")
        self._last_time = seconds

    def _remember(self, value: float) -> None:
        memory = self.params.memory
        if self._end == len(self._buffer):
            self._buffer[:memory] = self._buffer[memory:]
            self._end = memory
        self._buffer[self._end] = value
        self._end += 1
        self._rows += 1

    def _memory(self) -> FloatArray:
        return self._buffer[max(0, self._end - self.params.memory) : self._end]

    def _value_score(self, h: FloatArray, spread: float) -> float:
        return 1.0 - math.exp(-_nearest_value(h) / (self.params.value_scale * spread))

    def _shape_score(self, h: FloatArray, spread: float) -> float:
        """Score the newest curve against the usual nearest-curve distance, then learn it.

        Runs during warm-up too, so the usual distance is known when scoring starts.
        """
        p = self.params
        distance = _nearest_shape(h, p.shape_length)
        if distance is None:
            return 0.0
        seen = self._shape_distances
        usual = self._shape_sum / len(seen) if seen else 0.0
        if len(seen) == seen.maxlen:
            self._shape_sum -= seen[0]
        seen.append(distance)
        self._shape_sum += distance
        return 1.0 - math.exp(-distance / (p.shape_scale * (usual + p.shape_floor * spread)))

    def _after_refractory(self, raw: float) -> float:
        """Pass the raw score only if it beats the faded raw scores of recent rows."""
        ring = self._recent_raw
        span = len(ring)
        slot = self._rows % span
        # Slot `slot` holds the row `span` rows ago (weight 0); the one before it, the
        # previous row (weight 1 − 1/span).
        fade = self._fade[span - slot : 2 * span - slot]
        beaten = raw > float(np.max(ring * fade))
        ring[slot] = raw
        return raw if beaten else 0.0


def _seconds(timestamp: Timestamp) -> float:
    """Timestamps as epoch seconds, for the ordering check."""
    if isinstance(timestamp, str):
        timestamp = datetime.fromisoformat(timestamp)
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:  # wall-clock times: compare them as written
            timestamp = timestamp.replace(tzinfo=UTC)
        return timestamp.timestamp()
    return float(timestamp)


def _nearest_value(h: FloatArray) -> float:
    """Distance from the newest value to the nearest earlier one (0 for the first)."""
    if len(h) < 2:
        return 0.0
    return float(np.min(np.abs(h[:-1] - h[-1])))


def _nearest_shape(h: FloatArray, length: int) -> float | None:
    """RMS distance from the newest `length` rows to the nearest earlier, non-overlapping curve."""
    if len(h) < 3 * length:
        return None
    query = h[-length:]
    starts = len(h) - 2 * length + 1  # curves that end before the newest one begins
    total = np.zeros(starts)
    step = np.empty(starts)
    # One pass per offset instead of a (starts × length) array: far fewer allocations.
    for k in range(length):
        np.subtract(h[k : k + starts], query[k], out=step)
        np.multiply(step, step, out=step)
        total += step
    return math.sqrt(float(np.min(total)) / length)
