"""What each command does, between parsing (``app.py``) and printing (``_output.py``)."""

from __future__ import annotations

import time
from pathlib import Path

from snnkd_cli.cli._output import err_console, out_console, sweep_entries, sweep_table, write_json, write_sweep_csv
from snnkd_cli.config import RunConfig, from_preset
from snnkd_cli.engine.checkpoint import load_checkpoint
from snnkd_cli.engine.report import RichReporter
from snnkd_cli.engine.run import TrainOutcome, evaluate_checkpoint, train


def run_training(cfg: RunConfig) -> TrainOutcome:
    """Train (teacher or student), then print the sweep of the best epoch and where the files are."""
    outcome = train(cfg, RichReporter(err_console))
    best = load_checkpoint(outcome.best_path)
    out_console.print(sweep_table([(best, outcome.fit.best)]))
    err_console.print(f"best epoch {outcome.fit.best_epoch}: [bold]{outcome.best_path}[/]  (last: {outcome.last_path})")
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
) -> None:
    """Evaluate every checkpoint, then print one table and write the JSON/CSV files asked for."""
    results = [
        evaluate_checkpoint(p, max_T, dataset=dataset, data_dir=data_dir, batch_size=batch_size, precision=precision)
        for p in checkpoints
    ]
    out_console.print(sweep_table(results))
    entries = sweep_entries(results)
    if json_path:
        write_json(json_path, {"checkpoints": entries})
        err_console.print(f"wrote {json_path}")
    if csv_path:
        write_sweep_csv(csv_path, entries)
        err_console.print(f"wrote {csv_path}")


def run_quickstart(out: Path, teacher_epochs: int, student_epochs: int, T: int, max_T: int, precision: str) -> None:
    """Teacher, full-range student and a T-sweep on the built-in synthetic data."""
    t0 = time.perf_counter()
    err_console.rule("1/3  ANN teacher (resnet18, synthetic)")
    teacher = train(
        from_preset("teacher", "synthetic", epochs=teacher_epochs, out=str(out / "teacher"), precision=precision),
        RichReporter(err_console),
    )
    err_console.rule("2/3  spiking student, full-range distillation")
    student = train(
        from_preset(
            "distill",
            "synthetic",
            epochs=student_epochs,
            T=T,
            out=str(out / "student"),
            teacher=str(teacher.best_path),
            precision=precision,
        ),
        RichReporter(err_console),
    )
    err_console.rule(f"3/3  sweep T = 1..{max_T}")
    run_sweep([student.best_path, teacher.best_path], max_T, None, None, None, None, out / "sweep.json", None)
    err_console.print(
        f"done in {time.perf_counter() - t0:.0f}s. teacher: {teacher.best_path}  student: {student.best_path}\n"
        f"next: snnkd eval-sweep {student.best_path} --max-T 16"
    )
