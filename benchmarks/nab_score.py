"""Score NAB detector results with the recipe in BENCHMARKS.md and print each profile's score.

Usage:
    python benchmarks/nab_score.py --results OUT --labels combined_windows.json \
        --profiles profiles.json [--per-file]

The threshold θ is swept over every distinct score, pooled over all files; "nothing
detected" (θ above every score) is a candidate too, which is how a null detector scores 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Window number of a row that lies outside every window.
NO_WINDOW = -1


@dataclass(frozen=True)
class Costs:
    """One NAB cost profile."""

    tp: float
    fp: float
    fn: float


@dataclass(frozen=True)
class FileRows:
    """What the sweep needs of one scored file, for rows at or after probation.

    `window` is the window number (global over all files) of each row, or NO_WINDOW;
    `tp_weight` is σ(y)/σ(−1) inside windows; `fp_weight` is the unscaled FP factor
    outside them (−1 before any window ended, σ(distance) after one).
    """

    scores: FloatArray
    window: IntArray
    tp_weight: FloatArray
    fp_weight: FloatArray
    n_windows: int


@dataclass(frozen=True)
class SweepResult:
    """Best raw score of a profile and where it was reached."""

    threshold: float
    raw: float
    normalised: float
    true_positives: int
    false_positives: int
    false_negatives: int


def scaled_sigmoid(y: float) -> float:
    """NAB's σ(y) = 2/(1+e^(5y)) − 1, pinned to −1 beyond y = 3."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_rows(n_rows: int) -> int:
    """Rows before this index are not scored."""
    return min(math.floor(0.15 * n_rows), 750)


def window_indices(
    timestamps: npt.NDArray[np.datetime64], windows: Iterable[Sequence[str]]
) -> list[tuple[int, int]]:
    """Map [start, end] timestamp windows to inclusive row index ranges."""
    spans = []
    for start, end in windows:
        s = int(np.searchsorted(timestamps, np.datetime64(start), side="left"))
        e = int(np.searchsorted(timestamps, np.datetime64(end), side="right")) - 1
        if e >= s:
            spans.append((s, e))
    return spans


def row_weights(
    n_rows: int, spans: Sequence[tuple[int, int]], *, first_window: int
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Window number, TP factor and FP factor of every row of one file."""
    window = np.full(n_rows, NO_WINDOW, dtype=np.int64)
    tp_weight = np.zeros(n_rows)
    fp_weight = np.full(n_rows, -1.0)
    top = scaled_sigmoid(-1.0)
    for k, (s, e) in enumerate(spans):
        width = e - s + 1
        for i in range(s, e + 1):
            window[i] = first_window + k
            tp_weight[i] = scaled_sigmoid(-(e - i + 1) / width) / top
            fp_weight[i] = 0.0
        following_end = spans[k + 1][0] if k + 1 < len(spans) else n_rows
        # A single-row window has no width to scale by; treat it as width 2.
        scale = max(width - 1, 1)
        for i in range(e + 1, following_end):
            fp_weight[i] = scaled_sigmoid(abs(i - e) / scale)
    return window, tp_weight, fp_weight


def file_rows(
    timestamps: npt.NDArray[np.datetime64],
    scores: FloatArray,
    windows: Iterable[Sequence[str]],
    *,
    first_window: int,
) -> FileRows:
    """Weights of one file's rows, dropping the probation rows."""
    n_rows = len(scores)
    spans = window_indices(timestamps, windows)
    window, tp_weight, fp_weight = row_weights(n_rows, spans, first_window=first_window)
    p = probation_rows(n_rows)
    return FileRows(
        scores=scores[p:],
        window=window[p:],
        tp_weight=tp_weight[p:],
        fp_weight=fp_weight[p:],
        n_windows=len(spans),
    )


def sweep(rows: Sequence[FileRows], costs: Costs) -> SweepResult:
    """Choose the global θ that maximises the pooled raw score (ties to the higher θ)."""
    scores = np.concatenate([r.scores for r in rows])
    window = np.concatenate([r.window for r in rows])
    tp = np.concatenate([r.tp_weight for r in rows]) * costs.tp
    fp = np.concatenate([r.fp_weight for r in rows]) * costs.fp
    n_windows = sum(r.n_windows for r in rows)
    order = np.argsort(-scores, kind="stable")
    best_in_window = np.full(n_windows, -math.inf)
    raw = -costs.fn * n_windows
    best = (math.inf, raw, 0, 0)
    n_tp = n_fp = 0
    k = 0
    while k < len(order):
        theta = scores[order[k]]
        while k < len(order) and scores[order[k]] == theta:
            i = order[k]
            w = window[i]
            if w == NO_WINDOW:
                raw += fp[i]
                n_fp += 1
            elif tp[i] > best_in_window[w]:
                if best_in_window[w] == -math.inf:
                    raw += costs.fn + tp[i]
                    n_tp += 1
                else:
                    raw += tp[i] - best_in_window[w]
                best_in_window[w] = tp[i]
            k += 1
        if raw > best[1]:
            best = (float(theta), raw, n_tp, n_fp)
    perfect, null = costs.tp * n_windows, -costs.fn * n_windows
    return SweepResult(
        threshold=best[0],
        raw=best[1],
        normalised=100.0 * (best[1] - null) / (perfect - null) if n_windows else 0.0,
        true_positives=best[2],
        false_positives=best[3],
        false_negatives=n_windows - best[2],
    )


def read_result(path: Path) -> tuple[npt.NDArray[np.datetime64], FloatArray]:
    """Timestamps and anomaly scores of one detector output file."""
    with path.open(newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    timestamps = np.array([np.datetime64(r["timestamp"]) for r in table])
    scores = np.array([float(r["anomaly_score"]) for r in table], dtype=np.float64)
    return timestamps, scores


def load_rows(results: Path, labels: Mapping[str, list[list[str]]]) -> list[FileRows]:
    """Weights of every labelled file, numbering windows globally."""
    rows = []
    first_window = 0
    for name in sorted(labels):
        timestamps, scores = read_result(results / name)
        r = file_rows(timestamps, scores, labels[name], first_window=first_window)
        rows.append(r)
        first_window += r.n_windows
    return rows


def load_profiles(path: Path) -> dict[str, Costs]:
    """NAB's profiles.json as cost triples."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: Costs(
            tp=float(p["CostMatrix"]["tpWeight"]),
            fp=float(p["CostMatrix"]["fpWeight"]),
            fn=float(p["CostMatrix"]["fnWeight"]),
        )
        for name, p in raw.items()
    }


def score_results(
    results: Path, labels: Mapping[str, list[list[str]]], profiles: Mapping[str, Costs]
) -> dict[str, SweepResult]:
    """Sweep result of every profile over a results directory."""
    rows = load_rows(results, labels)
    return {name: sweep(rows, costs) for name, costs in profiles.items()}


def per_file_report(
    results: Path, labels: Mapping[str, list[list[str]]], costs: Costs, threshold: float
) -> list[str]:
    """One line per file at a fixed θ: detected windows and false positives (for diagnosis)."""
    lines = []
    for name in sorted(labels):
        timestamps, scores = read_result(results / name)
        r = file_rows(timestamps, scores, labels[name], first_window=0)
        hit = r.scores >= threshold
        outside = hit & (r.window == NO_WINDOW)
        found = {int(w) for w in r.window[hit & (r.window != NO_WINDOW)]}
        fp_cost = -float(np.sum(r.fp_weight[outside])) * costs.fp
        lines.append(
            f"{name:60s} windows {len(found)}/{r.n_windows}  FP rows {int(outside.sum()):3d}"
            f"  FP cost {fp_cost:7.2f}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, required=True, help="detector output directory")
    parser.add_argument("--labels", type=Path, required=True, help="combined_windows.json")
    parser.add_argument("--profiles", type=Path, required=True, help="profiles.json")
    parser.add_argument("--per-file", action="store_true", help="per-file detail (standard θ)")
    args = parser.parse_args(argv)
    labels = json.loads(args.labels.read_text(encoding="utf-8"))
    profiles = load_profiles(args.profiles)
    outcome = score_results(args.results, labels, profiles)
    for name, r in outcome.items():
        print(
            f"{name:20s} {r.normalised:6.2f}  (θ={r.threshold:.6g}, raw {r.raw:.2f}, "
            f"TP {r.true_positives}, FN {r.false_negatives}, FP rows {r.false_positives})"
        )
    if args.per_file and "standard" in outcome:
        for line in per_file_report(
            args.results, labels, profiles["standard"], outcome["standard"].threshold
        ):
            print(line)


if __name__ == "__main__":
    main()
