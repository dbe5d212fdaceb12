"""The streaming anomaly detector: causal, quiet on clean signals, loud on shifts and spikes."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pytest

from agents.analysis import AnomalyDetector, AnomalyParams

FloatArray = npt.NDArray[np.float64]

N = 2000
ONSET = 1500
DAY = 288  # 5-minute rows per day
# Comfortably above the threshold the NAB sweep picks (about 0.12 to 0.24).
ALERT = 0.5


def scores(values: FloatArray, params: AnomalyParams | None = None) -> FloatArray:
    detector = AnomalyDetector(params)
    return np.array([detector.update(float(i), float(v)) for i, v in enumerate(values)])


def daily(noise: float = 0.0, *, seed: int = 0) -> FloatArray:
    t = np.arange(N)
    rng = np.random.default_rng(seed)
    return 10.0 + 5.0 * np.sin(2 * np.pi * t / DAY) + rng.normal(0.0, noise, N)


def test_score_of_a_row_does_not_depend_on_later_rows() -> None:
    x = daily(0.3)
    x[ONSET:] += 8.0
    full = scores(x)
    for cut in (400, ONSET, ONSET + 7):
        assert np.array_equal(scores(x[:cut]), full[:cut])


def test_scores_stay_in_the_unit_interval() -> None:
    rng = np.random.default_rng(3)
    s = scores(rng.standard_cauchy(N))
    assert s.min() >= 0.0
    assert s.max() <= 1.0


def test_level_shift_alerts_at_its_onset() -> None:
    x = daily(0.3)
    x[ONSET:] += 8.0
    s = scores(x)
    assert s[ONSET : ONSET + 5].max() >= ALERT
    assert s[:ONSET].max() < ALERT


def test_spike_alerts() -> None:
    x = daily(0.3)
    x[ONSET] = 30.0
    s = scores(x)
    assert s[ONSET] >= ALERT
    assert np.delete(s, ONSET).max() < ALERT


def test_one_incident_alerts_once() -> None:
    x = daily(0.3)
    x[ONSET:] += 8.0
    s = scores(x)
    assert np.count_nonzero(s[ONSET:] >= ALERT) == 1


@pytest.mark.parametrize(
    "values",
    [np.full(N, 45.0), daily(), np.tile([20.0, 20.0, 80.0, 80.0], N // 4)],
    ids=["flat", "sine", "square"],
)
def test_clean_signals_never_alert(values: FloatArray) -> None:
    s = scores(values)
    assert s.max() < ALERT
    # Once a whole period has been seen, nothing in it is new any more.
    assert s[DAY:].max() < 0.01


def test_nan_rows_score_zero_and_are_skipped() -> None:
    x = daily(0.3)
    with_gaps = x.copy()
    with_gaps[[700, 701, 1200]] = math.nan
    s = scores(with_gaps)
    assert s[[700, 701, 1200]].tolist() == [0.0, 0.0, 0.0]
    assert s.max() < ALERT


def test_scores_from_the_first_row_without_warmup() -> None:
    s = scores(np.array([1.0, 1.0, 5.0, 1.0]), AnomalyParams(warmup=0))
    assert s[0] == 0.0
    assert s[2] > ALERT


def test_warmup_rows_score_zero() -> None:
    rng = np.random.default_rng(5)
    s = scores(rng.normal(size=300) * np.arange(300), AnomalyParams(warmup=120))
    assert not s[:120].any()


def test_accepts_datetime_and_text_timestamps_in_order() -> None:
    detector = AnomalyDetector()
    start = datetime(2024, 3, 1)
    for i in range(10):
        detector.update(start + timedelta(minutes=5 * i), float(i))
    detector.update("2024-03-01 01:00:00", 1.0)
    with pytest.raises(ValueError, match="earlier"):
        detector.update("2024-02-29 23:00:00", 1.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"shape_length": 1},
        {"memory": 10},
        {"value_scale": 0.0},
        {"shape_weight": 1.5},
        {"refractory": -1},
        {"baseline_rows": 0},
    ],
)
def test_rejects_invalid_params(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AnomalyParams(**bad)  # type: ignore[arg-type]
