"""Groups of options declared once for several commands (``train-teacher`` and ``distill`` share the training
options; ``eval-sweep`` takes the early-exit group), and the hand-off to the training run."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def with_options(group: Callable) -> Callable[[Callable], Callable]:
    """A decorator giving ``fn(own options, **group's)`` the options declared by ``group``'s signature after its
    own, for Typer (which reads the signature and the annotations): a group of options is declared once."""
    shared = list(inspect.signature(group, eval_str=True).parameters.values())

    def deco(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> None:
            return fn(**kwargs)

        wrapper.__signature__ = inspect.Signature([*own, *shared], return_annotation=None)  # type: ignore[attr-defined]
        # evaluated here: the string annotations name options this module imports, not the command's module
        wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *shared]}
        return wrapper

    return deco


training_command = with_options(_training_options)


def _early_exit_options(
    dynamic: DynamicFlag = False,
    exit_rule: EvalExitRule = None,
    thresholds: Thresholds = None,
    max_drop: MaxDrop = None,
    calib_fraction: CalibFraction = None,
    save_threshold: SaveThreshold = False,
) -> None:
    """``eval-sweep``'s early-exit options (see ``commands.dynamic_options``, which checks them)."""


early_exit_command = with_options(_early_exit_options)


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
