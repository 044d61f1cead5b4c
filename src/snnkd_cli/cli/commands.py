"""What each command does, between parsing (``app.py``) and printing (``_output.py``)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from snnkd_cli.checkpoint import (
    check_outputs,
    check_writable,
    load_checkpoint,
    read_metadata,
    run_files_in,
    store_exit_rule,
)
from snnkd_cli.cli._layout import split_to_fit
from snnkd_cli.cli._output import (
    cost_table,
    dynamic_table,
    err_console,
    export_table,
    layer_table,
    out_console,
    predict_table,
    preprocess_summary,
    print_note,
    sweep_entries,
    sweep_table,
    tables_console,
    write_json,
    write_sweep_csv,
)
from snnkd_cli.cli._training import RunOptions
from snnkd_cli.config import MAX_TRAIN_T, RunConfig, from_preset
from snnkd_cli.dist import is_main_process
from snnkd_cli.errors import SnnkdError
from snnkd_cli.evaluation.early_exit import DynamicOptions, exit_rule_record
from snnkd_cli.evaluation.evaluate import evaluate_checkpoint
from snnkd_cli.fsutil import STDOUT
from snnkd_cli.reporting import RichReporter
from snnkd_cli.train.run import TrainOutcome, train
from snnkd_cli.train.threads import set_threads


def run_training(cfg: RunConfig, run: RunOptions) -> TrainOutcome:
    """Train (teacher or student) as ``run`` says, then print the sweep of the best epoch and where the files are."""
    set_threads(run.threads)
    resume = str(Path(cfg.train.out) / "resume.safetensors") if run.resume == "auto" else run.resume
    outcome = train(
        cfg,
        RichReporter(err_console),
        resume=resume,
        save_every=run.save_every,
        tensorboard=run.tensorboard,
        overwrite=run.overwrite,
    )
    if not is_main_process():  # under torchrun only rank 0 prints
        return outcome
    best = load_checkpoint(outcome.best_path)
    out_console.print(*split_to_fit(out_console, sweep_table, [(best, outcome.fit.best)]), crop=False)
    err_console.print(
        f"best epoch {outcome.fit.best_epoch}: [bold]{outcome.best_path}[/]  (last: {outcome.last_path})",
        soft_wrap=True,
    )
    return outcome


def run_sweep(
    checkpoints: list[Path],
    max_T: int | None,
    dataset: str | None,
    data_dir: str | None,
    batch_size: int | None,
    precision: str | None,
    json_path: Path | None,
    csv_path: Path | None,
    reframe: bool = False,
    energy: int | None = None,
    dynamic: DynamicOptions | None = None,
    save_threshold: bool = False,
    threads: int | None = None,
    overwrite: bool = False,
    chunk_T: int | None = None,
) -> None:
    """Evaluate every checkpoint, then print one table (with ``energy``, an accuracy-versus-cost table
    and the spike rate per layer; with ``dynamic``, one early-exit table per student), write the
    JSON/CSV files asked for and, with ``save_threshold``, store the chosen thresholds.

    ``energy``: count costs on this many samples (None: no energy columns).
    """
    if str(json_path) == str(csv_path) == STDOUT:
        raise SnnkdError("--json - and --csv - cannot both go to standard output: give one of them a file name")
    check_outputs({"json": json_path, "csv": csv_path}, tuple(checkpoints), overwrite)
    tables = tables_console(json_path, csv_path)
    kinds = [read_metadata(p)["kind"] for p in checkpoints]  # every file is a checkpoint before any work
    for p, kind in zip(checkpoints, kinds, strict=True):
        if save_threshold and kind == "student":
            check_writable(p, "--save-threshold")
    set_threads(threads)
    if all(kind == "teacher" for kind in kinds):
        for flag, value in (("--dynamic (early exit)", dynamic), ("--max-T", max_T)):
            if value is not None:
                raise SnnkdError(f"{flag} applies to spiking students: every checkpoint given is an ANN teacher")
    if max_T is not None and max_T > MAX_TRAIN_T:
        print_note(f"--max-T {max_T} runs {max_T} steps on every batch: expect a long sweep")
    kw = {"dataset": dataset, "data_dir": data_dir, "batch_size": batch_size, "precision": precision}
    kw |= {"reframe": reframe, "energy": energy is not None, "energy_samples": energy, "dynamic": dynamic}
    kw["chunk_T"] = chunk_T
    results = [evaluate_checkpoint(p, max_T, **kw) for p in checkpoints]
    tables.print(*split_to_fit(tables, sweep_table, results), crop=False)
    costs = [(c, r) for c, r in results if r.energy is not None]
    if costs:
        tables.print(*split_to_fit(tables, cost_table, costs), crop=False)
    for ckpt, res in costs:
        if res.energy.layers:
            tables.print(layer_table(ckpt, res.energy), crop=False)
    for i, (ckpt, res) in enumerate(results, 1):
        if res.dynamic is not None:
            tables.print(dynamic_table(i, ckpt, res, tables), crop=False)
    if save_threshold:
        for ckpt, res in results:
            if res.dynamic is not None:
                stored = store_exit_rule(ckpt.path, exit_rule_record(res.dynamic))
                err_console.print(
                    f"stored early exit in {ckpt.path}: {stored['rule']} threshold {stored['threshold']}, "
                    f"T <= {stored['max_T']}",
                    soft_wrap=True,
                )
    entries = sweep_entries(results)
    if json_path:
        write_json(json_path, {"checkpoints": entries})
    if csv_path:
        write_sweep_csv(csv_path, entries)


def run_predict(
    checkpoint: Path,
    inputs: list[Path],
    T: int | None,
    dynamic: bool,
    threshold: float | None,
    exit_rule: str | None,
    batch_size: int,
    json_path: Path | None,
    threads: int | None = None,
    overwrite: bool = False,
) -> int:
    """Classify the inputs, print the table and one ``error:`` line per bad input; the exit code (2 if any)."""
    from snnkd_cli.cli._output import print_error
    from snnkd_cli.inference.predict import predict_files

    check_outputs({"json": json_path}, (checkpoint, *inputs), overwrite)
    set_threads(threads)
    report = predict_files(
        checkpoint, inputs, T=T, dynamic=dynamic, threshold=threshold, rule=exit_rule, batch_size=batch_size
    )
    if report.predictions:
        tables = tables_console(json_path)
        tables.print(predict_table(report, tables), crop=False)
    for e in report.errors:
        print_error(e["error"])
    if json_path:
        write_json(json_path, report.to_json())
    return 2 if report.errors else 0


def run_quickstart(
    out: Path,
    teacher_epochs: int,
    student_epochs: int,
    T: int,
    max_T: int,
    precision: str,
    overwrite: bool = False,
    threads: int | None = None,
) -> None:
    """Teacher, full-range student and a T-sweep on the built-in synthetic data."""
    t0 = time.perf_counter()
    set_threads(threads)
    if max_T < 1:
        raise SnnkdError(f"--max-T must be >= 1, got {max_T}")
    for option, value in (("--teacher-epochs", teacher_epochs), ("--student-epochs", student_epochs)):
        if value < 1:
            raise SnnkdError(f"{option} must be >= 1, got {value}")
    sweep_json = out / "sweep.json"  # the quickstart's own files: refused together, replaced with --overwrite
    if not overwrite and (sweep_json.exists() or any(run_files_in(out / sub) for sub in ("teacher", "student"))):
        raise SnnkdError(f"{out} already holds a quickstart run: pass --overwrite to replace it, or another --out")
    # both configurations are checked before anything is trained
    t_cfg = from_preset("teacher", "synthetic", epochs=teacher_epochs, out=str(out / "teacher"), precision=precision)
    s_cfg = from_preset(
        "distill", "synthetic", epochs=student_epochs, T=T, out=str(out / "student"), precision=precision
    )
    err_console.rule("1/3  ANN teacher (resnet18, synthetic)")
    teacher = train(t_cfg, RichReporter(err_console), overwrite=overwrite)
    err_console.rule("2/3  spiking student, full-range distillation")
    s_cfg = dataclasses.replace(s_cfg, kd=dataclasses.replace(s_cfg.kd, teacher=str(teacher.best_path)))
    student = train(s_cfg, RichReporter(err_console), overwrite=overwrite)
    err_console.rule(f"3/3  sweep T = 1..{max_T}")
    run_sweep([student.best_path, teacher.best_path], max_T, None, None, None, None, sweep_json, None, overwrite=True)
    err_console.print(
        f"done in {time.perf_counter() - t0:.0f}s. teacher: {teacher.best_path}  student: {student.best_path}\n"
        f"next: snnkd eval-sweep {student.best_path} --max-T 16",
        soft_wrap=True,
    )


def run_preprocess_dvs(
    src: Path, out: Path, frames: int, split_by: str, size: int, split: str, workers: int, resize: str = "bilinear"
) -> None:
    """Preprocess with a Rich progress bar, then print the summary and the skipped files."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from snnkd_cli.data.dvs import preprocess_dvs

    bar = Progress(
        TextColumn("frames"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    task = None

    def progress(done: int, total: int) -> None:  # the bar starts with the first file (not on bad input)
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("files", total=total)
        bar.update(task, completed=done, total=total)

    try:
        rep = preprocess_dvs(
            src,
            out,
            frames=frames,
            split_by=split_by,
            size=size,
            split=split,
            workers=workers,
            progress=progress,
            resize=resize,
        )
    finally:
        if task is not None:
            bar.stop()
    out_console.print(preprocess_summary(rep), crop=False)
    for name, n in (("validation", rep.val), ("training", rep.train)):
        if n == 0:  # training and evaluation refuse an empty split: say so now, with what to do
            todo = "at least 10 recordings, or --split per-class" if split == "random" else "2 or more per class"
            print_note(f"the {split} split left the {name} split empty ({rep.train} train / {rep.val} val): "
                       f"training and eval-sweep will refuse it; give {todo}")  # fmt: skip


def run_export(checkpoint: Path, fmt: str, out: Path | None, verify_T: int | None, overwrite: bool = False) -> None:
    """Load a checkpoint, export it (the export verifies itself), print what was written."""
    from snnkd_cli.checkpoint import model_from_checkpoint
    from snnkd_cli.config import check_choice
    from snnkd_cli.export import FORMATS, default_out, export_checkpoint

    check_choice(fmt, FORMATS, "export format")
    ckpt = load_checkpoint(checkpoint)
    out = out or default_out(checkpoint, fmt)
    if out.resolve() == Path(checkpoint).resolve():
        raise SnnkdError(f"--out {out} is the checkpoint itself: choose another file")
    check_outputs({"out": out}, (checkpoint,), overwrite)
    err_console.print(f"exporting {checkpoint} ({ckpt.kind}, {ckpt.config.model.arch}) to {fmt} ...", soft_wrap=True)
    summary = export_checkpoint(
        model_from_checkpoint(ckpt), ckpt.config, ckpt.kind, fmt, out, verify_T=verify_T, meta=ckpt.meta
    )
    out_console.print(export_table(summary), crop=False)


def run_import(src: Path, out: Path, **options: Any) -> None:
    """Convert ``src`` into a snnkd checkpoint at ``out`` (``options``: :func:`import_checkpoint`'s keywords),
    then print what was written and what to run next."""
    from snnkd_cli.cli._output import import_table
    from snnkd_cli.convert.importer import import_checkpoint

    out_console.print(import_table(import_checkpoint(src, out, **options)), crop=False)
