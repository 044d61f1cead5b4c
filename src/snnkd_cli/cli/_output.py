"""Everything the commands print or write for people and scripts: Rich tables, JSON, CSV, errors."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from snnkd_cli.checkpoint import Checkpoint
from snnkd_cli.cli._layout import Framed, fits
from snnkd_cli.evaluation.energy import SOURCE as ENERGY_SOURCE
from snnkd_cli.evaluation.sweep import SweepResult
from snnkd_cli.fsutil import STDOUT, atomic_write_bytes

out_console = Console()  # tables: stdout
err_console = Console(stderr=True)  # progress, configuration, messages


def print_error(message: str) -> None:
    """One line on stderr, no traceback."""
    print(f"error: {message}", file=sys.stderr)


def print_note(message: str) -> None:
    """One ``note:`` line on stderr: an option that is valid but will not do what it may seem to."""
    print(f"note: {message}", file=sys.stderr)


def _pct(v: float | None, digits: int = 2) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def sweep_entries(results: list[tuple[Checkpoint, SweepResult]]) -> list[dict]:
    """Plain data for JSON/CSV: one entry per checkpoint (accuracies in percent)."""
    entries = []
    for ckpt, res in results:
        cfg = ckpt.config
        entry = {
            "path": str(ckpt.path),
            "kind": ckpt.kind,
            "arch": cfg.model.arch,
            "dataset": cfg.data.dataset,
            "train_T": cfg.train.T if ckpt.kind == "student" else None,
            "loss": cfg.kd.loss if cfg.kd else None,
            "num_samples": res.num_samples,
            "sweep": res.method,
            "precision": res.precision,
            "results": res.rows,
        }
        if res.energy is not None:
            e = res.energy
            costs = {r["T"]: r for r in e.rows}
            entry["results"] = [{**r, **{k: v for k, v in costs[r["T"]].items() if k != "T"}} for r in res.rows]
            entry["energy"] = {
                "source": e.source,
                "num_samples": e.num_samples,
                "method": e.method,
                "step_energy_uj": e.step_energy_uj,
                "layers": e.layers,
            }
        if res.dynamic is not None:
            entry["dynamic"] = res.dynamic.to_json()
        entries.append(entry)
    return entries


def sweep_table(results: list[tuple[Checkpoint, SweepResult]], first: int = 1) -> Framed:
    """T down the side; per checkpoint #i (from ``first``): top-1, top-5 and, for an SNN, the drop versus its
    best T and the mean spike rate (%). The legend lines say which file #i is."""
    caption = []
    if all(c.kind == "teacher" for c, _ in results):  # an ANN has no timesteps: its one row is "ANN"
        title = f"accuracy of the ANN teacher{'s (one pass each' if len(results) > 1 else ' (one pass'}, no timesteps)"
    elif any(r.method == "reframed" for _, r in results):
        title = "accuracy at every T (recordings re-framed into T frames, one pass per T)"
    elif any(r.method == "per-T" for _, r in results):
        per_t = ", ".join(f"#{i}" for i, (_, r) in enumerate(results, 1) if r.method == "per-T")
        title = f"accuracy at every T (one pass per T for {per_t}, whose steps depend on later steps)"
    else:
        title = "accuracy at every T (one pass, running mean of per-step logits)"
    precisions = sorted({r.precision for _, r in results})
    title += f"; {', '.join(precisions)}"
    table = Table()
    table.add_column("T", justify="right", style="bold", no_wrap=True)
    for i, (ckpt, _) in enumerate(results, first):
        cfg = ckpt.config
        if ckpt.kind == "student":
            desc = f"{cfg.model.arch} SNN, trained at T={cfg.train.T}, loss {cfg.kd.loss if cfg.kd else '?'}"
            cols = (f"#{i} top-1", "top-5", "drop", "spikes %")
        else:
            desc = f"{cfg.model.arch} ANN teacher"
            cols = (f"#{i} top-1", "top-5")
        for col in cols:
            table.add_column(col, justify="right", no_wrap=True)
        caption.append(f"#{i} {ckpt.path}: {desc} ({cfg.data.dataset})")
    max_T = max((len(r.rows) for c, r in results if c.kind == "student"), default=0)
    keys: list[int | None] = list(range(1, max_T + 1))
    if any(c.kind == "teacher" for c, _ in results):
        keys.append(None)
    for key in keys:
        cells = ["ANN" if key is None else str(key)]
        for ckpt, res in results:
            row = next((r for r in res.rows if r["T"] == key), None)
            width = 4 if ckpt.kind == "student" else 2
            if row is None:
                cells += [""] * width
                continue
            best = res.best()["top1"]
            mark = "[green]" if row["top1"] == best and ckpt.kind == "student" else ""
            cells += [f"{mark}{row['top1']:.2f}", _pct(row["top5"])]
            if width == 4:
                rate = None if row["spike_rate"] is None else 100.0 * row["spike_rate"]
                cells += [f"{best - row['top1']:.2f}", _pct(rate, 1)]
        table.add_row(*cells)
    return Framed(table, title, caption)


def cost_table(results: list[tuple[Checkpoint, SweepResult]], first: int = 1) -> Framed:
    """Accuracy versus cost at every T: per checkpoint #i (from ``first``) with ``--energy``, top-1, SynOps
    and MACs per sample (millions) and the energy estimate per sample (µJ); the legend says which file #i is."""
    every_T = "" if all(c.kind == "teacher" for c, _ in results) else " at every T"
    table = Table()
    table.add_column("T", justify="right", style="bold", no_wrap=True)
    caption = []
    for i, (ckpt, res) in enumerate(results, first):
        for col in (f"#{i} top-1", "SynOps M", "MACs M", "energy µJ"):
            table.add_column(col, justify="right", no_wrap=True)
        caption.append(f"#{i} {ckpt.path} ({ckpt.kind}; costs over {res.energy.num_samples} samples)")
    keys = list(dict.fromkeys(r["T"] for _, res in results for r in res.energy.rows))
    keys.sort(key=lambda k: (k is None, k or 0))
    for key in keys:
        cells = ["ANN" if key is None else str(key)]
        for _, res in results:
            cost = next((r for r in res.energy.rows if r["T"] == key), None)
            if cost is None:
                cells += [""] * 4
                continue
            cells += [f"{res.at(key)['top1']:.2f}", f"{cost['synops'] / 1e6:.4g}", f"{cost['macs'] / 1e6:.4g}"]
            cells.append(f"{cost['energy_uj']:.4g}")
        table.add_row(*cells)
    note = f"energy = SynOps x AC + MACs x MAC ({ENERGY_SOURCE}); BatchNorm folded, memory not counted"
    return Framed(table, f"accuracy and cost per sample{every_T} (--energy)", caption, [note])


def layer_table(ckpt: Checkpoint, energy) -> Framed:
    """Spike rate per spiking layer (an :class:`snnkd_cli.evaluation.energy.EnergyResult`), in network order.
    A long layer name folds onto a second line; the numbers are never cut."""
    T = energy.rows[-1]["T"]
    table = Table()
    table.add_column("layer", overflow="fold")
    for col in ("neurons", "spikes %"):
        table.add_column(col, justify="right", no_wrap=True)
    for layer in energy.layers:
        table.add_row(layer["name"], f"{layer['neurons']:,}", f"{100.0 * layer['spike_rate']:.2f}")
    return Framed(table, f"spike rate per layer (T={T}, {energy.num_samples} samples)", [f"checkpoint: {ckpt.path}"])


def _threshold(v: float | None) -> str:
    return "none" if v is None else f"{v:g}"


def dynamic_table(index: int, ckpt: Checkpoint, res: SweepResult, console: Console | None = None) -> Framed:
    """Early exit of checkpoint ``#index``: per threshold, top-1, mean T and the share exiting at each
    step (%), then the fixed runs T=1..Tmax from the same pass; the notes give the chosen threshold.
    The per-step shares are left out (and a note says so) where they would not fit ``console``."""
    framed = _dynamic_table(index, ckpt, res, shares=True)
    if console is not None and not fits(console, framed.table):
        framed = _dynamic_table(index, ckpt, res, shares=False)
        left_out = "the share exiting at each step (@t) is left out at this width: see --json or widen the terminal"
        framed.notes.append(left_out)
    return framed


def _dynamic_table(index: int, ckpt: Checkpoint, res: SweepResult, shares: bool) -> Framed:
    dyn = res.dynamic
    T = dyn.max_T
    sign = ">=" if dyn.rule == "confidence" else "<="
    table = Table()
    table.add_column("threshold", justify="right", style="bold", no_wrap=True)
    table.add_column("top-1", justify="right", no_wrap=True)
    table.add_column("mean T", justify="right", no_wrap=True)
    steps = range(1, T + 1) if shares else range(0)
    for t in steps:
        table.add_column(f"@{t}", justify="right", no_wrap=True)
    energy = res.energy is not None and "energy_rel" in dyn.chosen
    if energy:
        table.add_column(f"energy vs T={T}", justify="right", no_wrap=True)
    chosen = dyn.chosen
    for p in dyn.curve:
        mark = "[green]" if p["threshold"] == chosen["threshold"] else ""
        cells = [f"{mark}{_threshold(p['threshold'])}", f"{mark}{p['top1']:.2f}", f"{p['mean_T']:.2f}"]
        cells += [f"{100 * s:.0f}" for s in p["exit_share"]] if shares else []
        table.add_row(*cells, *([f"{p['energy_rel']:.2f}"] if energy else []))
    table.add_section()
    for row in res.rows:  # the fixed runs, from the same pass
        exits = ["100" if t == row["T"] else "" for t in steps]
        rel = [f"{res.energy.at(row['T'])['energy_uj'] / res.energy.at(T)['energy_uj']:.2f}"] if energy else []
        table.add_row(f"T={row['T']}", f"{row['top1']:.2f}", f"{row['T']:.2f}", *exits, *rel)
    best = res.best()
    if chosen["threshold"] is None:
        pick = f"no threshold kept the calibration top-1 within {dyn.max_drop:g} points of T={T}: run T={T}"
    else:
        pick = (
            f"chosen [green]{_threshold(chosen['threshold'])}[/]: calibration top-1 {chosen['calib_top1']:.2f} "
            f"(T={T}: {dyn.calib_top1_max_T:.2f}, max drop {dyn.max_drop:g}) at mean T {chosen['calib_mean_T']:.2f}"
        )
    seen = "held out from training" if dyn.calib_held_out else "seen in training: distill with --calib-holdout"
    if dyn.seen_floor is not None:
        side = "below" if dyn.rule == "confidence" else "above"
        seen += f"; so no threshold {side} {dyn.seen_floor:g} (--seen-floor)"
    notes = [
        "@t: % of samples exiting at step t; rows T=t: fixed runs of t steps" if shares else "rows T=t: fixed runs",
        Text.from_markup(pick),
        f"calibration: {dyn.calib_samples} samples ({100 * dyn.calib_fraction:g}% of the training split, "
        f"evaluation transforms, fixed seed; {seen})",
        f"evaluation set: early exit {chosen['top1']:.2f} at mean T {chosen['mean_T']:.2f}; fixed T={T} "
        f"{res.at(T)['top1']:.2f}; best fixed {best['top1']:.2f} (T={best['T']})",
    ]
    title = f"early exit #{index} (exit when {dyn.rule} {sign} threshold; all exit at T={T})"
    return Framed(table, title, [f"#{index} {ckpt.path}"], notes)


def predict_table(report, console: Console | None = None) -> Framed:
    """``snnkd predict``: per input the class, its probability and the steps used
    (a :class:`snnkd_cli.inference.predict.PredictReport`). Inputs are printed whole: where the boxed table
    would cut them at ``console``'s width, plain columns list them last, unwrapped."""
    if report.mode == "ann":
        how = "ANN teacher"
    elif report.mode == "fixed":
        how = f"T={report.T}"
    else:
        sign = ">=" if report.rule == "confidence" else "<="
        thr = _threshold(report.threshold)
        how = f"early exit: {report.rule} {sign} {thr} ({report.threshold_source}), up to T={report.T}"
        if report.threshold is None:
            how = f"early exit stored as 'none' (no threshold met the calibration bound): T={report.T}"
    table = Table()
    for col, just in (("input", "left"), ("class", "left"), ("probability", "right"), ("steps", "right")):
        table.add_column(col, justify=just, no_wrap=True)
    rows = [
        (p["input"], p["class"], f"{p['probability']:.4f}", "" if p["steps"] is None else str(p["steps"]))
        for p in report.predictions
    ]
    for row in rows:
        table.add_row(*row)
    notes = [f"checkpoint: {report.checkpoint}"]
    if report.mode == "dynamic" and report.predictions:
        mean = sum(p["steps"] for p in report.predictions) / len(report.predictions)
        notes.insert(0, f"mean steps {mean:.2f} of {report.T}")
    if console is None or fits(console, table):
        return Framed(table, f"predict ({how})", notes)
    # too wide for the boxes: plain columns, the input last and whole (the terminal wraps it)
    w = max([len("class"), *(len(r[1]) for r in rows)])
    lines = [f"{'class':<{w}}  probability  steps  input"]
    lines += [f"{c:<{w}}  {p:>11}  {st:>5}  {i}" for i, c, p, st in rows]
    return Framed(None, f"predict ({how})", [*lines, *notes])


def _write(path: Path | str, text: str) -> None:
    """``text`` to the file ``path`` (atomically), or to standard output for ``-``."""
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_bytes(Path(path), text.encode())
        err_console.print(f"wrote {path}", soft_wrap=True)


def tables_console(*paths: Path | str | None) -> Console:
    """Where the tables go: standard output, or standard error when a file option is ``-`` (stdout)."""
    return err_console if any(str(p) == STDOUT for p in paths if p is not None) else out_console


def write_json(path: Path | str, data: dict) -> None:
    """Indented JSON to ``path`` (``-``: standard output); says where it went on stderr."""
    _write(path, json.dumps(data, indent=2) + "\n")


def write_sweep_csv(path: Path | str, entries: list[dict]) -> None:
    """One row per (checkpoint, T): path, kind, arch, T, top1, top5, spike_rate (+ synops, macs,
    energy_uj with --energy)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    costs = any("energy" in e for e in entries)
    w.writerow(["path", "kind", "arch", "T", "top1", "top5", "spike_rate"] + (["synops", "macs", "energy_uj"] * costs))
    for e in entries:
        for r in e["results"]:
            extra = [f"{r[k]:.6g}" if k in r else "" for k in ("synops", "macs", "energy_uj")] if costs else []
            w.writerow(
                [
                    e["path"],
                    e["kind"],
                    e["arch"],
                    "" if r["T"] is None else r["T"],
                    f"{r['top1']:.4f}",
                    f"{r['top5']:.4f}",
                    "" if r["spike_rate"] is None else f"{r['spike_rate']:.6f}",
                    *extra,
                ]
            )
    _write(path, buf.getvalue())


def preprocess_summary(rep) -> Framed:
    """The summary of ``snnkd preprocess-dvs`` (a :class:`snnkd_cli.data.dvs.PreprocessReport`); paths whole."""
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("files", f"{rep.files:,} ({rep.reused:,} reused from an earlier run)"),
        ("events", f"{rep.events:,}"),
        ("frames", f"{rep.frames:,}"),
        ("split", f"{rep.train:,} train / {rep.val:,} val"),
        ("skipped", f"{len(rep.skipped):,}"),
        ("time", f"{rep.seconds:.1f} s"),
        ("events per second", f"{rep.events_per_second:,.0f} (decoded this run)"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    lines = [f"cache: {rep.cache_dir}"]
    if rep.skipped:
        lines += ["skipped (unreadable):", *(f"  {path}: {why}" for path, why in rep.skipped)]
    return Framed(table, "preprocess-dvs", lines)


def export_table(summary) -> Framed:
    """What ``snnkd export`` wrote and how it was checked (a :class:`snnkd_cli.export.ExportSummary`); the
    file's path whole under the table."""
    table = Table(show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    paths = []
    for label, value in summary.rows():
        if label == "file":
            paths.append(f"file: {value}")
        else:
            table.add_row(label, value)
    return Framed(table, f"export: {summary.format}", paths)


def import_table(report) -> Framed:
    """What ``snnkd import`` wrote (a :class:`snnkd_cli.convert.importer.ImportReport`) and the next command."""
    m, conv = report.config.model, report.converted
    table = Table(show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row("layout", conv.layout.about)
    table.add_row("network", f"{m.num_classes} classes, {m.in_channels} input channels, width {m.width}, {m.stem} stem")
    if m.kind == "snn":
        reset = "soft" if m.soft_reset else "hard"
        table.add_row("student", f"T={report.config.train.T}, LIF decay {m.decay}, {reset} reset")
    table.add_row("tensors", f"{len(conv.model.state_dict())} ({len(conv.renamed)} renamed)")
    table.add_row("data", report.config.data.dataset)
    paths = [f"file: {report.out}", f"next: snnkd eval-sweep {report.out}"]
    return Framed(table, f"import: {report.checkpoint_kind} {m.arch}", paths)


def models_table() -> Framed:
    """Every registered architecture: kind, name, parameters (10 classes, width 64), data, neuron, note."""
    from snnkd_cli.models import create_model, list_models, model_info

    table = Table()
    for col in ("kind", "name", "parameters"):  # never cut a name or a number
        table.add_column(col, justify="right" if col == "parameters" else "left", no_wrap=True)
    table.add_column("input; neuron; note", ratio=1)  # wraps between words
    for entry in list_models():
        kind, name = entry.split("/")
        net = create_model(name, 10, kind=kind)
        n = sum(p.numel() for p in net.parameters())
        info = model_info(kind, name)
        fits = "ImageNet-size images (7x7/2 stem)" if name == "preact_resnet34" else "any: images or events (2 ch)"
        neuron = (
            "ReLU"
            if kind == "ann"
            else ("LIF soft reset, decay 0.2" if name == "preact_resnet34" else "LIF hard reset, decay 0.5 (--decay)")
        )
        about = [info.get("fits", fits), info.get("neuron", neuron), info.get("note", "")]
        table.add_row(kind, name, f"{n / 1e6:.2f} M", "; ".join(a for a in about if a))
    return Framed(table, "registered models (--arch / --student-arch; or package.module:factory)")
