"""The NAB scorer in benchmarks/: weights, the threshold sweep, null = 0, perfect = 100."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from benchmarks import nab_score
from benchmarks.nab_score import Costs, row_weights, scaled_sigmoid, score_results

N_ROWS = 100
# file name -> windows as (first row, last row); probation is the first 15 rows.
WINDOWS = {"cat/a.csv": [(40, 49)], "cat/b.csv": [(30, 39), (70, 79)], "cat/c.csv": []}
PROFILES = {
    "standard": Costs(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Costs(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Costs(tp=1.0, fp=0.11, fn=2.0),
}


def stamp(i: int) -> str:
    return (datetime(2014, 4, 1) + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S")


def write_set(root: Path, scores: dict[str, list[float]]) -> dict[str, list[list[str]]]:
    """Result files under root/ and the matching NAB labels (windows as timestamps)."""
    for name, values in scores.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["timestamp,value,anomaly_score"]
        lines += [f"{stamp(i)},{i},{s}" for i, s in enumerate(values)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        name: [[stamp(s) + ".000000", stamp(e) + ".000000"] for s, e in spans]
        for name, spans in WINDOWS.items()
    }


def flagged(rows: dict[str, list[int]]) -> dict[str, list[float]]:
    out = {}
    for name in WINDOWS:
        values = [0.0] * N_ROWS
        for i in rows.get(name, []):
            values[i] = 1.0
        out[name] = values
    return out


def test_scaled_sigmoid() -> None:
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == pytest.approx(-0.99999939, abs=1e-8)
    assert scaled_sigmoid(3.0001) == -1.0


def test_window_weights_favour_early_detection() -> None:
    window, tp, _ = row_weights(N_ROWS, [(40, 49)], first_window=0)
    width = 10
    assert tp[40] == pytest.approx(1.0)
    assert tp[49] == pytest.approx(scaled_sigmoid(-1 / width) / scaled_sigmoid(-1.0))
    assert np.all(np.diff(tp[40:50]) < 0)
    assert set(window[40:50].tolist()) == {0}
    assert (window[:40] == -1).all()
    assert (window[50:] == -1).all()


def test_false_positive_weights_before_and_after_a_window() -> None:
    _, _, fp = row_weights(N_ROWS, [(40, 49)], first_window=0)
    assert (fp[:40] == -1.0).all()
    assert (fp[40:50] == 0.0).all()
    assert fp[50] == pytest.approx(scaled_sigmoid(1 / 9))
    assert fp[60] == pytest.approx(scaled_sigmoid(11 / 9))
    assert fp[80] == -1.0  # more than three widths after: a full false positive
    assert np.all(np.diff(fp[50:80]) <= 0)


def test_null_detector_scores_zero(tmp_path: Path) -> None:
    labels = write_set(tmp_path, flagged({}))
    for result in score_results(tmp_path, labels, PROFILES).values():
        assert result.normalised == 0.0
        assert result.true_positives == 0
        assert math.isinf(result.threshold)


def test_perfect_detector_scores_hundred(tmp_path: Path) -> None:
    starts = {name: [s for s, _ in spans] for name, spans in WINDOWS.items()}
    labels = write_set(tmp_path, flagged(starts))
    for result in score_results(tmp_path, labels, PROFILES).values():
        assert result.normalised == pytest.approx(100.0)
        assert result.threshold == 1.0
        assert result.false_positives == 0


def test_late_detection_and_false_positives_by_hand(tmp_path: Path) -> None:
    # a: caught at its last row; b: first window caught at its start, a false positive
    # 5 rows after it, second window missed; c: one false positive before any window.
    labels = write_set(
        tmp_path, flagged({"cat/a.csv": [49], "cat/b.csv": [30, 44], "cat/c.csv": [20]})
    )
    costs = PROFILES["standard"]
    expected = (
        scaled_sigmoid(-1 / 10) / scaled_sigmoid(-1.0)
        + 1.0
        + costs.fp * scaled_sigmoid(5 / 9)
        - costs.fn
        - costs.fp
    )
    result = score_results(tmp_path, labels, {"standard": costs})["standard"]
    assert result.raw == pytest.approx(expected)
    assert result.normalised == pytest.approx(100 * (expected + 3) / 6)


def test_threshold_ties_go_to_the_higher_value() -> None:
    # Detecting at 0.9 or also at 0.5 adds only a row inside the same window: same score.
    rows = nab_score.file_rows(
        np.array([np.datetime64(stamp(i)) for i in range(N_ROWS)]),
        np.array([0.9 if i == 40 else 0.5 if i == 41 else 0.0 for i in range(N_ROWS)]),
        [[stamp(40), stamp(49)]],
        first_window=0,
    )
    assert nab_score.sweep([rows], PROFILES["standard"]).threshold == 0.9


def test_command_line_prints_each_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = write_set(tmp_path / "results", flagged({}))
    (tmp_path / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    profiles = {
        name: {"CostMatrix": {"tpWeight": c.tp, "fpWeight": c.fp, "fnWeight": c.fn}}
        for name, c in PROFILES.items()
    }
    (tmp_path / "profiles.json").write_text(json.dumps(profiles), encoding="utf-8")
    nab_score.main(
        [
            "--results", str(tmp_path / "results"),
            "--labels", str(tmp_path / "labels.json"),
            "--profiles", str(tmp_path / "profiles.json"),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    for name in PROFILES:
        assert f"{name}" in out
    assert out.count("  0.00") == 3
