"""The benchmark scripts on one real file each from ../shared (skipped when it is absent)."""

from __future__ import annotations

import csv
from pathlib import Path

from benchmarks import m4, nab

NAB_FILE = "data/nab-dev/data/realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv"


def test_nab_output_copies_rows_and_is_causal(shared_dir: Path, tmp_path: Path) -> None:
    source = shared_dir / NAB_FILE
    rows = nab.read_rows(source)
    score = nab.load_scorer()
    scores = score(rows)
    out = tmp_path / "realAWSCloudwatch" / source.name
    nab.write_rows(out, rows, scores)

    with out.open(newline="", encoding="utf-8") as f:
        written = list(csv.reader(f))
    assert written[0] == ["timestamp", "value", "anomaly_score"]
    assert [tuple(r[:2]) for r in written[1:]] == rows
    assert all(0.0 <= float(r[2]) <= 1.0 for r in written[1:])
    cut = 1200
    assert score(rows[:cut]) == scores[:cut]


def test_m4_scorer_reproduces_the_published_seasonal_naive(shared_dir: Path) -> None:
    series = m4.read_series(shared_dir / "data/forecast-dev/m4-hourly-train.csv")
    assert len(series) == 414
    assert {len(v) for _, v in series} == {700, 960}
    h = m4.HORIZON
    naive = m4.score(series, [m4.seasonal_naive(v[:-h], h) for _, v in series], h)
    # BENCHMARKS.md: seasonal naive on this hold-out scores MASE 1.228, sMAPE 14.57.
    assert round(naive.mase, 3) == 1.228
    assert round(naive.smape, 2) == 14.57
