"""Run the AnomalyDetector agent's detector over NAB-format series and write NAB result files.

Usage (from the repository root):
    python benchmarks/nab.py --data nab-dev/data --out results/

Every `DATA/<category>/*.csv` (`timestamp,value`) is scored row by row with one fresh
detector and the default parameters, and written to `OUT/<category>/<file>.csv` with the
columns `timestamp,value,anomaly_score`; timestamp and value are copied as text.
Score the output with benchmarks/nab_score.py.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# Maps the rows of one file, as (timestamp text, value text), to one score per row.
Scorer = Callable[[Sequence[tuple[str, str]]], list[float]]


def read_rows(path: Path) -> list[tuple[str, str]]:
    """The `timestamp,value` rows of one NAB file, as the text found there."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows)
        if [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise ValueError(f"{path}: expected a timestamp,value header, got {header}")
        return [(r[0], r[1]) for r in rows if r]


def line_ending(path: Path) -> str:
    """The line ending of a file (some NAB files use CRLF), so the output can keep it."""
    with path.open("rb") as f:
        return "\r\n" if f.readline().endswith(b"\r\n") else "\n"


def write_rows(
    path: Path,
    rows: Sequence[tuple[str, str]],
    scores: Sequence[float],
    *,
    newline: str = "\n",
) -> None:
    """NAB result layout; repr() keeps every score exactly, so ties stay ties."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator=newline)
        out.writerow(["timestamp", "value", "anomaly_score"])
        for (timestamp, value), s in zip(rows, scores, strict=True):
            out.writerow([timestamp, value, repr(s)])


def load_scorer() -> Scorer:
    """The agent's detector as a per-file scorer; puts the repository root on the path."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from agents.analysis import AnomalyDetector

    def score(rows: Sequence[tuple[str, str]]) -> list[float]:
        detector = AnomalyDetector()
        return [detector.update(t, float(v)) for t, v in rows]

    return score


def run(data: Path, out: Path, score: Scorer) -> int:
    """Score every file under data/<category>/ into out/; returns the number of rows."""
    files = sorted(data.glob("*/*.csv"))
    if not files:
        raise SystemExit(f"no {data}/<category>/*.csv files found")
    total = 0
    for path in files:
        rows = read_rows(path)
        target = out / path.parent.name / path.name
        write_rows(target, rows, score(rows), newline=line_ending(path))
        total += len(rows)
    return total


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True, help="NAB data/ directory")
    parser.add_argument("--out", type=Path, required=True, help="results directory to write")
    args = parser.parse_args(argv)
    score = load_scorer()
    started = time.perf_counter()
    rows = run(args.data, args.out, score)
    elapsed = time.perf_counter() - started
    print(f"{rows} rows scored in {elapsed:.1f} s ({1e6 * elapsed / rows:.0f} µs per row)")


if __name__ == "__main__":
    main()
