"""Short-horizon forecasts of seasonal demand series (hourly traffic) for the BurstPredictor.

One method for every series: a few simple seasonal forecasters (daily naive with drift,
weekly profiles, daily naive) are back-tested on the most recent stretches of the
history and blended with weights 1/MAE². Smooth trending series end up on the drift
method, series with a weekday/weekend shape on the weekly profiles, without any
per-series configuration. The upper band is a quantile of the blend's back-test errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["Forecast", "forecast"]

FloatArray = npt.NDArray[np.float64]
# A candidate maps (filled history, horizon, season) to a point forecast.
Method = Callable[[FloatArray, int, int], FloatArray]

WEEK_CYCLES = 7  # season cycles per week: daily season, weekly shape


@dataclass(frozen=True)
class Forecast:
    """Point forecast for the next `horizon` steps and a one-sided upper band.

    `weights` says how much each candidate method contributed; an empty mapping means
    the history was too short to back-test, and the last season (or, shorter still, the
    mean) was repeated.
    """

    point: FloatArray
    upper: FloatArray
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return len(self.point)


def forecast(
    history: npt.ArrayLike,
    horizon: int,
    *,
    season: int = 24,
    backtests: int = 7,
    band_quantile: float = 0.9,
    drift_cycles: int = 14,
    profile_weeks: int = 3,
) -> Forecast:
    """Forecast `horizon` steps after the end of `history` (NaN marks a missing point).

    `season` is the number of steps per day; a week is seven seasons. `backtests` is the
    number of recent forecast origins (one season apart) used to weigh the methods; the
    default seven span a week, so a weekend always falls in some back-test window.
    `band_quantile` sets the upper band from the blend's back-test errors.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    if season < 1:
        raise ValueError(f"season must be at least 1, got {season}")
    raw = np.asarray(history, dtype=np.float64).ravel()
    finite = np.isfinite(raw)
    if not finite.any():
        raise ValueError("history holds no finite value to forecast from")
    raw = raw[int(np.argmax(finite)) :]  # leading gaps carry no information
    observed = np.isfinite(raw)
    filled = fill_gaps(raw, season=season)
    methods = _methods(drift_cycles=drift_cycles, profile_weeks=profile_weeks)
    usable = {
        name: m for name, m in methods.items() if len(filled) - horizon >= _needs(name, season)
    }
    if not usable:
        return _short_history(filled, horizon, season, band_quantile)
    origins = [horizon + k * season for k in range(backtests)]
    weights, errors = _backtest(filled, observed, usable, origins, horizon, season)
    point = sum(
        (w * usable[name](filled, horizon, season) for name, w in weights.items()),
        start=np.zeros(horizon),
    )
    band = float(np.quantile(errors, band_quantile)) if errors.size else 0.0
    return _finish(point, point + max(band, 0.0), filled, weights=weights)


def fill_gaps(values: FloatArray, *, season: int) -> FloatArray:
    """Fill NaNs with the value one season earlier, else by linear interpolation."""
    out = values.copy()
    for i in np.flatnonzero(~np.isfinite(out)):
        if i >= season and np.isfinite(out[i - season]):
            out[i] = out[i - season]
    missing = ~np.isfinite(out)
    if missing.any():
        known = np.flatnonzero(~missing)
        out[missing] = np.interp(np.flatnonzero(missing), known, out[known])
    return out


def seasonal_naive(h: FloatArray, horizon: int, season: int) -> FloatArray:
    """Repeat the last season."""
    return np.resize(h[-season:], horizon).astype(np.float64)


def daily_drift(h: FloatArray, horizon: int, season: int, *, cycles: int) -> FloatArray:
    """Last season repeated, shifted by the mean change of the season mean per cycle."""
    k = min(cycles, len(h) // season - 1)
    recent, old = h[len(h) - season :], h[len(h) - (k + 1) * season : len(h) - k * season]
    drift = float(recent.mean() - old.mean()) / k
    ahead = np.arange(horizon) // season + 1
    return seasonal_naive(h, horizon, season) + ahead * drift


def weekly_profile(
    h: FloatArray, horizon: int, season: int, *, weeks: int, multiplicative: bool
) -> FloatArray:
    """The same hours of each of the last weeks, moved to today's level; their median.

    The level change since k weeks ago is the median, over the last seven days (fewer
    if the history is short), of the change of each day against the same weekday then,
    so one holiday in either week hardly moves it.
    """
    week = WEEK_CYCLES * season
    n_days = len(h) // season
    if n_days <= WEEK_CYCLES:
        raise ValueError(f"weekly profiles need a week and a day of history, got {len(h)} steps")
    days = h[len(h) - n_days * season :].reshape(n_days, season).mean(axis=1)
    if multiplicative and np.min(days) <= 0:
        multiplicative = False  # ratios need positive levels
    steps = np.arange(horizon) % week
    moved = []
    for k in range(1, min(weeks, (n_days - 1) // WEEK_CYCLES) + 1):
        span = min(WEEK_CYCLES, n_days - k * WEEK_CYCLES)
        recent = days[n_days - span :]
        then = days[n_days - k * WEEK_CYCLES - span : n_days - k * WEEK_CYCLES]
        block = h[len(h) - k * week + steps]
        if multiplicative:
            moved.append(block * float(np.median(recent / then)))
        else:
            moved.append(block + float(np.median(recent - then)))
    return np.asarray(np.median(np.stack(moved), axis=0), dtype=np.float64)


def _methods(*, drift_cycles: int, profile_weeks: int) -> dict[str, Method]:
    """The candidate methods, by name."""

    def drift(h: FloatArray, horizon: int, season: int) -> FloatArray:
        return daily_drift(h, horizon, season, cycles=drift_cycles)

    def weekly_add(h: FloatArray, horizon: int, season: int) -> FloatArray:
        return weekly_profile(h, horizon, season, weeks=profile_weeks, multiplicative=False)

    def weekly_mult(h: FloatArray, horizon: int, season: int) -> FloatArray:
        return weekly_profile(h, horizon, season, weeks=profile_weeks, multiplicative=True)

    return {
        "daily_drift": drift,
        "weekly_additive": weekly_add,
        "weekly_multiplicative": weekly_mult,
        "seasonal_naive": seasonal_naive,
    }


def _needs(name: str, season: int) -> int:
    """History length a method reads."""
    if name.startswith("weekly"):
        return (WEEK_CYCLES + 1) * season
    if name == "daily_drift":
        return 2 * season
    return season


def _backtest(
    h: FloatArray,
    observed: npt.NDArray[np.bool_],
    methods: dict[str, Method],
    origins: list[int],
    horizon: int,
    season: int,
) -> tuple[dict[str, float], FloatArray]:
    """Blend weights 1/MAE² from recent origins, and the blend's signed errors there."""
    per_method: dict[str, list[FloatArray]] = {name: [] for name in methods}
    actuals: list[FloatArray] = []
    for origin in origins:
        cut = len(h) - origin
        if any(cut < _needs(name, season) for name in methods):
            continue  # compare all methods on the same origins only
        window = slice(cut, cut + horizon)
        keep = observed[window]  # score against real observations, not filled gaps
        actuals.append(h[window][keep])
        for name, method in methods.items():
            per_method[name].append(method(h[:cut], horizon, season)[keep])
    actual = np.concatenate(actuals) if actuals else np.zeros(0)
    if not actual.size:
        return {name: 1.0 / len(methods) for name in methods}, actual
    preds = {name: np.concatenate(p) for name, p in per_method.items()}
    scale = max(float(np.mean(np.abs(actual))), 1e-12)
    inverse = {
        name: 1.0 / (float(np.mean(np.abs(actual - p))) ** 2 + (1e-9 * scale) ** 2)
        for name, p in preds.items()
    }
    total = sum(inverse.values())
    weights = {name: v / total for name, v in inverse.items()}
    blend = sum((w * preds[n] for n, w in weights.items()), start=np.zeros(len(actual)))
    return weights, actual - blend


def _short_history(h: FloatArray, horizon: int, season: int, band_quantile: float) -> Forecast:
    """Too little history to back-test: repeat the last season, or the level if shorter."""
    if len(h) > season:
        point = seasonal_naive(h, horizon, season)
        errors = np.abs(h[season:] - h[:-season])
    else:
        point = np.full(horizon, float(np.mean(h)))
        errors = np.abs(np.diff(h))
    band = float(np.quantile(errors, band_quantile)) if errors.size else 0.0
    return _finish(point, point + band, h)


def _finish(
    point: FloatArray, upper: FloatArray, h: FloatArray, *, weights: dict[str, float] | None = None
) -> Forecast:
    """Clip at zero for series that never went negative (counts, demand)."""
    if np.min(h) >= 0:
        point, upper = np.maximum(point, 0.0), np.maximum(upper, 0.0)
    if not math.isfinite(float(np.sum(point))):
        raise ValueError("forecast is not finite; the history holds values too large")
    return Forecast(point=point, upper=np.maximum(upper, point), weights=weights or {})
