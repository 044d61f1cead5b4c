"""What a choice costs: students of earlier ``bench/parity.py`` runs side by side, paired by seed.

Each ``--run LABEL=RESULTS[:LOSS]`` names one variant: the snnkd students of loss ``LOSS`` (default
``full-range``) in a parity ``results.json``. The first is the base. The table has one row per variant
(top-1 at each T, mean ± std over seeds; its early exit against the best fixed T) and one row per
other variant with its difference from the base, seed by seed on the seeds both have (mean ± std of
the paired differences), so a teacher shared by two variants does not count as spread.

Usage: ``python bench/compare.py --run default=runs/d32/digits32/results.json --run
twce=runs/d32/digits32/results.json:twce --run skip=runs/d32-skip/digits32/results.json [--doc
docs/results.md --marker NAME]`` (without ``--doc`` the table is only printed).
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


def load(spec: str) -> tuple[str, dict[int, dict]]:
    """``LABEL=RESULTS[:LOSS]`` -> (label, {seed: run}) of snnkd's students of that loss."""
    label, sep, rest = spec.partition("=")
    if not sep or not label:
        raise SystemExit(f"error: --run {spec!r}: write LABEL=RESULTS.json[:LOSS]")
    path, loss = rest, "full-range"
    if ".json:" in rest:
        path, _, loss = rest.rpartition(":")
    if not Path(path).exists():
        raise SystemExit(f"error: --run {label}: no {path}")
    runs = json.loads(Path(path).read_text())["runs"]
    mine = {r["seed"]: r for r in runs if r["side"] == "snnkd" and r["loss"] == loss}
    if not mine:
        raise SystemExit(f"error: --run {label}: {path} has no snnkd student with loss {loss}")
    return label, mine


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


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=RESULTS[:LOSS]",
                    help="a variant: snnkd's students of LOSS (default full-range) in a parity results.json; "
                         "the first is the base")  # fmt: skip
    ap.add_argument("--doc", default=None, help="markdown file whose marked block is rewritten (default: print only)")
    ap.add_argument("--marker", default="compare", help="name of the block in --doc (<!-- NAME:start -->)")
    args = ap.parse_args(argv)
    variants = [load(spec) for spec in args.run]
    start, end = ablation.markers(args.marker)
    command = "python bench/compare.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join([start, "", f"`{command}`", "", *table(variants), "", end])
    print(text)
    if args.doc:
        ablation.write_doc(Path(args.doc), text, args.marker)
    return text


if __name__ == "__main__":
    main()
