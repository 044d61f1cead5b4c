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

``--suite [SET ...]`` runs the three losses on ``bench/parity.py``'s suite of real sets instead (every set of
its ``SUITE`` by default) through that script, snnkd's side only, with each set's own data and budget: its runs
land in ``OUT/<set>/results.json`` as parity.py writes them (continued when rerun, a seed's teacher shared by
its losses). One table goes into ``--doc`` (``--marker``, default ``ablation-suite``): per set each loss (mean
± std over seeds at each T), full-range minus TWCE and minus standard KD paired by seed, and whether full-range
is at least TWCE at every T and at least standard KD at T=1 within the spread (issue 23 item 6).

Usage: ``python bench/ablation.py [--datasets synthetic synthetic-dvs] [--seeds 0 1 2]
[--losses twce standard-kd full-range] [--precision bf16] [--out runs/ablation] [--doc docs/results.md]``;
``python bench/ablation.py --suite [SET ...] [--seeds 0 1 2] [--threads N] [--out runs/ablation-suite]
[--teachers-from DIR] [--student-set KEY=VALUE] [--snnkd-set KEY=VALUE] [--data-root data] [--no-doc]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import sys
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


# --------------------------------------------------------------------------- the suite of real sets


def _bench(name: str):
    """The sibling ``bench/NAME.py``, loaded on first use and registered in ``sys.modules`` before it runs (its
    dataclasses look their module up there). Never at import: parity.py loads this file, so that would be a cycle."""
    path = Path(__file__).resolve().with_name(f"{name}.py")
    mod = sys.modules.get(name)
    if mod is not None and Path(getattr(mod, "__file__", "") or "").resolve() == path:
        return mod
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


# issue 23 item 6: full-range at least each of these losses, at every T (None) or at the given T
CLAIMS = {"twce": None, "standard-kd": 1}


def at_least(diffs: list[float]) -> bool:
    """A paired difference is "at least 0 within the spread" when its mean is at least minus its sample std
    (one seed: at least 0)."""
    return statistics.fmean(diffs) >= -(statistics.stdev(diffs) if len(diffs) > 1 else 0.0)


def suite_argv(args: argparse.Namespace) -> list[str]:
    """The ``bench/parity.py`` command line that runs the grid: its suite, snnkd's side, the losses, no doc."""
    argv = ["--suite", *args.suite, "--sides", "snnkd", "--losses", *args.losses, "--seeds", *map(str, args.seeds)]
    argv += ["--out", args.out, "--data-root", args.data_root, "--no-doc"]
    for flag, items in (("--snnkd-set", args.snnkd_set), ("--student-set", args.student_set)):
        for item in items:
            argv += [flag, item]
    argv += ["--teachers-from", args.teachers_from] if args.teachers_from else []
    return argv + (["--threads", str(args.threads)] if args.threads else [])


def run_suite(args: argparse.Namespace, command: str) -> dict[str, dict]:
    """Every set of ``args.suite`` through ``bench/parity.py --suite`` (each in ``OUT/<set>``), then one table."""
    parity = _bench("parity")
    done = parity.main(suite_argv(args))
    table = suite_markdown(done, command, args.marker, args.losses, args.seeds)
    print(table)
    if not args.no_doc:
        write_doc(Path(args.doc), table, args.marker)
        print(f"wrote {args.doc}")
    return done


def suite_markdown(done: dict[str, dict], command: str, marker: str, losses: list[str], seeds: list[int]) -> str:
    """One table over the sets of ``done`` (``{set: parity results}``): per set each loss's snnkd students (mean ±
    std over ``seeds`` at each T and of each seed's mean over T), then full-range minus TWCE and minus standard
    KD paired by seed (``compare.paired``), with whether full-range is at least that loss (``CLAIMS``)."""
    start, end = markers(marker)
    by_set = {}  # set -> loss -> seed -> run (snnkd's students of the asked losses and seeds)
    for name, res in done.items():
        mine = [r for r in res["runs"] if r["side"] == "snnkd" and r["loss"] in losses and r["seed"] in seeds]
        by_set[name] = {loss: {r["seed"]: r for r in mine if r["loss"] == loss} for loss in losses}
    max_T = max((len(r["top1"]) for by in by_set.values() for run in by.values() for r in run.values()), default=1)
    lines = [start, "", f"`{command}`", "",
             "snnkd's students of each loss (top-1 %, mean ± std over seeds), then full-range minus each other loss "
             "paired by seed (mean ± std of the per-seed differences; a seed's students share its teacher):", "",
             "| set | student | seeds | " + " | ".join(f"T={t}" for t in range(1, max_T + 1))
             + " | mean over T | full-range at least it |", "|---" * (max_T + 5) + "|"]  # fmt: skip
    verdicts, teachers = [], []
    for name, by_loss in by_set.items():
        if any(by_loss.values()):
            rows, verdict = _set_rows(name, by_loss, max_T)
            lines += rows
            verdicts.append(verdict)
        t1 = [t["top1"] for t in done[name].get("teachers", []) if t["side"] == "snnkd" and t["seed"] in seeds]
        teachers += [f"{name} {_bench('compare')._stats(t1)}"] if t1 else []
    lines += ["", "Issue 23 item 6 (full-range at least TWCE at every T and at least standard KD at T=1, within the "
              "spread: the mean paired difference at least minus its std): " + ("; ".join(verdicts) or "no students")
              + "."]  # fmt: skip
    if teachers:
        lines.append(f"snnkd's ANN teachers (one per seed, shared by its students): {', '.join(teachers)}.")
    return "\n".join([*lines, "", end])


def _set_rows(name: str, by_loss: dict[str, dict[int, dict]], max_T: int) -> tuple[list[str], str]:
    """One set's rows of the suite table (each loss, then full-range minus each loss of ``CLAIMS``; the cells past
    the set's own T left empty, as ``parity.suite_markdown`` does) and its verdict on ``CLAIMS``."""
    compare = _bench("compare")
    n = min(len(r["top1"]) for run in by_loss.values() for r in run.values())  # this set's T = 1..n
    pad = [""] * (max_T - n)
    rows = []
    for loss, run in by_loss.items():
        if run:
            cells = [compare._stats([r["top1"][t] for r in run.values()]) for t in range(n)]
            mean = compare._stats([statistics.fmean(r["top1"][:n]) for r in run.values()])
            rows.append(f"| {name} | {loss} | {','.join(map(str, sorted(run)))} | " + " | ".join(cells + pad)
                        + f" | {mean} | |")  # fmt: skip
    failed, missing = [], []
    for other, at in CLAIMS.items():
        seeds, diff, per_seed = compare.paired(by_loss.get("full-range", {}), by_loss.get(other, {}), n)
        if not seeds:
            missing.append(other)
            continue
        short = ", ".join(f"T={t}" for t in (range(1, n + 1) if at is None else [at]) if not at_least(diff[t - 1]))
        verdict = "yes" if not short else "no" if at is not None else f"no ({short})"
        claim = f"at {'every T' if at is None else f'T={at}'}: {verdict}"
        failed += [f"{other} at {short}"] if short else []
        cells = [compare._stats(d, signed=True) for d in diff]
        rows.append(f"| {name} | full-range - {other} | {','.join(map(str, seeds))} | " + " | ".join(cells + pad)
                    + f" | {compare._stats(per_seed, signed=True)} | {claim} |")  # fmt: skip
    if failed:
        return rows, f"fails on {name} ({'; '.join(failed)})"
    if missing:
        return rows, f"not decided on {name} (no full-range and {' / '.join(missing)} students of the same seeds)"
    return rows, f"holds on {name}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=None,
                    help="built-in datasets (default: synthetic synthetic-dvs; not with --suite)")  # fmt: skip
    ap.add_argument("--losses", nargs="+", default=["twce", "standard-kd", "full-range"], help="student losses")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                    help="student seeds (with --suite, a teacher per seed too)")  # fmt: skip
    ap.add_argument("--precision", nargs="+", default=None,
                    help="one grid per precision (default: bf16; not with --suite, where --snnkd-set "
                         "precision=fp32 sets it)")  # fmt: skip
    ap.add_argument("--max-T", type=int, default=None, help="sweep T = 1..max-T (default: 8; not with --suite)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--out", default=None,
                    help="checkpoints and results.json (default: runs/ablation; --suite: runs/ablation-suite, "
                         "one OUT/<set> per set)")  # fmt: skip
    ap.add_argument("--doc", default="docs/results.md", help="markdown file whose ablation block is rewritten")
    ap.add_argument("--from-json", help="only rewrite the doc and plots from an earlier results.json")
    ap.add_argument("--marker", default=None,
                    help="name of the block in --doc (<!-- NAME:start -->; default: ablation, with --suite: "
                         "ablation-suite)")  # fmt: skip
    ap.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="keep the finished runs of OUT/results.json (results.json is written after every run)",
    )
    ap.add_argument("--no-doc", action="store_true", help="print the tables only (no --doc, no plots)")
    ap.add_argument("--suite", nargs="*", default=None, metavar="SET",
                    help="run the losses with snnkd on bench/parity.py's suite of real sets instead (every "
                         "set of its SUITE, or the SETs named), each with its own data and budget; a rerun "
                         "continues")  # fmt: skip
    ap.add_argument("--teachers-from", default=None, metavar="DIR",
                    help="--suite: snnkd's teachers from an earlier --out (DIR/<set>/snnkd-teacher-seedS/"
                         "best.safetensors), used as they are instead of trained")  # fmt: skip
    ap.add_argument("--student-set", action="append", default=[], metavar="KEY=VALUE",
                    help="--suite: an extra snnkd config field for every student (schedule=cosine-step)")  # fmt: skip
    ap.add_argument("--snnkd-set", action="append", default=[], metavar="KEY=VALUE",
                    help="--suite: an extra snnkd config field for teachers and students (precision=fp32)")  # fmt: skip
    ap.add_argument("--data-root", default=None, help="--suite: where the sets are made and read (default: data)")
    args = ap.parse_args(argv)
    command = "python bench/ablation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.suite is not None:
        given = {"--datasets": args.datasets, "--precision": args.precision, "--max-T": args.max_T,
                 "--from-json": args.from_json, "--continue": args.resume}  # fmt: skip
        if any(given.values()):
            ap.error(f"{', '.join(k for k, v in given.items() if v)}: not with --suite (each set's budget is "
                     "bench/parity.py's SUITE; rerunning the same command continues its grid)")  # fmt: skip
        suite = _bench("parity").SUITE
        if unknown := [name for name in args.suite if name not in suite]:
            ap.error(f"--suite: no set {', '.join(unknown)} (the sets: {', '.join(suite)})")
        args.suite = args.suite or list(suite)
        args.out, args.marker = args.out or "runs/ablation-suite", args.marker or "ablation-suite"
        args.data_root = args.data_root or "data"
        if args.threads:
            torch.set_num_threads(args.threads)
        run_suite(args, command)
        return
    given = {"--teachers-from": args.teachers_from, "--student-set": args.student_set,
             "--snnkd-set": args.snnkd_set, "--data-root": args.data_root}  # fmt: skip
    if any(given.values()):
        ap.error(f"{', '.join(k for k, v in given.items() if v)}: only with --suite")
    args.datasets = args.datasets or ["synthetic", "synthetic-dvs"]
    args.precision = args.precision or ["bf16"]
    args.out, args.marker = args.out or "runs/ablation", args.marker or "ablation"
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
    if args.no_doc:
        print(markdown(results, args.marker))
        return
    write_doc(doc, markdown(results, args.marker), args.marker)
    for p in plot(results, doc.parent, args.marker):
        print(f"wrote {p}")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
