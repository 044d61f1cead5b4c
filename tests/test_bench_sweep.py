"""bench/sweep.py at a tiny size: the four timings, their ratios by hand, the same top-1 whole and in slices."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from snnkd_cli.data.synthetic import SyntheticImages
from snnkd_cli.evaluation import sweep as sweep_module
from snnkd_cli.models.registry import create_model

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
try:
    import sweep as bench_sweep
finally:
    sys.path.remove(str(BENCH))


def test_the_timings_ratios_and_the_whole_batch_variant_by_hand() -> None:
    torch.manual_seed(0)
    model = bench_sweep.firing(create_model("resnet18", 10, width=4))
    loader = DataLoader(SyntheticImages(40, 10, size=8, split_seed=1), batch_size=40)  # 40 > 16: sliced
    r = bench_sweep.time_sweep(model, loader, 3, torch.device("cpu"), repeats=1)
    med = r["median_s"]
    assert set(med) == {"one-pass", "separate", "single", "whole"} and all(len(v) == 1 for v in r["times_s"].values())
    assert r["ratio_whole_over_one_pass"] == pytest.approx(med["whole"] / med["one-pass"])
    assert r["ratio_one_pass_over_single"] == pytest.approx(med["one-pass"] / med["single"])
    assert r["same_top1_whole"] and r["same_top1_every_T"] and r["same_top1_as_single"]
    assert sweep_module.SWEEP_SLICE_CPU == 16  # put back after the whole-batch runs


def test_whole_batches_runs_each_batch_in_one_forward() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", 10, width=4).eval()
    loader = DataLoader(SyntheticImages(40, 10, size=8, split_seed=1), batch_size=40)
    widths: list[int] = []
    model.register_forward_pre_hook(lambda m, args: widths.append(args[0].shape[1]))  # [T, B, ...]
    bench_sweep.whole_batches(lambda: sweep_module.sweep(model, loader, 2))()
    sweep_module.sweep(model, loader, 2)
    assert widths == [40, 16, 16, 8]
