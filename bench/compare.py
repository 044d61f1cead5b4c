"""What a choice costs: students of earlier ``bench/parity.py`` runs side by side, paired by seed.

Each ``--run LABEL=RESULTS[:LOSS]`` names one variant: the snnkd students of loss ``LOSS`` (default
``full-range``) in a parity ``results.json``. The first is the base. The table has one row per variant
(top-1 at each T, mean ± std over seeds; its early exit against the best fixed T) and one row per
other variant with its difference from the base, seed by seed on the seeds both have (mean ± std of
the paired differences), so a teacher shared by two variants does not count as spread.

``--run LABEL=RESULTS:LOSS:SIDE`` takes another side's students (``ref``, ``ref-step``). With ``--suite`` each
``--run`` is a ``bench/parity.py --suite`` output folder and the table has one column per set: what each
variant's choice costs on every set of the suite, paired by seed.

Usage: ``python bench/compare.py --run default=runs/d32/digits32/results.json --run
twce=runs/d32/digits32/results.json:twce --run skip=runs/d32-skip/digits32/results.json [--doc
docs/results.md --marker NAME]`` (without ``--doc`` the table is only printed); ``python bench/compare.py --suite
--run step=runs/S --run epoch=runs/E``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import ablation  # noqa: E402


def _stats(values: list[float], signed: bool = False) -> str:
    f = "+.1f" if signed else ".1f"
    mean = statistics.fmean(values)
    return f"{mean:{f}} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:{f}}"


def parse(spec: str, what: str = "RESULTS.json") -> tuple[str, str, str, str]:
    """``LABEL=PATH[:LOSS[:SIDE]]`` -> (label, path, loss (default full-range), side (default snnkd))."""
    label, sep, rest = spec.partition("=")
    if not sep or not label:
        raise SystemExit(f"error: --run {spec!r}: write LABEL={what}[:LOSS[:SIDE]]")
    path, *tail = rest.split(":")
    if len(tail) > 2:
        raise SystemExit(f"error: --run {spec!r}: write LABEL={what}[:LOSS[:SIDE]]")
    loss, side = (tail + ["", ""])[:2]
    return label, path, loss or "full-range", side or "snnkd"


def students(path: Path, label: str, loss: str, side: str) -> dict[int, dict]:
    """{seed: run} of the students of ``loss`` on ``side`` in a parity ``results.json``."""
    runs = json.loads(path.read_text())["runs"]
    mine = {r["seed"]: r for r in runs if r["side"] == side and r["loss"] == loss}
    if not mine:
        raise SystemExit(f"error: --run {label}: {path} has no {side} student with loss {loss}")
    return mine


def load(spec: str) -> tuple[str, dict[int, dict]]:
    """``LABEL=RESULTS[:LOSS[:SIDE]]`` -> (label, {seed: run}) of that side's (default snnkd's) students of that
    loss (default full-range)."""
    label, path, loss, side = parse(spec)
    if not Path(path).exists():
        raise SystemExit(f"error: --run {label}: no {path}")
    return label, students(Path(path), label, loss, side)


def exit_gap(r: dict) -> float | None:
    """The default early exit's top-1 minus the best fixed T's (None if the run has no exit record)."""
    return r["exit"]["top1"] - r["exit"]["best_fixed_top1"] if r.get("exit") else None


def paired(
    runs: dict[int, dict], base: dict[int, dict], max_T: int
) -> tuple[list[int], list[list[float]], list[float]]:
    """``runs`` minus ``base`` seed by seed on the seeds both have: (those seeds, the differences at each T
    (``[T][seed]``), each seed's mean difference over the ``max_T`` steps)."""
    seeds = sorted(set(runs) & set(base))
    diff = [[runs[s]["top1"][t] - base[s]["top1"][t] for s in seeds] for t in range(max_T)]
    return seeds, diff, [statistics.fmean(d[i] for d in diff) for i in range(len(seeds))]


def table(variants: list[tuple[str, dict[int, dict]]]) -> list[str]:
    """The rows: each variant (mean ± std over its seeds), then each one minus the base, paired by seed."""
    max_T = min(len(r["top1"]) for _, runs in variants for r in runs.values())
    head = "| student | seeds | " + " | ".join(f"T={t}" for t in range(1, max_T + 1))
    lines = [head + " | mean | exit - best fixed T |", "|---" * (max_T + 4) + "|"]
    for label, runs in variants:
        seeds = sorted(runs)
        cells = [_stats([runs[s]["top1"][t] for s in seeds]) for t in range(max_T)]
        mean = statistics.fmean(statistics.fmean(runs[s]["top1"][:max_T]) for s in seeds)
        gaps = [g for s in seeds if (g := exit_gap(runs[s])) is not None]
        ex = _stats(gaps, signed=True) if gaps else ""
        lines.append(f"| {label} | {','.join(map(str, seeds))} | " + " | ".join(cells) + f" | {mean:.1f} | {ex} |")
    base_label, base = variants[0]
    for label, runs in variants[1:]:
        seeds, diff, mean = paired(runs, base, max_T)  # mean: per seed, over T
        if not seeds:
            continue
        cells = [_stats(d, signed=True) for d in diff]
        lines.append(f"| {label} - {base_label} | {','.join(map(str, seeds))} | " + " | ".join(cells)
                     + f" | {_stats(mean, signed=True)} | |")  # fmt: skip
    return lines


def suite_table(specs: list[str]) -> list[str]:
    """``--suite``: each ``--run LABEL=DIR[:LOSS[:SIDE]]`` is a ``bench/parity.py --suite`` output folder
    (``DIR/<set>/results.json``). One row of the base's mean over T per set, then one row per other variant: per
    set, its mean over T minus the base's, paired by seed (mean ± std of the per-seed differences) and the same
    at T=1; a set missing from a variant's folder is left empty."""
    parsed = [parse(spec, "DIR") for spec in specs]
    for label, path, _, _ in parsed:
        if not Path(path).is_dir():
            raise SystemExit(f"error: --run {label}: no folder {path}")
    base_label, base_dir, base_loss, base_side = parsed[0]
    sets = sorted(p.parent.name for p in Path(base_dir).glob("*/results.json"))
    if not sets:
        raise SystemExit(f"error: --run {base_label}: no <set>/results.json under {base_dir}")
    base = {s: students(Path(base_dir) / s / "results.json", base_label, base_loss, base_side) for s in sets}
    lines = ["| variant | " + " | ".join(sets) + " |", "|---" * (len(sets) + 1) + "|"]
    cells = []
    for s in sets:
        n = min(len(r["top1"]) for r in base[s].values())
        cells.append(_stats([statistics.fmean(r["top1"][:n]) for r in base[s].values()]))
    lines.append(f"| {base_label} (mean over T) | " + " | ".join(cells) + " |")
    for label, path, loss, side in parsed[1:]:
        cells = []
        for s in sets:
            file = Path(path) / s / "results.json"
            if not file.exists():
                cells.append("")
                continue
            runs = students(file, label, loss, side)
            n = min(len(r["top1"]) for r in [*runs.values(), *base[s].values()])
            seeds, diff, per_seed = paired(runs, base[s], n)
            cells.append(f"{_stats(per_seed, signed=True)} (T=1 {_stats(diff[0], signed=True)})" if seeds else "")
        lines.append(f"| {label} - {base_label} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=RESULTS[:LOSS[:SIDE]]",
                    help="a variant: the students of LOSS (default full-range) on SIDE (default snnkd; ref, "
                         "ref-step) in a parity results.json (with --suite: a parity --suite output folder); the "
                         "first is the base")  # fmt: skip
    ap.add_argument("--suite", action="store_true",
                    help="each --run names a parity --suite output folder: one row per variant, one column per set "
                         "(the mean over T minus the base's, paired by seed, and the same at T=1)")  # fmt: skip
    ap.add_argument("--doc", default=None, help="markdown file whose marked block is rewritten (default: print only)")
    ap.add_argument("--marker", default="compare", help="name of the block in --doc (<!-- NAME:start -->)")
    args = ap.parse_args(argv)
    rows = suite_table(args.run) if args.suite else table([load(spec) for spec in args.run])
    start, end = ablation.markers(args.marker)
    command = "python bench/compare.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join([start, "", f"`{command}`", "", *rows, "", end])
    print(text)
    if args.doc:
        ablation.write_doc(Path(args.doc), text, args.marker)
    return text


if __name__ == "__main__":
    main()
