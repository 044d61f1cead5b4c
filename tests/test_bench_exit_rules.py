"""bench/exit_rules.py: each rule's threshold and the summary, on traces made by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from snnkd_cli.evaluation.early_exit import ExitTrace

_spec = importlib.util.spec_from_file_location("exit_rules", Path(__file__).parents[1] / "bench" / "exit_rules.py")
exit_rules = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("exit_rules", exit_rules)
_spec.loader.exec_module(exit_rules)


def trace(confidence, pred, target) -> ExitTrace:
    """A trace from per-step lists ``[T][N]`` (the entropy is not read by the confidence rule)."""
    conf = torch.tensor(confidence)
    return ExitTrace(conf, torch.zeros_like(conf), torch.tensor(pred), torch.tensor(target))


# Three steps, two samples of class 0: fixed top-1 50 / 100 / 0 at T = 1 / 2 / 3. By hand, on the grid 0.5, 0.7,
# 0.95: 0.5 exits both at step 1 (50%, mean T 1); 0.7 exits sample 0 at step 1 and sample 1 at step 2 (0.6 < 0.7
# <= 0.8), both right (100%, mean T 1.5); 0.95 runs both to step 3 (0%, mean T 3).
CALIB = trace([[0.9, 0.6], [0.9, 0.8], [0.5, 0.5]], [[0, 1], [0, 0], [1, 1]], [0, 0])
GRID = [0.5, 0.7, 0.95]


def test_each_rule_by_hand():
    # tmax: the reference is the Tmax top-1 (0%), so every point qualifies and the lowest mean T (0.5) wins
    assert exit_rules.choose("tmax", CALIB, False, 0.5, GRID) == 0.5
    # best: the reference is the best fixed T (100% at T=2): only 0.7 is within 0.5 points
    assert exit_rules.choose("best", CALIB, False, 0.5, GRID) == 0.7
    # floor: tmax's 0.5 raised to the floor when the slice was seen, left alone when it was held out
    assert exit_rules.choose("floor-0.9", CALIB, False, 0.5, GRID) == 0.9
    assert exit_rules.choose("floor-0.9", CALIB, True, 0.5, GRID) == 0.5
    # no point qualifies (every point below a 100% reference by more than the drop): run every step
    never = trace([[0.9], [0.9]], [[1], [0]], [0])  # fixed 0 / 100; 0.5 and 0.7 exit at step 1, wrong
    assert exit_rules.choose("floor-0.9", never, False, 0.5, [0.5, 0.7]) is None


def test_measure_and_summary_by_hand(monkeypatch):
    # validation: two samples, fixed 50 / 100 at T = 1 / 2 (best fixed 100); both exit at step 1 from 0.5 to 0.8,
    # sample 1 (wrong at step 1) runs on to step 2 from 0.85 up, sample 0 from 0.95 up.
    val = trace([[0.9, 0.8], [0.99, 0.99]], [[0, 1], [0, 0]], [0, 0])
    calib = trace([[0.6, 0.6], [0.9, 0.9]], [[0, 0], [0, 0]], [0, 0])  # seen: right from step 1
    monkeypatch.setattr(exit_rules, "traces", lambda path, cache: {"val": val, "calib": calib, "held_out": False})
    rows = exit_rules.measure({"setA/E/s0": Path("a"), "setB/E/s0": Path("b")}, ["tmax", "floor-0.85"], 0.5, Path())
    by = {(r["set"], r["rule"]): r for r in rows}
    # tmax: 0.5 and 0.6 exit every calibration sample at step 1, all right; the tie goes to the later 0.6. On
    # validation both exit at step 1 -> 50%, mean T 1, gap -50
    assert (by["setA", "tmax"]["threshold"], by["setA", "tmax"]["top1"], by["setA", "tmax"]["mean_T"]) == (0.6, 50, 1)
    # floor 0.85: sample 1 (0.8 < 0.85) goes on to step 2, right -> 100%, mean T 1.5, gap 0
    assert (by["setB", "floor-0.85"]["top1"], by["setB", "floor-0.85"]["mean_T"]) == (100, 1.5)
    text = exit_rules.summary(rows, 0.5)
    assert "| tmax | -50.00 / 1.00 | -50.00 / 1.00 | -50.00 | 0/2 |" in text
    assert "| floor-0.85 | +0.00 / 1.50 | +0.00 / 1.50 | +0.00 | 2/2 |" in text


def test_no_student_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="no student checkpoint"):
        exit_rules.main(["--runs", str(tmp_path)])
