"""bench/step.py --epoch at a tiny size: a whole distill run whose parts add up to its wall time, none overlapping,
the ratios to the sum of its steps by hand; and the parts of a made-up timeline by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snnkd_cli.precision import resolve_precision

BENCH = Path(__file__).resolve().parents[1] / "bench"
TINY = ["--train-images", "8", "--val-images", "4", "--batch", "4", "--size", "8", "--width", "4", "--T", "1"]
PARTS = ["imports", "start", "data", "step", "health", "validation", "checkpoints", "after", "other"]
FIELDS = {"wall_s", "steps_s", "wall_over_steps", "epoch_loop_s", "loop_over_steps", "target", "met", "parts_s"}
FIELDS |= {"shares", "steps", "step_times_s", "data_times_s", "epochs", "setup_s_not_in_wall", "threads", "config"}


def _epoch_module():
    sys.path.insert(0, str(BENCH))
    try:
        return __import__("_epoch")
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.slow
def test_a_tiny_epochs_parts_add_up_to_its_wall_time(tmp_path) -> None:
    out = tmp_path / "epoch.json"
    cmd = [sys.executable, str(BENCH / "step.py"), "--epoch", *TINY, "--threads", "1", "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {"argv", "date", "options", "result", "machine"} <= set(report)
    r = report["result"]
    assert set(r) == FIELDS and list(r["parts_s"]) == PARTS and list(r["shares"]) == PARTS
    parts = r["parts_s"]
    assert sum(parts.values()) == pytest.approx(r["wall_s"], rel=1e-9)
    assert all(v >= 0 for v in parts.values()), parts  # "other" too: no part is counted twice
    assert parts["imports"] > 0  # the process's age when main began
    assert r["steps"] == 2 == len(r["step_times_s"]) and len(r["data_times_s"]) == 3  # 8 images of 4; one empty wait
    assert r["steps_s"] == pytest.approx(sum(r["step_times_s"])) == parts["step"]
    assert parts["data"] == pytest.approx(sum(r["data_times_s"]))
    assert r["wall_over_steps"] == pytest.approx(r["wall_s"] / r["steps_s"])
    assert r["loop_over_steps"] == pytest.approx(r["epoch_loop_s"] / r["steps_s"])
    assert r["epoch_loop_s"] >= parts["step"] + parts["data"]  # fit's epoch time holds its waits and steps
    assert r["met"] == (r["wall_s"] <= 1.1 * r["steps_s"]) and r["target"] == 1.1
    assert sum(r["shares"].values()) == pytest.approx(1.0)
    auto = resolve_precision("auto", torch.device("cpu"))  # bf16 on a CPU that computes it natively, else fp32
    assert r["epochs"] == 1 and r["config"] == {"precision": auto, "memopt": "off"}
    assert f"bench/step.py --epoch {' '.join(TINY)}" in res.stdout
    assert f"| training steps (2) | {parts['step']:.2f} |" in res.stdout
    assert f"wall / sum of training steps: {r['wall_over_steps']:.3f}x" in res.stdout


def test_the_parts_of_a_made_up_timeline_by_hand() -> None:
    """Run from t=10 to t=30 after 2 s of imports: start-up to the first wait at 12, two waits of 1 s and two steps
    of 3 s, validation 2 s, a checkpoint 1 s ending at 25, then 5 s after; the 2 s of gaps are "other"."""
    epoch = _epoch_module()
    timer = epoch.Timer(epoch.torch.device("cpu"))
    timeline = [("data", 12, 13), ("step", 13, 16), ("data", 16, 17), ("step", 17, 20)]
    timer.parts = timeline + [("validation", 21, 23), ("checkpoints", 24, 25)]
    parts = epoch.breakdown(timer, t0=10.0, t_end=30.0, imports=2.0)
    by_hand = {"imports": 2, "start": 2, "data": 2, "step": 6, "health": 0, "validation": 2, "checkpoints": 1}
    assert parts == by_hand | {"after": 5, "other": 2}
    assert sum(parts.values()) == 22  # imports + (30 - 10)
    assert timer.times("step") == [3, 3]
