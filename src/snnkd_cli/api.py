"""The Python API for people who write their own loop: the engine's functions on your modules.

from snnkd_cli import distill, sweep, full_range_kd_loss
from snnkd_cli import load_foreign, import_checkpoint  # weights saved by the paper's code, torchvision, timm
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from snnkd_cli.checkpoint import check_fresh_out, save_checkpoint
from snnkd_cli.cli._progress import RichReporter
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
from snnkd_cli.evaluation.sweep import sweep as _sweep
from snnkd_cli.kd.tasks import DistillTask
from snnkd_cli.models.contract import check_student, time_major
from snnkd_cli.models.registry import model_spec
from snnkd_cli.precision import default_device
from snnkd_cli.train.loop import Checkpointer, FitResult, fit
from snnkd_cli.train.report import Reporter

_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


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
    temporal: bool = False,
    device: str | torch.device | None = None,
    verbose: bool = True,
    overwrite: bool = False,
    dataset: str | None = None,
    **config: Any,
) -> FitResult:
    """Distil ``student`` from ``teacher`` with the engine's loop (the one ``snnkd distill`` runs).

    Args:
        student: maps ``[T, B, ...]`` to per-step logits ``[T, B, C]``; state reset by ``reset_net``.
        teacher: ANN mapping ``[B, ...]`` to ``[B, C]`` (None for ``loss="twce"``); kept frozen.
        train_loader, val_loader: yield ``(x [B, ...], y [B])``; event data as ``[B, T, C, H, W]``.
        loss: ``"full-range"``, ``"standard-kd"`` or ``"twce"``.
        alpha, beta, tau: loss weights and temperature.
        temporal: True for event frames (frame t at step t), False for static images.
        device: where to train (default: CUDA if available).
        verbose: Rich progress bar and per-epoch lines.
        overwrite: replace the checkpoints of an earlier run in ``out`` (otherwise such a folder is refused).
        dataset: the snnkd dataset your loaders hold (``"cifar10"``...), stored in the checkpoints so that
            ``snnkd eval-sweep``, ``predict`` and ``export`` know its data (without it, ``eval-sweep``
            needs ``--dataset``). The checkpoints are normal snnkd checkpoints when ``student`` was built
            by :func:`snnkd_cli.models.create_model` (a registered arch or ``package.module:factory``).
        **config: :class:`snnkd_cli.config.TrainConfig` fields: ``T``, ``epochs``, ``lr``,
            ``weight_decay``, ``warmup_epochs``, ``precision``, ``out`` (when given, the student is written
            there as ``last.safetensors`` / ``best.safetensors``, snnkd checkpoints)...

    Returns:
        :class:`FitResult` with the per-epoch history and the best validation sweep.
    """
    unknown = set(config) - _TRAIN_FIELDS
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; choose from {sorted(_TRAIN_FIELDS)}")
    out = config.pop("out", None)
    cfg, kd = TrainConfig(**config), KDConfig(loss=loss, alpha=alpha, beta=beta, tau=tau)
    validate_train(cfg)  # before any work, as the command line's
    validate_kd(kd)
    if dataset is not None:
        check_choice(dataset, DATASETS, "dataset")
    if out is not None:
        check_fresh_out(out, overwrite)
    dev = torch.device(device) if device is not None else default_device()
    student.to(dev)
    if teacher is not None:
        teacher.to(dev).eval().requires_grad_(False)
    x, _ = next(iter(train_loader))
    check_student(student, time_major(x[:2].to(dev), min(cfg.T, 2), temporal))
    task = DistillTask(teacher, cfg.T, kd, temporal)
    ckpt = None
    if out is not None:
        run = _run_config(student, cfg, dataset, x, temporal, kd)
        ckpt = _ApiCheckpointer(student, Path(out), run)
    reporter: Reporter = RichReporter() if verbose else Reporter()
    return fit(
        student,
        task,
        train_loader,
        val_loader,
        cfg,
        eval_T=cfg.T,
        device=dev,
        checkpointer=ckpt,
        reporter=reporter,
    )


def _run_config(
    student: nn.Module, cfg: TrainConfig, dataset: str | None, x: torch.Tensor, temporal: bool, kd: KDConfig
) -> RunConfig:
    """The run as snnkd's checkpoints record it. ``x``: a training batch ``[B, C, H, W]`` (events
    ``[B, T, C, H, W]``). A student not built by ``create_model`` is stored with an empty arch."""
    spec = model_spec(student) or {}
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    model = ModelConfig(**spec) if spec and set(spec) <= fields else ModelConfig(arch="", num_classes=0)
    data = DataConfig(
        dataset=dataset or "",
        data_dir="",
        image_size=int(x.shape[-1]),
        in_channels=int(x.shape[-3]),
        num_classes=model.num_classes,
        frames=int(x.shape[1]) if temporal else None,
        workers=0,
        augment="none",
    )
    return RunConfig(task="distill", data=data, model=model, train=dataclasses.replace(cfg, out=""), kd=kd)


class _ApiCheckpointer(Checkpointer):
    """``last.safetensors`` / ``best.safetensors`` of the student: snnkd checkpoints (the one format)."""

    def __init__(self, model: nn.Module, out: Path, config: RunConfig) -> None:
        self.model, self.out, self.config = model, out, config

    def epoch_end(self, epoch: int, improved: bool, extra: dict) -> None:
        state = self.model.state_dict()
        save_checkpoint(self.out / "last.safetensors", state, "student", self.config, extra)
        if improved:
            save_checkpoint(self.out / "best.safetensors", state, "student", self.config, extra)


def sweep(
    model: nn.Module, loader: DataLoader, max_T: int, *, temporal: bool = False, precision: str = "fp32"
) -> list[dict]:
    """Accuracy at every T in 1..max_T from one pass: ``[{"T", "top1", "top5", "spike_rate"}, ...]`` (percent).

    The same numbers ``snnkd eval-sweep`` prints (fp32 by default, as the validation of :func:`distill`;
    ``"auto"``: bf16 where the device computes it natively).
    """
    return _sweep(model, loader, max_T, temporal=temporal, precision=precision).rows


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
