"""The demand forecaster on synthetic hourly traffic: seasonality, trend, holidays, gaps."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from agents.analysis import Forecast, forecast

FloatArray = npt.NDArray[np.float64]

DAY = 24
WEEK = 7 * DAY


def traffic(days: int, *, seed: int = 0) -> FloatArray:
    """Hourly demand: daily and weekday/weekend shapes, a slow trend, noise."""
    t = np.arange(days * DAY)
    rng = np.random.default_rng(seed)
    daily = 1.0 + 0.6 * np.sin(2 * np.pi * (t % DAY - 8) / DAY)
    weekend = np.where((t // DAY) % 7 >= 5, 0.5, 1.0)
    trend = 1000.0 + 2.0 * t / DAY
    return trend * daily * weekend * (1.0 + rng.normal(0.0, 0.03, len(t)))


def mae(a: FloatArray, b: FloatArray) -> float:
    return float(np.mean(np.abs(a - b)))


def test_beats_seasonal_naive_on_weekly_traffic() -> None:
    y = traffic(36)
    history, actual = y[:-48], y[-48:]
    result = forecast(history, 48)
    naive = np.resize(history[-DAY:], 48)
    assert result.horizon == 48
    assert mae(actual, result.point) < 0.5 * mae(actual, naive)


def test_under_three_weeks_of_history_see_the_weekend_coming() -> None:
    y = traffic(21, seed=4)
    history, actual = y[: 19 * DAY], y[19 * DAY :]  # days 19 and 20 are a weekend
    f = forecast(history, 2 * DAY).point
    assert mae(actual, f) < 0.15 * float(np.mean(actual))
    assert mae(actual, f) < 0.3 * mae(actual, np.resize(history[-DAY:], 2 * DAY))


def test_holiday_in_the_history_does_not_pull_the_forecast_down() -> None:
    y = traffic(36, seed=1)
    history, actual = y[:-DAY].copy(), y[-DAY:]
    history[-DAY:] *= 0.4  # yesterday was a holiday (a weekday made quiet)
    f = forecast(history, DAY).point
    assert mae(actual, f) < mae(actual, history[-DAY:])
    assert mae(actual, f) < 0.25 * float(np.mean(actual))


def test_missing_points_are_tolerated() -> None:
    y = traffic(30, seed=2)
    history = y[:-DAY].copy()
    rng = np.random.default_rng(0)
    history[rng.choice(len(history) - 1, 40, replace=False)] = math.nan
    history[-3:] = math.nan  # the newest scrapes are missing too
    result = forecast(history, DAY)
    assert np.isfinite(result.point).all()
    assert mae(y[-DAY:], result.point) < 0.15 * float(np.mean(y[-DAY:]))


def test_upper_band_lies_above_the_point_forecast() -> None:
    result = forecast(traffic(30, seed=3), 48)
    assert (result.upper >= result.point).all()
    assert (result.upper > result.point).any()
    assert math.isclose(sum(result.weights.values()), 1.0)


def test_flat_series_gives_a_flat_forecast_without_band() -> None:
    result = forecast(np.full(500, 7.0), 24)
    np.testing.assert_allclose(result.point, 7.0)
    np.testing.assert_allclose(result.upper, 7.0)


@pytest.mark.parametrize("length", [1, 5, 30, 100])
def test_short_histories_fall_back(length: int) -> None:
    y = traffic(5)[:length]
    result = forecast(y, 48)
    assert isinstance(result, Forecast)
    assert result.point.shape == (48,)
    assert np.isfinite(result.point).all()
    assert (result.upper >= result.point).all()


def test_non_negative_series_are_not_forecast_below_zero() -> None:
    t = np.arange(20 * DAY)
    y = np.maximum(0.0, 50.0 * np.sin(2 * np.pi * t / DAY)) - 0.01 * t / DAY
    y = np.maximum(y, 0.0)
    assert (forecast(y, 48).point >= 0.0).all()


def test_rejects_unusable_input() -> None:
    with pytest.raises(ValueError, match="finite"):
        forecast(np.full(100, math.nan), 24)
    with pytest.raises(ValueError, match="horizon"):
        forecast(np.ones(100), 0)
