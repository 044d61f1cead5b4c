"""The ``snnkd`` command line: thin commands over the engine (parse, build a config, call, print)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from snnkd_cli import __version__
from snnkd_cli.cli._runner import SnnkdGroup, bare_resume, handle_errors
from snnkd_cli.cli._training import (
    EarlyExitOptions,
    TrainingOptions,
    early_exit_command,
    reset_choice,
    training_command,
)
from snnkd_cli.cli.import_cmd import import_command
from snnkd_cli.cli.options import (
    CalibHoldout,
    ChunkT,
    Decay,
    Energy,
    EnergySamples,
    HardReset,
    MemOpt,
    Precision,
    ReplaceOutputs,
    SdNoneCorrect,
    SoftReset,
    Threads,  # shared by train-teacher and distill
)
from snnkd_cli.errors import SnnkdError

app = typer.Typer(
    name="snnkd",
    help="Full-range logit distillation of spiking neural networks: train once, deploy at any T from 1 to Tmax.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=SnnkdGroup,
    rich_markup_mode=None,  # plain help: Rich's panels left ~25 columns for the text at 80 and cut defaults
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"snnkd {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Full-range logit distillation of spiking neural networks (ICML 2025 method)."""


@app.command("train-teacher")
@handle_errors
@training_command
def train_teacher(
    arch: Annotated[str | None, typer.Option(help="ANN teacher: resnet18, resnet19, resnet34.")] = None,
    *,
    training: TrainingOptions,
) -> None:
    """Train an ANN teacher with cross-entropy.

    The recipe (epochs, learning rate, augmentation) is the paper's for the dataset unless an option says otherwise.
    """
    from snnkd_cli.cli.commands import run_training

    run_training(training.build("teacher", arch=arch), training.run)


@app.command()
@handle_errors
@training_command
def distill(
    teacher: Annotated[
        Path | None,
        typer.Option(
            help="Teacher checkpoint from 'snnkd train-teacher', or a state dict saved elsewhere (.pth/.pt: "
            "torchvision, timm, the paper's {'best_net': ...}) with --teacher-arch, converted in memory."
        ),
    ] = None,
    teacher_arch: Annotated[
        str | None,
        typer.Option(help="ANN architecture of a --teacher given as a state dict (e.g. resnet34, tv_resnet50)."),
    ] = None,
    student_arch: Annotated[
        str | None, typer.Option("--student-arch", "--arch", help="Spiking student: resnet18, resnet19, ...")
    ] = None,
    loss: Annotated[str, typer.Option(help="full-range (paper), standard-kd or twce (ablation baselines).")] = (
        "full-range"
    ),
    T: Annotated[int | None, typer.Option("--T", "-T", help="Training timesteps (paper: 6 CIFAR, 4 ImageNet).")] = None,
    alpha: Annotated[float, typer.Option(help="Weight of the teacher KD term.")] = 0.2,
    beta: Annotated[float, typer.Option(help="Weight of the self-distillation term.")] = 0.5,
    tau: Annotated[float | None, typer.Option(help="KD temperature (paper: 3 CIFAR/DVS, 1 ImageNet).")] = None,
    sd_none_correct: SdNoneCorrect = "uniform",
    decay: Decay = None,
    soft_reset: SoftReset = False,
    hard_reset: HardReset = False,
    calib_holdout: CalibHoldout = None,
    memopt: MemOpt = "off",
    *,
    training: TrainingOptions,
) -> None:
    """Distil a spiking student from an ANN teacher.

    With the full-range loss (the default) the student works at every T from 1 to Tmax, not only at its
    training T.
    """
    reset = reset_choice(soft_reset, hard_reset)  # refused before the engine (and torch) loads
    from snnkd_cli.cli.commands import run_training

    cfg = training.build(
        "distill",
        teacher=str(teacher) if teacher else None,
        teacher_arch=teacher_arch,
        arch=student_arch,
        loss=loss,
        T=T,
        alpha=alpha,
        beta=beta,
        tau=tau,
        sd_none_correct=sd_none_correct,
        decay=decay,
        soft_reset=reset,
        calib_holdout=calib_holdout,
        memopt=memopt,
    )
    run_training(cfg, training.run)


app.command("import")(handle_errors(import_command))


@app.command("eval-sweep")
@handle_errors
@early_exit_command
def eval_sweep(
    checkpoints: Annotated[list[Path], typer.Argument(help="One or more .safetensors checkpoints written by snnkd.")],
    max_T: Annotated[
        int | None, typer.Option("--max-T", help="Evaluate T = 1..max-T in one pass (default: training T).")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Evaluate on this dataset instead of the checkpoint's.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data folder instead of the checkpoint's.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Evaluation batch size.")] = None,
    precision: Annotated[
        str | None,
        typer.Option(help="Evaluation precision: fp32 (default, whatever the training precision), auto, bf16 or fp16."),
    ] = None,
    reframe: Annotated[
        bool,
        typer.Option(
            "--reframe",
            help="Event data: frame each recording into T' frames for every T' (one pass per T') instead of "
            "reading the first T' frames of the cache.",
        ),
    ] = False,
    energy: Energy = False,
    energy_samples: EnergySamples = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the results as JSON here ('-': standard output, tables to stderr)."),
    ] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option("--csv", help="Also write the results as CSV here ('-': standard output, tables to stderr)."),
    ] = None,
    threads: Threads = None,
    overwrite: ReplaceOutputs = False,
    chunk_T: ChunkT = None,
    *,
    early_exit: EarlyExitOptions,
) -> None:
    """Accuracy of each checkpoint at every T up to max-T.

    Usually every T comes from one forward pass at max-T (the running mean of the per-step logits); the
    table's title says how each was read.
    """
    from snnkd_cli.cli.commands import run_sweep

    data = str(data_dir) if data_dir else None
    if energy_samples is not None and not energy:
        raise SnnkdError("--energy-samples applies with --energy")
    energy_n = (256 if energy_samples is None else energy_samples) if energy else None
    run_sweep(
        checkpoints,
        max_T=max_T,
        dataset=dataset,
        data_dir=data,
        batch_size=batch_size,
        precision=precision,
        json_path=json_path,
        csv_path=csv_path,
        reframe=reframe,
        energy=energy_n,
        dynamic=early_exit.dynamic,
        save_threshold=early_exit.save_threshold,
        threads=threads,
        overwrite=overwrite,
        chunk_T=chunk_T,
    )


@app.command()
@handle_errors
def predict(
    checkpoint: Annotated[
        Path, typer.Argument(help="A .safetensors checkpoint written by snnkd (student or teacher).")
    ],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Image files or folders of them (PNG, JPEG, ...); for DVS checkpoints .safetensors event frames "
            "[T, 2, H, W] as written by preprocess-dvs."
        ),
    ],
    T: Annotated[
        int | None, typer.Option("--T", "-T", help="Steps of a student's run (default: its training T).")
    ] = None,
    dynamic: Annotated[
        bool,
        typer.Option(
            "--dynamic",
            help="Early exit: stop each input when its running prediction passes the threshold stored by "
            "'eval-sweep --dynamic --save-threshold' (or --threshold).",
        ),
    ] = False,
    threshold: Annotated[
        float | None, typer.Option(help="With --dynamic: this threshold instead of the stored one.")
    ] = None,
    exit_rule: Annotated[
        str | None,
        typer.Option("--exit-rule", help="With --dynamic and --threshold: confidence (default) or entropy."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Inputs classified together.")] = 64,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Also write the predictions (and errors) as JSON here ('-': standard output, table to stderr).",
        ),
    ] = None,
    threads: Threads = None,
    overwrite: ReplaceOutputs = False,
) -> None:
    """Classify images (or event frames) with a checkpoint.

    Per input: the class, its probability and the steps used.
    """
    from snnkd_cli.cli.commands import run_predict

    code = run_predict(
        checkpoint,
        inputs,
        T=T,
        dynamic=dynamic,
        threshold=threshold,
        exit_rule=exit_rule,
        batch_size=batch_size,
        json_path=json_path,
        threads=threads,
        overwrite=overwrite,
    )
    if code:
        raise typer.Exit(code)


@app.command()
@handle_errors
def quickstart(
    out: Annotated[Path, typer.Option(help="Folder for the teacher and student runs.")] = Path("runs/quickstart"),
    teacher_epochs: Annotated[int, typer.Option(help="Teacher epochs.")] = 8,
    student_epochs: Annotated[int, typer.Option(help="Student epochs.")] = 10,
    T: Annotated[int, typer.Option("--T", "-T", help="Training timesteps of the student.")] = 4,
    max_T: Annotated[int, typer.Option("--max-T", help="Sweep T = 1..max-T at the end.")] = 8,
    precision: Precision = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the runs of an earlier quickstart in --out.")
    ] = False,
    threads: Threads = None,
) -> None:
    """Teacher, student and sweep on built-in synthetic data.

    An ANN teacher, a full-range student distilled from it and the sweep of the student's accuracy at every T,
    on data made on the fly: a few minutes on a CPU.
    """
    from snnkd_cli.cli.commands import run_quickstart

    run_quickstart(
        out,
        teacher_epochs=teacher_epochs,
        student_epochs=student_epochs,
        T=T,
        max_T=max_T,
        precision=precision,
        overwrite=overwrite,
        threads=threads,
    )


@app.command("preprocess-dvs")
@handle_errors
def preprocess_dvs(
    src: Annotated[
        Path, typer.Argument(help="Recordings: SRC/<class>/*.aedat (the CIFAR10-DVS release), .npz or .npy.")
    ],
    out: Annotated[Path, typer.Argument(help="Cache folder; frames go to OUT/<key>/ named by the parameters.")],
    frames: Annotated[int, typer.Option(help="Frames per recording (the largest T it can train at).")] = 10,
    split_by: Annotated[
        str, typer.Option(help="number: equal event counts per frame (paper); time: equal durations.")
    ] = ("number"),
    size: Annotated[int, typer.Option(help="Frame height and width after resizing from 128 px (see --resize).")] = 48,
    split: Annotated[str, typer.Option(help="random: 90/10 with seed 42 (paper); per-class: 900/100 (TEBN).")] = (
        "random"
    ),
    workers: Annotated[int, typer.Option(help="Worker processes (output is identical for any number).")] = 1,
    resize: Annotated[
        str, typer.Option(help="bilinear: antialiased bilinear (paper); area: the mean of each source window (older).")
    ] = "bilinear",
) -> None:
    """Turn event recordings into cached frames.

    Frames [T, 2, H, W] as safetensors, read by --dataset cifar10dvs.
    """
    from snnkd_cli.cli.commands import run_preprocess_dvs

    run_preprocess_dvs(
        src, out, frames=frames, split_by=split_by, size=size, split=split, workers=workers, resize=resize
    )


@app.command()
@handle_errors
def models() -> None:
    """List the registered students and teachers.

    With their parameters and the data they fit.
    """
    from snnkd_cli.cli._output import models_table, out_console

    out_console.print(models_table())


@app.command()
@handle_errors
def export(
    checkpoint: Annotated[
        Path, typer.Argument(help="A .safetensors checkpoint written by snnkd (student or teacher).")
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="safetensors (BN folded), onnx (single-step graph, any T at run time) or nir."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output file (default: beside the checkpoint: best.onnx, best.nir, best.folded.safetensors)."
        ),
    ] = None,
    verify_T: Annotated[
        int | None, typer.Option("--verify-T", help="Check the export at T = 1, 2 and this (default: the training T).")
    ] = None,
    overwrite: ReplaceOutputs = False,
) -> None:
    """Export a checkpoint to safetensors, ONNX or NIR.

    BN-folded safetensors, a single-step ONNX graph (any T at run time) or NIR, verified before it is written.
    """
    from snnkd_cli.cli.commands import run_export

    run_export(checkpoint, fmt=fmt, out=out, verify_T=verify_T, overwrite=overwrite)


def main() -> None:
    """Console-script entry point. OpenMP waits passively for work unless the user set a policy: on shared
    cores its spinning threads made training 4-5x slower (bench/threads.py); set before torch loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app(args=bare_resume(sys.argv[1:]), prog_name="snnkd")


if __name__ == "__main__":
    sys.exit(main())
