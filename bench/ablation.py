"""The paper's loss ablation at small scale: twce, standard-kd and full-range, same teacher and budget.

For every dataset (default: the built-in ``synthetic`` and ``synthetic-dvs``) one ANN teacher is
trained, then one spiking student per (loss, seed) with the same recipe, and each student's best
checkpoint is swept over T = 1..max-T in one pass (``eval-sweep``). The script writes

* ``OUT/results.json``: every run's sweep (and the teacher's accuracy);
* the tables (mean and standard deviation over seeds at each T) into ``--doc`` between the
  markers ``<!-- ablation:start -->`` and ``<!-- ablation:end -->`` (``--marker``; the rest of
  the file is kept);
* a PNG plot per dataset next to ``--doc`` when matplotlib is installed (``pip install -e '.[plot]'``).

``--precision fp32 bf16`` runs the whole grid at each precision (the check behind the default).

Usage: ``python bench/ablation.py [--datasets synthetic synthetic-dvs] [--seeds 0 1 2]
[--losses twce standard-kd full-range] [--precision bf16] [--out runs/ablation] [--doc docs/results.md]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from snnkd_cli.config import from_preset
from snnkd_cli.evaluation.evaluate import evaluate_checkpoint
from snnkd_cli.train.run import train

# the budget per dataset: teacher epochs, student epochs, training T, sweep max-T
BUDGET = {"synthetic": (8, 10, 4, 8), "synthetic-dvs": (6, 6, 8, 8)}


def _save(results: dict, out: Path) -> None:
    """Write ``OUT/results.json`` (after every run, so a stopped grid keeps what it finished)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


def _earlier(args: argparse.Namespace) -> dict:
    """With ``--continue``, the runs of ``OUT/results.json`` whose checkpoints are still there."""
    path = Path(args.out) / "results.json"
    if not (args.resume and path.exists()):
        return {"runs": [], "teachers": []}
    old = json.loads(path.read_text())
    keep = [r for r in old.get("runs", []) if Path(r["path"]).exists()]
    return {"runs": keep, "teachers": [t for t in old.get("teachers", []) if Path(t["path"]).exists()]}


def run_grid(args: argparse.Namespace) -> dict:
    """Train and sweep every (dataset, precision, loss, seed); return the results as plain data."""
    results: dict = {**_earlier(args), "args": vars(args), "torch": torch.__version__}
    results["machine"] = platform.processor() or platform.machine()
    for dataset in args.datasets:
        t_epochs, s_epochs, T, max_T = BUDGET.get(dataset, (None, None, None, None))
        max_T = args.max_T or max_T
        for precision in args.precision:
            base = Path(args.out) / dataset / precision
            t0 = time.perf_counter()
            done = [t for t in results["teachers"] if (t["dataset"], t["precision"]) == (dataset, precision)]
            if done:
                t_path = Path(done[0]["path"])
                print(f"{dataset} {precision} teacher {done[0]['top1']:.1f}% (kept)")
            else:
                t_cfg = from_preset("teacher", dataset, epochs=t_epochs, precision=precision, out=str(base / "teacher"))
                t_path = train(t_cfg, overwrite=True).best_path  # the grid owns its folders
                _, t_sweep = evaluate_checkpoint(t_path)
                t_top1 = t_sweep.rows[0]["top1"]
                results["teachers"].append(
                    {"dataset": dataset, "precision": precision, "top1": t_top1, "path": str(t_path)}
                )
                _save(results, Path(args.out))
                print(f"{dataset} {precision} teacher {t_top1:.1f}% ({time.perf_counter() - t0:.0f}s)")
            for loss in args.losses:
                for seed in args.seeds:
                    key = (dataset, precision, loss, seed)
                    if any((r["dataset"], r["precision"], r["loss"], r["seed"]) == key for r in results["runs"]):
                        print(f"  {loss:12s} seed {seed}: kept")
                        continue
                    t0 = time.perf_counter()
                    s_cfg = from_preset(
                        "distill",
                        dataset,
                        epochs=s_epochs,
                        T=T,
                        loss=loss,
                        seed=seed,
                        precision=precision,
                        teacher=str(t_path),
                        out=str(base / f"{loss}-seed{seed}"),
                    )
                    student = train(s_cfg, overwrite=True)
                    _, sw = evaluate_checkpoint(student.best_path, max_T)
                    top1 = [r["top1"] for r in sw.rows]
                    results["runs"].append(
                        {
                            "dataset": dataset,
                            "precision": precision,
                            "loss": loss,
                            "seed": seed,
                            "train_T": T,
                            "top1": top1,
                            "path": str(student.best_path),
                            "seconds": time.perf_counter() - t0,
                        }
                    )
                    _save(results, Path(args.out))
                    print(f"  {loss:12s} seed {seed}: " + " ".join(f"{v:.1f}" for v in top1))
    return results


def _stats(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f}"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def markdown(results: dict, marker: str = "ablation") -> str:
    """The tables: per (dataset, precision), one row per loss, mean ± std over seeds at each T."""
    start, end = markers(marker)
    out = [start, ""]
    groups = sorted({(r["dataset"], r["precision"]) for r in results["runs"]}, key=str)
    for dataset, precision in groups:
        runs = [r for r in results["runs"] if (r["dataset"], r["precision"]) == (dataset, precision)]
        teacher = next(t for t in results["teachers"] if (t["dataset"], t["precision"]) == (dataset, precision))
        max_T = len(runs[0]["top1"])
        seeds = sorted({r["seed"] for r in runs})
        out.append(
            f"### {dataset}, {precision}: student top-1 (%) at each T, trained at T={runs[0]['train_T']} "
            f"(mean ± std over seeds {', '.join(map(str, seeds))}; ANN teacher {teacher['top1']:.1f})"
        )
        out.append("")
        out.append("| loss | " + " | ".join(f"T={t}" for t in range(1, max_T + 1)) + " | mean over T |")
        out.append("|---" * (max_T + 2) + "|")
        for loss in dict.fromkeys(r["loss"] for r in runs):
            mine = [r["top1"] for r in runs if r["loss"] == loss]
            cells = [_stats([m[t] for m in mine]) for t in range(max_T)]
            out.append(f"| {loss} | " + " | ".join(cells) + f" | {_stats([statistics.fmean(m) for m in mine])} |")
        out.append("")
    out.append(end)
    return "\n".join(out)


def write_doc(doc: Path, table: str, marker: str = "ablation") -> None:
    """Replace the marked block of ``doc`` with ``table`` (append it if the markers are missing)."""
    start, end = markers(marker)
    text = doc.read_text() if doc.exists() else "# Results\n\n"
    if start in text and end in text:
        text = text[: text.index(start)] + table + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + table + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def plot(results: dict, folder: Path, prefix: str = "ablation") -> list[Path]:
    """One PNG per (dataset, precision): top-1 against T, one line per loss (mean, std band)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[plot]')")
        return []
    written = []
    for dataset, precision in sorted({(r["dataset"], r["precision"]) for r in results["runs"]}, key=str):
        runs = [r for r in results["runs"] if (r["dataset"], r["precision"]) == (dataset, precision)]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for loss in dict.fromkeys(r["loss"] for r in runs):
            curves = torch.tensor([r["top1"] for r in runs if r["loss"] == loss])
            Ts = range(1, curves.shape[1] + 1)
            mean = curves.mean(0)
            std = curves.std(0) if len(curves) > 1 else torch.zeros_like(mean)
            ax.plot(Ts, mean, marker="o", label=loss)
            ax.fill_between(Ts, mean - std, mean + std, alpha=0.2)
        ax.set(xlabel="timesteps T at inference", ylabel="top-1 (%)", title=f"{dataset} ({precision})")
        ax.grid(alpha=0.3)
        ax.legend()
        path = folder / f"{prefix}-{dataset}-{precision}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["synthetic", "synthetic-dvs"])
    ap.add_argument("--losses", nargs="+", default=["twce", "standard-kd", "full-range"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--precision", nargs="+", default=["bf16"], help="one grid per precision")
    ap.add_argument("--max-T", type=int, default=None, help="sweep T = 1..max-T (default: 8)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--out", default="runs/ablation", help="checkpoints and results.json")
    ap.add_argument("--doc", default="docs/results.md", help="markdown file whose ablation block is rewritten")
    ap.add_argument("--from-json", help="only rewrite the doc and plots from an earlier results.json")
    ap.add_argument("--marker", default="ablation", help="name of the block in --doc (<!-- NAME:start -->)")
    ap.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="keep the finished runs of OUT/results.json (results.json is written after every run)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
    else:
        t0 = time.perf_counter()
        results = run_grid(args)
        results["seconds"] = time.perf_counter() - t0
        _save(results, Path(args.out))
    doc = Path(args.doc)
    write_doc(doc, markdown(results, args.marker), args.marker)
    for p in plot(results, doc.parent, args.marker):
        print(f"wrote {p}")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
