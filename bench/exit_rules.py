"""Early exit's default rule, measured on many students at once: which rule keeps ``--max-drop`` on unseen data.

For every student checkpoint given (or found under ``--runs``: every ``best.safetensors`` of a student), one
pass at its training T over the validation set and one over the calibration slice of its training split (10%,
seen in training unless the student was distilled with ``--calib-holdout``) keep the per-sample traces that
``eval-sweep --dynamic`` reads (cached in ``--cache`` by checkpoint path and modification time). Then each rule
of :data:`RULES` chooses a threshold on the calibration trace, and the script reports, per rule, the chosen
top-1 and mean T on the validation set against the best fixed T of the same pass (the figure issue 23 item 5
asks to keep within ``--max-drop``), per set (the folder two levels above a checkpoint, as ``bench/parity.py
--suite`` writes them) and over all students.

Rules (all read only the calibration trace, never the validation labels):

* ``tmax``: ``eval-sweep --dynamic``'s choice as it stands: the lowest mean T whose calibration top-1 is within
  ``max_drop`` of the calibration top-1 at Tmax;
* ``best``: the same against the best fixed T of the calibration slice instead of Tmax;
* ``floor-X``: ``tmax``'s choice, but at least threshold X when the slice was seen in training (a margin for
  the student's overconfidence on data it trained on).

Usage: ``python bench/exit_rules.py --runs runs/E runs/S --max-drop 0.5 [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from snnkd_cli.checkpoint import load_checkpoint, model_from_checkpoint
from snnkd_cli.data import build_datasets, calibration_split
from snnkd_cli.data.loaders import make_loader
from snnkd_cli.evaluation.early_exit import DynamicOptions, ExitTrace, choose_threshold
from snnkd_cli.evaluation.sweep import sweep

FLOORS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
TRACE_FIELDS = ("confidence", "entropy", "pred", "target")


def traces(path: Path, cache: Path, threads: int | None = None) -> dict:
    """``{"val": ExitTrace, "calib": ExitTrace, "held_out": bool, "T": int}`` of one student (cached)."""
    key = cache / (str(path.resolve()).strip("/").replace("/", "__") + f"-{path.stat().st_mtime_ns}.pt")
    if key.exists():
        d = torch.load(key)
        return {**d, "val": ExitTrace(*d["val"]), "calib": ExitTrace(*d["calib"])}
    ckpt = load_checkpoint(path)
    cfg = ckpt.config
    model = model_from_checkpoint(ckpt)
    _, val, info = build_datasets(cfg.data, train=False)
    opts = DynamicOptions().resolve(cfg.data.calib_holdout)
    calib = calibration_split(cfg.data, opts.calib_fraction)
    T = cfg.train.T
    kw = {"temporal": info.temporal, "precision": "fp32"}
    out = {"held_out": opts.calib_held_out, "T": T}
    for name, ds in (("val", val), ("calib", calib)):
        loader = make_loader(ds, cfg.train.batch_size, train=False, workers=0, seed=0, device=torch.device("cpu"))
        out[name] = sweep(model, loader, T, keep_trace=True, **kw).trace
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({**out, **{k: [getattr(out[k], f) for f in TRACE_FIELDS] for k in ("val", "calib")}}, key)
    return out


def choose(rule: str, calib: ExitTrace, held_out: bool, max_drop: float, grid: list[float]) -> float | None:
    """The threshold ``rule`` picks on the calibration trace (None: run every step)."""
    points = [calib.evaluate(t) for t in grid]
    T = calib.max_T
    if rule == "best":
        reference = max(calib.fixed_top1(t) for t in range(1, T + 1))
    else:
        reference = calib.fixed_top1(T)
    pick = choose_threshold(points, reference, max_drop)
    if pick is None:
        return None  # no threshold keeps the drop: run every step
    if rule.startswith("floor-") and not held_out:
        return max(pick["threshold"], float(rule.split("-", 1)[1]))
    return pick["threshold"]


def measure(students: dict[str, Path], rules: list[str], max_drop: float, cache: Path) -> list[dict]:
    """One record per (student, rule): validation top-1 and mean T at the chosen threshold, best fixed T."""
    grid = DynamicOptions().grid()
    rows = []
    for name, path in students.items():
        t = traces(path, cache)
        val = t["val"]
        fixed = [val.fixed_top1(k) for k in range(1, val.max_T + 1)]
        for rule in rules:
            threshold = choose(rule, t["calib"], t["held_out"], max_drop, grid)
            at = val.evaluate(threshold)
            rows.append({"student": name, "set": Path(name).parts[0], "rule": rule, "threshold": threshold,
                         "top1": at["top1"], "mean_T": at["mean_T"], "best_fixed": max(fixed), "tmax_top1": fixed[-1],
                         "gap": at["top1"] - max(fixed), "held_out": t["held_out"]})  # fmt: skip
    return rows


def find_students(roots: list[str]) -> dict[str, Path]:
    """``{"<set>/<run>/<student>": path}`` for every student checkpoint under the roots."""
    found = {}
    for root in map(Path, roots):
        for p in sorted(root.rglob("best.safetensors")):
            if "teacher" in p.parent.name:
                continue
            rel = p.parent.relative_to(root)
            name = "/".join([rel.parts[0] if len(rel.parts) > 1 else root.name, root.name, rel.parts[-1]])
            found[name] = p
    return found


def summary(rows: list[dict], max_drop: float) -> str:
    """Per rule: per set the mean gap (exit - best fixed T) and mean T, and over all students."""
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    sets = list(dict.fromkeys(r["set"] for r in rows))
    head = "| rule | " + " | ".join(f"{s}: gap / mean T" for s in sets) + " | worst set | students within |"
    lines = [head, "|---" * (len(sets) + 3) + "|"]
    for rule in rules:
        cells, worst = [], 0.0
        mine = [r for r in rows if r["rule"] == rule]
        for s in sets:
            g = [r["gap"] for r in mine if r["set"] == s]
            m = [r["mean_T"] for r in mine if r["set"] == s]
            worst = min(worst, statistics.fmean(g))
            cells.append(f"{statistics.fmean(g):+.2f} / {statistics.fmean(m):.2f}")
        within = sum(r["gap"] >= -max_drop - 1e-9 for r in mine)
        lines.append(f"| {rule} | " + " | ".join(cells) + f" | {worst:+.2f} | {within}/{len(mine)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="*", help="student checkpoints (as well as those under --runs)")
    ap.add_argument("--runs", nargs="*", default=[], help="folders searched for students' best.safetensors")
    ap.add_argument("--max-drop", type=float, default=0.5, help="points below the reference a rule may give up")
    ap.add_argument("--rules", nargs="*", default=["tmax", "best", *(f"floor-{f:g}" for f in FLOORS)],
                    help="rules to compare: tmax, best, floor-X")  # fmt: skip
    ap.add_argument("--cache", default="runs/exit-traces", help="where the per-student traces are kept")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--json", default=None, help="write every (student, rule) record here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    students = find_students(args.runs) | {str(p): Path(p) for p in args.checkpoints}
    if not students:
        raise SystemExit("error: no student checkpoint given or found under --runs")
    rows = measure(students, args.rules, args.max_drop, Path(args.cache))
    print(summary(rows, args.max_drop))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
