"""eval-sweep over T=1..Tmax: one pass at Tmax vs Tmax separate evaluations, on synthetic data.

Three timings, measured in one run and interleaved (round-robin), median over ``--repeats``:

* ``one-pass``: ``snnkd_cli.evaluation.sweep.sweep(model, loader, Tmax)`` (what ``eval-sweep``
  does: one forward at Tmax, ``cumsum/t`` for every T', top-1/top-5 and spike counting hooks).
* ``separate``: ``sweep(model, loader, t)`` for t = 1..Tmax, each read at its own T.
* ``whole``: ``one-pass`` with each batch run whole on a CPU (``SWEEP_SLICE_CPU`` lifted), what it cost before
  the sweep ran a CPU batch in slices of 16 samples.
* ``single``: one plain evaluation at Tmax (reset, forward, top-1 of ``logits.mean(0)``,
  no hooks), the cost floor for the target "sweep within 1.2x of one evaluation at Tmax".

Also checks that the one-pass top-1 at each T equals the separate evaluation's.

Usage: ``python bench/sweep.py [--max-T 8] [--n 32] [--batch 32] [--repeats 2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader

from snnkd_cli.data.synthetic import SyntheticImages
from snnkd_cli.evaluation import sweep as sweep_module
from snnkd_cli.evaluation.sweep import sweep
from snnkd_cli.models.contract import reset_state, time_major
from snnkd_cli.models.registry import create_model


@torch.no_grad()
def single_eval(model: torch.nn.Module, loader: DataLoader, T: int, device: torch.device) -> float:
    model.eval()
    correct = n = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        reset_state(model)
        s = model(time_major(x, T, False))  # [T, B, C]
        correct += int((s.mean(0).argmax(-1) == y).sum())
        n += len(y)
    reset_state(model)
    return 100.0 * correct / max(n, 1)


def firing(model: torch.nn.Module) -> torch.nn.Module:
    """Set every BN's running variance to 0.05, so that an untrained network's neurons fire (~30% per step)."""
    with torch.no_grad():
        for bn in [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]:
            bn.running_var.fill_(0.05)
    return model


def whole_batches(fn):
    """``fn`` run with every batch of a sweep whole (no CPU slices), the slice size put back after."""

    def run():
        kept = sweep_module.SWEEP_SLICE_CPU
        sweep_module.SWEEP_SLICE_CPU = 1 << 30
        try:
            return fn()
        finally:
            sweep_module.SWEEP_SLICE_CPU = kept

    return run


def time_sweep(model: torch.nn.Module, loader: DataLoader, Tm: int, device: torch.device, repeats: int) -> dict:
    """Median seconds of ``one-pass``, ``separate`` and ``single`` (module docstring), interleaved round-robin
    after one warm-up round, their ratios, and whether the one-pass top-1 equals the others at every T."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    fns = {
        "one-pass": lambda: sweep(model, loader, Tm, device=device),
        "separate": lambda: [sweep(model, loader, t, device=device).at(t) for t in range(1, Tm + 1)],
        "single": lambda: single_eval(model, loader, Tm, device),
        "whole": whole_batches(lambda: sweep(model, loader, Tm, device=device)),
    }
    times = {k: [] for k in fns}
    outs = {}
    for r in range(repeats + 1):  # round 0 is warm-up
        for k, f in fns.items():
            sync()
            t0 = time.perf_counter()
            outs[k] = f()
            sync()
            if r > 0:
                times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    same = [outs["one-pass"].at(t)["top1"] == outs["separate"][t - 1]["top1"] for t in range(1, Tm + 1)]
    return {
        "median_s": med,
        "times_s": times,
        "ratio_one_pass_over_single": med["one-pass"] / med["single"],
        "ratio_separate_over_one_pass": med["separate"] / med["one-pass"],
        "ratio_whole_over_one_pass": med["whole"] / med["one-pass"],
        "same_top1_whole": [r["top1"] for r in outs["whole"].rows] == [r["top1"] for r in outs["one-pass"].rows],
        "top1_one_pass": [r["top1"] for r in outs["one-pass"].rows],
        "top1_separate": [r["top1"] for r in outs["separate"]],
        "same_top1_every_T": all(same),
        "same_top1_as_single": outs["one-pass"].at(Tm)["top1"] == outs["single"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-T", type=int, default=8, help="the sweep's largest T")
    ap.add_argument("--n", type=int, default=32, help="synthetic validation images")
    ap.add_argument("--batch", type=int, default=32, help="loader batch size")
    ap.add_argument("--size", type=int, default=32, help="image height and width (px)")
    ap.add_argument("--repeats", type=int, default=2, help="timed rounds after one warm-up round (median)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = firing(create_model("resnet18", 10).to(device))
    loader = DataLoader(SyntheticImages(args.n, 10, size=args.size, split_seed=1), batch_size=args.batch)
    Tm = args.max_T
    report = {
        "argv": sys.argv,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **time_sweep(model, loader, Tm, device, args.repeats),
    }
    med = report["median_s"]
    print(f"images={args.n} batch={args.batch} size={args.size} T=1..{Tm}, median of {args.repeats}")
    for k in med:
        print(f"  {k:<9} {med[k]:8.3f} s")
    print(f"  one-pass / single T={Tm} eval: {report['ratio_one_pass_over_single']:.2f}x")
    print(f"  separate 1..{Tm} / one-pass:   {report['ratio_separate_over_one_pass']:.2f}x")
    whole, same_whole = report["ratio_whole_over_one_pass"], report["same_top1_whole"]
    cut = sweep_module.SWEEP_SLICE_CPU
    print(f"  whole batches / one-pass (CPU slices of {cut}): {whole:.2f}x, same top-1: {same_whole}")
    same, same_T = report["same_top1_every_T"], report["same_top1_as_single"]
    print(f"  one-pass top-1 equals separate top-1 at every T: {same}; equals single eval at T={Tm}: {same_T}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
