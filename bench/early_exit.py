"""Wall-clock per sample of the early-exit runtime vs fixed runs at Tmax and at T=1, on the same data.

Variants, interleaved round-robin in one process, median over ``--repeats`` rounds after one warm-up:

* ``early-exit``: :class:`snnkd_cli.EarlyExitClassifier` (one step at a time, exited samples and their
  neuron states dropped from the batch) with the checkpoint's stored threshold (``eval-sweep --dynamic
  --save-threshold``) or ``--threshold``.
* ``fixed-Tmax``: one multi-step forward at Tmax and the mean of the logits (what a fixed deployment
  runs; the static image's stem runs once).
* ``fixed-Tmax-stepwise``: the runtime with no threshold (Tmax steps, one at a time): the runtime's own
  per-step overhead, without exits.
* ``fixed-T1``: one step.

The ratio to ``fixed-Tmax-stepwise`` compares the same way of running (one step per call) with and
without exits; the ratio to ``fixed-Tmax`` is the saving over a fixed deployment. Also prints the ideal
ratio Tmax / mean T and checks that the runtime's exits and predictions equal the
post-hoc rule on the fixed-Tmax pass.

Usage: ``python bench/early_exit.py CKPT [--threshold X] [--n 500] [--batch 100] [--repeats 3] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader

from snnkd_cli.checkpoint import load_checkpoint, model_from_checkpoint, stored_exit_rule
from snnkd_cli.data import build_datasets
from snnkd_cli.evaluation.early_exit import early_exit
from snnkd_cli.inference.exit_runtime import EarlyExitClassifier
from snnkd_cli.models.contract import reset_state, time_major


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--threshold", type=float, help="instead of the stored one")
    ap.add_argument("--rule", help="with --threshold: confidence (default) or entropy")
    ap.add_argument("--max-T", type=int, help="Tmax (default: the stored one, else the training T)")
    ap.add_argument("--n", type=int, default=500, help="validation samples")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint, expect="student")
    stored = stored_exit_rule(ckpt.meta) or {}
    threshold = args.threshold if args.threshold is not None else stored.get("threshold")
    rule = args.rule or stored.get("rule", "confidence")
    max_T = args.max_T or stored.get("max_T") or ckpt.config.train.T
    if threshold is None:
        sys.exit("no threshold: pass --threshold or store one with snnkd eval-sweep CKPT --dynamic --save-threshold")
    model = model_from_checkpoint(ckpt).eval()
    _, val, info = build_datasets(ckpt.config.data, train=False)
    batches = [b for i, b in enumerate(DataLoader(val, batch_size=args.batch)) if i * args.batch < args.n]
    n = sum(len(y) for _, y in batches)
    runtime = EarlyExitClassifier(model, threshold, rule, max_T, info.temporal)
    stepwise = EarlyExitClassifier(model, None, rule, max_T, info.temporal)

    @torch.no_grad()
    def fixed(T: int) -> list[torch.Tensor]:
        out = []
        for x, _ in batches:
            reset_state(model)
            out.append(model(time_major(x, T, info.temporal)))  # [T, B, C]
        reset_state(model)
        return out

    variants = {
        "early-exit": lambda: [runtime(x) for x, _ in batches],
        "fixed-Tmax": lambda: fixed(max_T),
        "fixed-Tmax-stepwise": lambda: [stepwise(x) for x, _ in batches],
        "fixed-T1": lambda: fixed(1),
    }
    times = {k: [] for k in variants}
    outs = {}
    for r in range(args.repeats + 1):  # round 0 is warm-up
        for k, f in variants.items():
            t0 = time.perf_counter()
            outs[k] = f()
            if r > 0:
                times[k].append(time.perf_counter() - t0)
    per_sample = {k: 1e3 * statistics.median(v) / n for k, v in times.items()}  # ms
    steps = torch.cat([o.step for o in outs["early-exit"]])
    preds = torch.cat([o.pred for o in outs["early-exit"]])
    post_hoc = [early_exit(s, threshold, rule) for s in outs["fixed-Tmax"]]  # the rule on the fixed-Tmax pass
    want_step, want_pred = torch.cat([a for a, _ in post_hoc]), torch.cat([b for _, b in post_hoc])
    labels = torch.cat([y for _, y in batches])
    mean_T = float(steps.double().mean())

    def acc(pred: torch.Tensor) -> float:
        return 100.0 * float((pred == labels).double().mean())

    top1 = {
        "early-exit": acc(preds),
        "fixed-Tmax": acc(torch.cat([s.mean(0).argmax(-1) for s in outs["fixed-Tmax"]])),
        "fixed-T1": acc(torch.cat([s[0].argmax(-1) for s in outs["fixed-T1"]])),
    }
    result = {
        "checkpoint": args.checkpoint,
        "rule": rule,
        "threshold": threshold,
        "max_T": max_T,
        "samples": n,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "ms_per_sample": per_sample,
        "mean_T": mean_T,
        "ideal_ratio": max_T / mean_T,
        "measured_ratio": per_sample["fixed-Tmax"] / per_sample["early-exit"],
        "measured_ratio_stepwise": per_sample["fixed-Tmax-stepwise"] / per_sample["early-exit"],
        "top1": top1,
        "same_as_post_hoc": {
            "steps": int((steps == want_step).sum()),
            "predictions": int((preds == want_pred).sum()),
            "of": n,
        },
    }
    threads = torch.get_num_threads()
    print(f"{n} samples, batch {args.batch}, Tmax {max_T}, {rule} threshold {threshold}, {threads} thread(s)")
    for k, v in per_sample.items():
        print(f"  {k:<20} {v:8.3f} ms/sample   fixed-Tmax / this = {per_sample['fixed-Tmax'] / v:5.2f}x")
    print(
        f"  mean T {mean_T:.2f}: ideal Tmax / mean T = {max_T / mean_T:.2f}x; measured: "
        f"{result['measured_ratio']:.2f}x vs fixed-Tmax, "
        f"{result['measured_ratio_stepwise']:.2f}x vs fixed-Tmax-stepwise"
    )
    print(f"  top-1: {', '.join(f'{k} {v:.2f}' for k, v in top1.items())}")
    same = result["same_as_post_hoc"]
    print(
        f"  runtime = post-hoc rule on the fixed-Tmax pass: steps {same['steps']}/{n}, preds {same['predictions']}/{n}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
