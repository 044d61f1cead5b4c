"""Groups of options declared once for several commands (``train-teacher`` and ``distill`` share the training
options; ``eval-sweep`` takes the early-exit group), and the hand-off to the training run."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snnkd_cli.cli.options import (
    Augment,
    BatchSize,
    CalibFraction,
    ChannelsLast,
    Compile,
    DataDir,
    Dataset,
    Download,
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
    SyncBN,
    TensorBoard,
    Threads,
    Thresholds,
    Warmup,
    WeightDecay,
    Width,
    Workers,
)
from snnkd_cli.errors import SnnkdError

if TYPE_CHECKING:
    from snnkd_cli.evaluation.early_exit import DynamicOptions


def _training_options(
    dataset: Dataset = "synthetic",
    data_dir: DataDir = Path("./data"),
    download: Download = False,
    image_size: ImageSize = None,
    width: Width = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    weight_decay: WeightDecay = None,
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
) -> None:
    """The options ``train-teacher`` and ``distill`` share (the dataset's recipe where None)."""


def _parameters(fn: Callable) -> list[inspect.Parameter]:
    """``fn``'s parameters with their annotations evaluated in ``fn``'s module (the return annotation, which
    may name a type imported only for type checkers, is not evaluated)."""
    evaluated = lambda a: eval(a, fn.__globals__) if isinstance(a, str) else a  # noqa: E731
    return [p.replace(annotation=evaluated(p.annotation)) for p in inspect.signature(fn).parameters.values()]


def with_options(group: Callable) -> Callable[[Callable], Callable]:
    """A decorator giving ``fn(own options, **group's)`` the options declared by ``group``'s signature after its
    own, for Typer (which reads the signature and the annotations): a group of options is declared once."""
    shared = _parameters(group)

    def deco(fn: Callable) -> Callable:
        own = [p for p in _parameters(fn) if p.kind is not p.VAR_KEYWORD]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> None:
            return fn(**kwargs)

        wrapper.__signature__ = inspect.Signature([*own, *shared], return_annotation=None)  # type: ignore[attr-defined]
        # evaluated here: the string annotations name options the declaring modules import
        wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *shared]}
        return wrapper

    return deco


training_command = with_options(_training_options)


def early_exit_options(
    dynamic: DynamicFlag = False,
    exit_rule: EvalExitRule = None,
    thresholds: Thresholds = None,
    max_drop: MaxDrop = None,
    calib_fraction: CalibFraction = None,
    save_threshold: SaveThreshold = False,
) -> DynamicOptions | None:
    """``eval-sweep``'s early-exit options: declared here for Typer (:func:`with_options` reads this signature)
    and checked when called, as ``DynamicOptions`` (None without ``--dynamic``).

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
                ("--save-threshold", save_threshold or None),
            )
            if v is not None
        ]
        if given:
            raise SnnkdError(f"{given[0]} applies with --dynamic")
        return None
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
    opts = {"rule": exit_rule, "max_drop": max_drop, "calib_fraction": calib_fraction}
    return DynamicOptions(thresholds=grid, **{k: v for k, v in opts.items() if v is not None})


early_exit_command = with_options(early_exit_options)


def _train(task: str, opts: dict) -> None:
    """Build the run's config from the command's options (the recipe where None) and train."""
    from snnkd_cli.cli.commands import run_training
    from snnkd_cli.config import from_preset

    run_opts = {k: opts.pop(k) for k in ("resume", "overwrite", "save_every", "tensorboard", "threads")}
    dataset = opts.pop("dataset")
    opts["data_dir"] = str(opts["data_dir"])
    opts["out"] = str(opts["out"]) if opts["out"] is not None else None
    run_training(from_preset(task, dataset, **opts), **run_opts)


def reset_choice(soft_reset: bool, hard_reset: bool) -> bool | None:
    """``--soft-reset``/``--hard-reset`` as the config's ``soft_reset``: True, False, or None (the recipe's).

    Raises:
        SnnkdError: both given.
    """
    if soft_reset and hard_reset:
        raise SnnkdError("--soft-reset and --hard-reset contradict each other: give one (or neither: the recipe's)")
    return True if soft_reset else False if hard_reset else None
