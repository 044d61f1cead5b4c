"""The Python API for people who write their own loop: the engine's functions on your modules.

from snnkd_cli import distill, sweep, full_range_kd_loss
from snnkd_cli import load_foreign, import_checkpoint  # weights saved by the paper's code, torchvision, timm
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from snnkd_cli.config import (
    DATASETS,
    DataConfig,
    KDConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    check_choice,
    validate_kd,
    validate_train,
)
from snnkd_cli.convert import convert_state, read_state_dict
from snnkd_cli.data.loaders import check_T_fits
from snnkd_cli.data.registry import DataInfo, dataset_spec
from snnkd_cli.dist import DistEnv
from snnkd_cli.errors import SnnkdError, option
from snnkd_cli.evaluation.sweep import sweep as _sweep
from snnkd_cli.format import RESUME_FILE
from snnkd_cli.models.registry import model_spec
from snnkd_cli.precision import default_device
from snnkd_cli.reporting import Reporter, RichReporter
from snnkd_cli.saver import RunSaver, Saver, open_out_dir
from snnkd_cli.train.loop import FitResult
from snnkd_cli.train.resume import open_resume
from snnkd_cli.train.run import check_run_options, check_student_on, make_task, resolve_config, run

# drop_last: the caller's DataLoader decides (its own drop_last)
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"drop_last"}


def distill(
    student: nn.Module,
    teacher: nn.Module | None,
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    loss: str = "full-range",
    alpha: float = 0.2,
    beta: float = 0.5,
    tau: float = 3.0,
    sd_none_correct: str = "uniform",
    temporal: bool = False,
    device: str | torch.device | None = None,
    verbose: bool = True,
    reporter: Reporter | None = None,
    overwrite: bool = False,
    resume: str | Path | bool | None = None,
    save_every: int | None = None,
    tensorboard: bool = False,
    dataset: str | None = None,
    classes: Sequence[str] | None = None,
    **config: Any,
) -> FitResult:
    """Distil ``student`` from ``teacher`` with the engine's run (the one ``snnkd distill`` runs).

    Args:
        student: maps ``[T, B, ...]`` to per-step logits ``[T, B, C]``; state reset by ``reset_net``.
        teacher: ANN mapping ``[B, ...]`` to ``[B, C]`` (None for ``loss="twce"``); kept frozen.
        train_loader, val_loader: yield ``(x [B, ...], y [B])``; event data as ``[B, T, C, H, W]``.
        loss: ``"full-range"``, ``"standard-kd"`` or ``"twce"``.
        alpha, beta, tau: loss weights and temperature.
        sd_none_correct: the self-distillation target of a sample no step gets right: ``"uniform"`` (the
            paper's code) or ``"skip"`` (no self-distillation term for it).
        temporal: True for event frames (frame t at step t), False for static images.
        device: where to train (default: CUDA if available).
        verbose: a progress bar and per-epoch lines on standard error (:class:`snnkd_cli.reporting.RichReporter`).
        reporter: where progress goes instead (a :class:`snnkd_cli.reporting.Reporter`; overrides ``verbose``).
        overwrite: replace the files of an earlier run in ``out`` (otherwise such a folder is refused).
        resume: continue the run in ``out`` from its ``resume.safetensors`` (``True``) or from this resume
            file, with the same options and loaders (a run may be made longer with ``epochs``).
        save_every: also write the resume file every this many steps (else at the end of each epoch).
        tensorboard: also write TensorBoard event files to ``out/tensorboard``.
        dataset: the snnkd dataset your loaders hold (``"cifar10"``...), stored in the checkpoints so that
            ``snnkd eval-sweep``, ``predict`` and ``export`` know its data (without it, ``eval-sweep``
            needs ``--dataset``). The checkpoints are normal snnkd checkpoints when ``student`` was built
            by :func:`snnkd_cli.models.create_model` (a registered arch or ``package.module:factory``).
        classes: the class names stored for ``snnkd predict`` (default: ``train_loader.dataset.classes``,
            else the names ``dataset`` knows).
        **config: :class:`snnkd_cli.config.TrainConfig` fields: ``T``, ``epochs``, ``lr``, ``weight_decay``,
            ``bn_weight_decay``, ``warmup_epochs``, ``precision``, ``memopt`` (``"speed"``, ``"balanced"`` or
            ``"memory"``: spikingjelly's memopt on ``student`` for the run; it comes back as built), ``out``
            (when given, the run's files are written there as by ``snnkd distill``:
            ``best``/``last``/``resume.safetensors``, ``log.jsonl``, ``config.json``)...

    Returns:
        :class:`FitResult` with the per-epoch history and the best validation sweep.
    """
    out = config.pop("out", None)
    kd_config = KDConfig(loss=loss, alpha=alpha, beta=beta, tau=tau, sd_none_correct=sd_none_correct)
    cfg, kd = _options(config, kd_config, dataset)
    check_run_options(out, resume := _resume_path(resume, out), overwrite, save_every)
    dev, env = torch.device(device) if device is not None else default_device(), DistEnv()  # one process: this
    student.to(dev)
    if teacher is not None:
        teacher.to(dev).eval().requires_grad_(False)
    x, _ = next(iter(train_loader))
    run_cfg, info = _run_config(student, teacher, cfg, kd, out, dataset, x, temporal)
    check_T_fits(cfg.T, info, option("T"))
    check_student_on(student, x.to(dev), cfg.T, temporal)
    run_cfg = resolve_config(run_cfg, dev, env)  # the data and the networks are what was given
    shown = reporter if reporter is not None else RichReporter() if verbose else Reporter()
    res = open_resume(resume, run_cfg, shown)
    saver = Saver()
    if out is not None:  # the folder is made once every input is checked
        names = _classes(classes, train_loader, dataset, run_cfg.model.num_classes)
        folder, created = open_out_dir(out)
        saver = RunSaver(folder, student, run_cfg, classes=names, tensorboard=tensorboard, created=created)
    kw = {"device": dev, "env": env, "resume": res, "save_every": save_every}
    return run(student, make_task(run_cfg, teacher, temporal), (train_loader, val_loader), run_cfg, saver, shown, **kw)


def _options(config: dict[str, Any], kd: KDConfig, dataset: str | None) -> tuple[TrainConfig, KDConfig]:
    """The training settings and the loss, checked as the command line checks them, before any work."""
    unknown = set(config) - _TRAIN_FIELDS
    if "drop_last" in unknown:
        raise TypeError("drop_last is your DataLoader's to set (DataLoader(..., drop_last=True)), not distill's")
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; choose from {sorted(_TRAIN_FIELDS)}")
    cfg = TrainConfig(**config)
    validate_train(cfg)
    validate_kd(kd)
    if dataset is not None:
        check_choice(dataset, DATASETS, "dataset")
    return cfg, kd


def _resume_path(resume: str | Path | bool | None, out: str | Path | None) -> str | Path | None:
    """``resume=True``: the resume file of ``out``."""
    if resume is False:
        return None
    if resume is True:
        if out is None:
            raise SnnkdError("resume=True continues the run in out: give out, or the resume file's path")
        return Path(out) / RESUME_FILE
    return resume


def _network(net: nn.Module | None) -> ModelConfig | None:
    """The config that rebuilds a network :func:`create_model` built (None otherwise)."""
    spec = model_spec(net) if net is not None else None
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(**spec) if spec and set(spec) <= fields else None


def _run_config(
    student: nn.Module,
    teacher: nn.Module | None,
    cfg: TrainConfig,
    kd: KDConfig,
    out: str | Path | None,
    dataset: str | None,
    x: torch.Tensor,
    temporal: bool,
) -> tuple[RunConfig, DataInfo]:
    """The run as snnkd's checkpoints record it, and what the data is. ``x``: a training batch
    ``[B, C, H, W]`` (events ``[B, T, C, H, W]``). A student not built by ``create_model`` is stored with an
    empty arch."""
    model = _network(student) or ModelConfig(arch="", num_classes=0)
    frames = int(x.shape[1]) if temporal else None
    size, channels = int(x.shape[-1]), int(x.shape[-3])
    data = DataConfig(
        dataset=dataset or "",
        data_dir="",
        image_size=size,
        in_channels=channels,
        num_classes=model.num_classes,
        frames=frames,
        workers=0,
        augment="none",
    )
    info = DataInfo(dataset or "the training loader", model.num_classes, channels, size, temporal, frames=frames)
    train = dataclasses.replace(cfg, out=str(out) if out is not None else "")
    run_cfg = RunConfig(task="distill", data=data, model=model, train=train, kd=kd, teacher_model=_network(teacher))
    return run_cfg, info


def _classes(given: Sequence[str] | None, loader: DataLoader, dataset: str | None, n: int) -> tuple[str, ...]:
    """The class names of the run: ``given``, else the training set's ``classes``, else the names ``dataset``
    knows; names whose count is not the network's ``n`` classes are dropped (``given`` ones refused)."""
    names = given if given is not None else getattr(loader.dataset, "classes", None)
    if names is None and dataset is not None:
        names = dataset_spec(dataset).class_names
    names = tuple(str(c) for c in names or ())
    if n and names and len(names) != n:
        if given is not None:
            raise SnnkdError(f"classes names {len(names)} classes but the student predicts {n}")
        return ()
    return names


def sweep(
    model: nn.Module,
    loader: DataLoader,
    max_T: int,
    *,
    temporal: bool = False,
    precision: str = "fp32",
    chunk_T: int | None = None,
) -> list[dict]:
    """Accuracy at every T in 1..max_T from one pass: ``[{"T", "top1", "top5", "spike_rate"}, ...]`` (percent).

    The same numbers ``snnkd eval-sweep`` prints (fp32 by default, as the validation of :func:`distill`;
    ``"auto"``: bf16 where the device computes it natively). A pass of more than ``chunk_T`` steps (default 16)
    runs in chunks of that many, the state carried between them (the same numbers, less memory).
    """
    return _sweep(model, loader, max_T, temporal=temporal, precision=precision, chunk_T=chunk_T).rows


def load_foreign(path: str | Path, arch: str, *, kind: str = "ann", **options: Any) -> nn.Module:
    """A registered snnkd network holding weights saved by other code, converted in memory (nothing written).

    Args:
        path: a ``.pth``/``.pt`` state dict (read weights-only; the paper's ``{"best_net": ...}`` unwrapped) or a
            plain ``.safetensors`` one, in the paper's, torchvision's, timm's or snnkd's own key layout.
        arch: a registered architecture (``resnet18``, ``resnet19``, ``resnet34``, ``preact_resnet34``,
            ``tv_resnet50``...); width, stem, input channels and classes come from the weights.
        kind: ``"ann"`` (a teacher, ``[B, C, H, W] -> [B, classes]``) or ``"snn"`` (a student,
            ``[T, B, C, H, W] -> [T, B, classes]``).
        **options: what a state dict does not hold: ``decay`` and ``soft_reset`` of a student's LIF.

    Returns:
        The network in eval mode, built by :func:`snnkd_cli.models.create_model` (so :func:`distill` can store
        it in snnkd checkpoints). To write a checkpoint instead: :func:`snnkd_cli.import_checkpoint`.

    Raises:
        SnnkdError: unreadable file, the wrong kind, keys or shapes that do not map (one line).
    """
    check_choice(kind, ("snn", "ann"), "kind")
    return convert_state(read_state_dict(path), arch, kind, source=str(path), **options).model
