"""Groups of options declared once for several commands (``train-teacher`` and ``distill`` share the training
options; ``eval-sweep`` takes the early-exit group). A group is a function: Typer reads its parameters, and the
command receives what it returns (a frozen dataclass) as one keyword."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snnkd_cli.cli.options import (
    Augment,
    BatchSize,
    BNWeightDecay,
    CalibFraction,
    ChannelsLast,
    Compile,
    DataDir,
    Dataset,
    Download,
    DropLast,
    DynamicFlag,
    Epochs,
    EvalExitRule,
    ImageSize,
    Lr,
    MaxDrop,
    MaxSteps,
    NeuronPrecision,
    Out,
    Overwrite,
    Precision,
    Resize,
    Resume,
    SaveEvery,
    SaveThreshold,
    Schedule,
    Seed,
    SeenFloor,
    SyncBN,
    TensorBoard,
    Threads,
    Thresholds,
    Warmup,
    WeightDecay,
    Width,
    Workers,
)
from snnkd_cli.config import RunConfig, from_preset
from snnkd_cli.errors import SnnkdError

if TYPE_CHECKING:
    from snnkd_cli.evaluation.early_exit import DynamicOptions


@dataclass(frozen=True)
class RunOptions:
    """How a training run goes, beside the config it trains (and records): ``--resume`` (a path, or "auto" for
    OUT/resume.safetensors), ``--overwrite``, ``--save-every``, ``--tensorboard`` and ``--threads``."""

    resume: str | None = None
    overwrite: bool = False
    save_every: int | None = None
    tensorboard: bool = False
    threads: int | None = None


@dataclass(frozen=True)
class TrainingOptions:
    """What the options ``train-teacher`` and ``distill`` share give the command.

    Attributes:
        build: ``build(task, **own)``: :func:`~snnkd_cli.config.from_preset` for ``--dataset`` with the shared
            options and the command's own, each by keyword (None: the recipe's).
        run: how the run goes.
    """

    build: Callable[..., RunConfig]
    run: RunOptions


def training_options(
    dataset: Dataset = "synthetic",
    data_dir: DataDir = Path("./data"),
    download: Download = False,
    image_size: ImageSize = None,
    width: Width = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    weight_decay: WeightDecay = None,
    bn_weight_decay: BNWeightDecay = None,
    drop_last: DropLast = None,
    warmup_epochs: Warmup = None,
    schedule: Schedule = None,
    augment: Augment = None,
    resize: Resize = None,
    seed: Seed = 60,
    workers: Workers = None,
    threads: Threads = None,
    out: Out = None,
    precision: Precision = "auto",
    neuron_precision: NeuronPrecision = None,
    channels_last: ChannelsLast = False,
    compile: Compile = False,
    max_steps: MaxSteps = None,
    sync_bn: SyncBN = None,
    resume: Resume = None,
    overwrite: Overwrite = False,
    save_every: SaveEvery = None,
    tensorboard: TensorBoard = False,
) -> TrainingOptions:
    """The options ``train-teacher`` and ``distill`` share (the dataset's recipe where None): declared here for
    Typer (:func:`with_options` reads this signature); checked when the command builds its config."""
    build = functools.partial(
        from_preset,
        dataset=dataset,
        data_dir=str(data_dir),
        download=download,
        image_size=image_size,
        width=width,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        bn_weight_decay=bn_weight_decay,
        drop_last=drop_last,
        warmup_epochs=warmup_epochs,
        schedule=schedule,
        augment=augment,
        resize=resize,
        seed=seed,
        workers=workers,
        out=str(out) if out is not None else None,
        precision=precision,
        neuron_precision=neuron_precision,
        channels_last=channels_last,
        compile=compile,
        max_steps=max_steps,
        sync_bn=sync_bn,
    )
    run = RunOptions(
        resume=resume, overwrite=overwrite, save_every=save_every, tensorboard=tensorboard, threads=threads
    )
    return TrainingOptions(build=build, run=run)


def _parameters(fn: Callable) -> list[inspect.Parameter]:
    """``fn``'s parameters, their annotations resolved in ``fn``'s module (as Typer resolves a command's)."""
    return list(inspect.signature(fn, eval_str=True).parameters.values())


def with_options(group: Callable, into: str) -> Callable[[Callable], Callable]:
    """A decorator declaring ``group``'s options on a command after its own, for Typer (which reads the signature
    and the annotations): a group of options is declared once. The command is called with its own options by
    keyword and ``into=group(the group's options by keyword)``."""
    shared = _parameters(group)

    def deco(fn: Callable) -> Callable:
        own = [p for p in _parameters(fn) if p.name != into]

        @functools.wraps(fn)
        def wrapper(**options: Any) -> None:
            grouped = {p.name: options.pop(p.name) for p in shared}
            return fn(**options, **{into: group(**grouped)})

        wrapper.__signature__ = inspect.Signature([*own, *shared], return_annotation=None)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *shared]}
        return wrapper

    return deco


training_command = with_options(training_options, into="training")


@dataclass(frozen=True)
class EarlyExitOptions:
    """``eval-sweep``'s early-exit options, checked: ``dynamic`` (None without ``--dynamic``) and
    ``--save-threshold``."""

    dynamic: DynamicOptions | None
    save_threshold: bool


def early_exit_options(
    dynamic: DynamicFlag = False,
    exit_rule: EvalExitRule = None,
    thresholds: Thresholds = None,
    max_drop: MaxDrop = None,
    calib_fraction: CalibFraction = None,
    seen_floor: SeenFloor = None,
    save_threshold: SaveThreshold = False,
) -> EarlyExitOptions:
    """``eval-sweep``'s early-exit options: declared here for Typer (:func:`with_options` reads this signature)
    and checked when called: the rule and its search as ``DynamicOptions`` (None without ``--dynamic``).

    Raises:
        SnnkdError: an option given without ``--dynamic``, or a bad value (one line).
    """
    from snnkd_cli.evaluation.early_exit import DynamicOptions

    if not dynamic:
        given = [
            name
            for name, v in (
                ("--exit-rule", exit_rule),
                ("--thresholds", thresholds),
                ("--max-drop", max_drop),
                ("--calib-fraction", calib_fraction),
                ("--seen-floor", seen_floor),
                ("--save-threshold", save_threshold or None),
            )
            if v is not None
        ]
        if given:
            raise SnnkdError(f"{given[0]} applies with --dynamic")
        return EarlyExitOptions(dynamic=None, save_threshold=False)
    grid = None
    if thresholds is not None:
        try:
            grid = tuple(float(v) for v in thresholds.split(",") if v.strip())
        except ValueError:
            raise SnnkdError(
                f"--thresholds must be comma-separated numbers, e.g. 0.8,0.9,0.95; got '{thresholds}'"
            ) from None
        if not grid:
            raise SnnkdError("--thresholds is empty: give comma-separated numbers, e.g. 0.8,0.9,0.95")
    opts = {"rule": exit_rule, "max_drop": max_drop, "calib_fraction": calib_fraction, "seen_floor": seen_floor}
    dyn = DynamicOptions(thresholds=grid, **{k: v for k, v in opts.items() if v is not None})
    return EarlyExitOptions(dynamic=dyn, save_threshold=save_threshold)


early_exit_command = with_options(early_exit_options, into="early_exit")


def reset_choice(soft_reset: bool, hard_reset: bool) -> bool | None:
    """``--soft-reset``/``--hard-reset`` as the config's ``soft_reset``: True, False, or None (the recipe's).

    Raises:
        SnnkdError: both given.
    """
    if soft_reset and hard_reset:
        raise SnnkdError("--soft-reset and --hard-reset contradict each other: give one (or neither: the recipe's)")
    return True if soft_reset else False if hard_reset else None
