"""bench/memory.py at a tiny size: every (T, --memopt) point measured in its own process, the ratios and slopes
equal to a hand computation from the reported numbers, the memopt weights equal to the off run's."""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))  # memory.py imports its neighbours (step.py, _gpu_parts.py)
try:
    import memory
finally:
    sys.path.remove(str(BENCH))

TINY = ["--T", "1", "2", "--batch", "2", "--size", "8", "--width", "4", "--steps", "1", "--settings", "off", "memory"]
FIELDS = {"T", "setting", "level", "note", "memory_mib", "peak_mib", "base_mib", "memory_kind", "step_s", "times_s"}
FIELDS |= {"mem_ratio", "time_ratio", "weight_diff", "live_mib", "live_ratio"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[dict, Path, str]:
    folder = tmp_path_factory.mktemp("memory")
    out, weights = folder / "memory.json", folder / "weights"
    cmd = [sys.executable, str(BENCH / "memory.py"), *TINY, "--threads", "1", "--json", str(out)]
    cmd += ["--weights-dir", str(weights)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(out.read_text()), folder, res.stdout


@pytest.mark.slow
def test_every_point_is_reported_with_its_ratios_to_off_by_hand(tiny_run) -> None:
    report, folder, stdout = tiny_run
    assert {"argv", "date", "machine", "options", "memory", "points", "slopes"} <= set(report)
    assert report["options"]["T"] == [1, 2] and report["options"]["device"] == "cpu"
    points = {(p["T"], p["setting"]): p for p in report["points"]}
    assert list(points) == [(1, "off"), (1, "memory"), (2, "off"), (2, "memory")]
    for (T, setting), p in points.items():
        assert set(p) == FIELDS, (T, setting)
        assert len(p["times_s"]) == 1 and p["step_s"] == statistics.median(p["times_s"]) > 0
        assert p["memory_mib"] == pytest.approx(p["peak_mib"] - p["base_mib"]) and p["base_mib"] > 0
        off = points[T, "off"]
        if off["memory_mib"] > 0:
            assert p["mem_ratio"] == pytest.approx(p["memory_mib"] / off["memory_mib"])
        else:  # a step that adds no page at this size: no ratio
            assert p["mem_ratio"] is None
        assert p["time_ratio"] == pytest.approx(p["step_s"] / off["step_s"])
        assert p["live_mib"] > 0 and p["live_ratio"] == pytest.approx(p["live_mib"] / off["live_mib"])
        row = f"| {T} | {setting} | {p['level']} | {p['memory_mib']:.0f} |"
        assert row in stdout and row in (folder / "memory.md").read_text()
    assert points[1, "off"]["level"] == 0 and points[1, "memory"]["level"] == 1  # level 1 on a CPU
    assert "modules of the student checkpointed" in points[2, "memory"]["note"]
    assert f"bench/memory.py {' '.join(TINY)}" in stdout  # the command line with its figures
    assert (folder / "memory.png").exists() == (importlib.util.find_spec("matplotlib") is not None)


@pytest.mark.slow
def test_the_slopes_are_a_least_squares_fit_of_the_reported_points(tiny_run) -> None:
    report = tiny_run[0]
    for setting in ("off", "memory"):
        m = {p["T"]: p["memory_mib"] for p in report["points"] if p["setting"] == setting}
        assert report["slopes"][setting] == pytest.approx(m[2] - m[1])  # two points: the line through them


@pytest.mark.slow
def test_memopt_weights_equal_the_off_runs(tiny_run) -> None:
    """The script's own difference, and the weight files compared here with torch's own check."""
    report, folder, _ = tiny_run
    for p in report["points"]:
        assert p["weight_diff"] <= 1e-4, p
        off = load_file(str(folder / "weights" / f"T{p['T']}-off.safetensors"))
        got = load_file(str(folder / "weights" / f"T{p['T']}-{p['setting']}.safetensors"))
        assert list(got) == list(off)
        for key in off:
            torch.testing.assert_close(got[key], off[key], rtol=1e-4, atol=1e-6, msg=key)
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in got.items() if k.endswith("running_mean"))


def test_slope_is_numpys_least_squares_fit() -> None:
    xs, ys = [2, 4, 8, 16], [110.0, 190.0, 405.0, 800.0]
    assert memory.slope(xs, ys) == pytest.approx(np.polyfit(xs, ys, 1)[0])
    assert memory.slope([4, 4], [1.0, 2.0]) is None


def test_weight_diff_is_the_largest_relative_difference_of_a_tensor() -> None:
    ref = {"w": torch.tensor([1.0, -2.5]), "b": torch.tensor([0.0, 4.0]), "n": torch.tensor(3)}
    got = {"w": torch.tensor([1.0, -2.0]), "b": torch.tensor([0.4, 4.0]), "n": torch.tensor(5)}
    assert memory.weight_diff(got, ref) == pytest.approx(0.5 / 2.5)  # w: 0.2 > b: 0.1; integers left out
    assert memory.weight_diff(ref, ref) == 0.0


def test_the_table_of_made_up_points_by_hand() -> None:
    pts = [
        {"T": 2, "setting": "off", "level": 0, "memory_mib": 100.0, "step_s": 0.5, "weight_diff": 0.0},
        {"T": 2, "setting": "memory", "level": 1, "memory_mib": 40.0, "step_s": 0.7, "weight_diff": 2e-7},
        {"T": 4, "setting": "off", "level": 0, "memory_mib": 180.0, "step_s": 1.0, "weight_diff": 0.0},
        {"T": 4, "setting": "memory", "error": "exit -9: killed"},
    ]
    pts = memory.summarise(pts)
    assert pts[1]["mem_ratio"] == pytest.approx(0.4) and pts[1]["time_ratio"] == pytest.approx(1.4)
    assert pts[3]["mem_ratio"] is None
    slopes = memory.slopes(pts)
    assert slopes == {"off": pytest.approx(40.0), "memory": None}  # (180 - 100) / (4 - 2); one T left
    md = memory.table({"memory": "made up", "points": pts, "slopes": slopes})
    assert "| 2 | memory | 1 | 40 | 0.40x | 700 | 1.40x | 2.0e-07 |" in md
    assert "| 4 | memory | - | failed: exit -9: killed |||||" in md
    assert "| off | 40.0 |" in md and "| memory | - |" in md


def test_live_peak_is_the_most_bytes_held_at_once_by_hand() -> None:
    """4 MiB held, 8 MiB more on top, both freed, then 2 MiB: the peak is 12 MiB beyond the start."""

    def work() -> None:
        a = torch.ones(2**20)  # 4 MiB of fp32
        b = torch.ones(2**21)  # 8 MiB
        del a, b
        c = torch.ones(2**19)  # 2 MiB
        del c

    assert memory.live_peak_mib(work) == pytest.approx(12.0, abs=0.01)
    assert memory.live_peak_mib(lambda: None) == 0.0
