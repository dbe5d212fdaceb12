"""Run the BurstPredictor forecaster over M4 Hourly and print MASE / sMAPE against seasonal naive.

Usage (from the repository root):
    python benchmarks/m4.py --train m4-hourly-train.csv --out forecasts.csv [--holdout]

Without --holdout it forecasts the 48 hours after each series and writes `id,F1,…,F48`.
With --holdout it withholds the last 48 values of each series, forecasts them (and writes
those forecasts), and prints MASE (seasonal period 24, scaled on the in-sample part),
sMAPE and the upper band's coverage, next to the seasonal-naive baseline on the same
hold-out, and the wall time.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
HORIZON = 48
PERIOD = 24


@dataclass(frozen=True)
class Scores:
    """Accuracy averaged over series."""

    mase: float
    smape: float


def read_series(path: Path) -> list[tuple[str, FloatArray]]:
    """M4 layout: a header row, then `id,v1,v2,…` with empty cells after the last value."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        next(rows)
        return [(r[0], np.array([float(v) for v in r[1:] if v.strip()])) for r in rows if r]


def mase(actual: FloatArray, predicted: FloatArray, insample: FloatArray) -> float:
    """Mean absolute error over the seasonal-naive in-sample error (period 24)."""
    scale = float(np.mean(np.abs(insample[PERIOD:] - insample[:-PERIOD])))
    return float(np.mean(np.abs(actual - predicted))) / scale


def smape(actual: FloatArray, predicted: FloatArray) -> float:
    """Symmetric MAPE in percent, as in M4."""
    return float(np.mean(200.0 * np.abs(actual - predicted) / (np.abs(actual) + np.abs(predicted))))


def seasonal_naive(history: FloatArray, horizon: int) -> FloatArray:
    """The baseline: repeat the last day."""
    return np.resize(history[-PERIOD:], horizon).astype(np.float64)


def score(
    series: Sequence[tuple[str, FloatArray]],
    predictions: Sequence[FloatArray],
    horizon: int,
) -> Scores:
    """Average MASE and sMAPE of hold-out predictions."""
    m, s = [], []
    for (_, values), predicted in zip(series, predictions, strict=True):
        insample, actual = values[:-horizon], values[-horizon:]
        m.append(mase(actual, predicted, insample))
        s.append(smape(actual, predicted))
    return Scores(mase=float(np.mean(m)), smape=float(np.mean(s)))


def write_forecasts(path: Path, ids: Sequence[str], rows: Sequence[FloatArray]) -> None:
    """`id,F1,…,Fh` like M4's submission files."""
    horizon = len(rows[0]) if rows else HORIZON
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["id", *(f"F{i}" for i in range(1, horizon + 1))])
        for sid, row in zip(ids, rows, strict=True):
            out.writerow([sid, *(f"{v:.6g}" for v in row)])


def _load_forecaster() -> Callable[[FloatArray, int], tuple[FloatArray, FloatArray]]:
    """The agent's forecaster as (point, upper); puts the repository root on the path."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from agents.analysis import forecast

    def run(history: FloatArray, horizon: int) -> tuple[FloatArray, FloatArray]:
        result = forecast(history, horizon, season=PERIOD)
        return result.point, result.upper

    return run


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--train", type=Path, required=True, help="M4 Hourly train CSV")
    parser.add_argument("--out", type=Path, required=True, help="where to write id,F1,…")
    parser.add_argument("--holdout", action="store_true", help="score the last 48 values")
    parser.add_argument("--horizon", type=int, default=HORIZON, help="steps to forecast")
    args = parser.parse_args(argv)
    run = _load_forecaster()
    wall = time.perf_counter()
    series = read_series(args.train)
    h = args.horizon
    started = time.perf_counter()
    histories = [v[:-h] if args.holdout else v for _, v in series]
    results = [run(x, h) for x in histories]
    elapsed = time.perf_counter() - started
    forecasts = [p for p, _ in results]
    write_forecasts(args.out, [sid for sid, _ in series], forecasts)
    print(f"{len(series)} series, horizon {h}: forecasts in {elapsed:.2f} s", end="")
    print(f" ({time.perf_counter() - wall:.2f} s with reading and writing)")
    if not args.holdout:
        return
    ours = score(series, forecasts, h)
    naive = score(series, [seasonal_naive(x, h) for x in histories], h)
    covered = np.mean(
        [np.mean(v[-h:] <= u) for (_, v), (_, u) in zip(series, results, strict=True)]
    )
    print(f"forecast        MASE {ours.mase:.3f}  sMAPE {ours.smape:.2f}")
    print(f"seasonal naive  MASE {naive.mase:.3f}  sMAPE {naive.smape:.2f}")
    print(f"upper band covers {100 * covered:.1f} % of hold-out values")


if __name__ == "__main__":
    main()
