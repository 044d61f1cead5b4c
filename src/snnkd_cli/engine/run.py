"""From a :class:`RunConfig` to trained checkpoints, and from a checkpoint to a sweep.

These are what the commands call: ``train`` (teacher or distillation, chosen by
``cfg.task``) and ``evaluate_checkpoint``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from snnkd_cli.config import ModelConfig, RunConfig
from snnkd_cli.data import DataInfo, build_datasets, resolved
from snnkd_cli.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from snnkd_cli.engine.loop import FitResult, fit
from snnkd_cli.engine.precision import default_device
from snnkd_cli.engine.report import Reporter
from snnkd_cli.engine.sweep import SweepResult, sweep
from snnkd_cli.errors import SnnkdError
from snnkd_cli.kd.tasks import DistillTask, TeacherTask
from snnkd_cli.models import create_model
from snnkd_cli.models.contract import check_student, time_major


@dataclass
class TrainOutcome:
    """Where a run's checkpoints are, its history and the sweep of its best checkpoint."""

    config: RunConfig
    out_dir: Path
    fit: FitResult
    best_path: Path
    last_path: Path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional
        pass


def make_loader(
    ds: Dataset, batch_size: int, *, train: bool, workers: int, seed: int, device: torch.device
) -> DataLoader:
    """A DataLoader; shuffled and dropping the last partial batch when training (if there is more than one)."""
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and len(ds) >= 2 * batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        generator=g if train else None,
    )


def build_model(mc: ModelConfig) -> nn.Module:
    """The network a :class:`ModelConfig` describes."""
    return create_model(mc.arch, mc.num_classes, **mc.kwargs())


def model_from_checkpoint(ckpt: Checkpoint) -> nn.Module:
    """Rebuild a checkpoint's network from its own config and load its weights (strict)."""
    net = build_model(ckpt.config.model)
    try:
        net.load_state_dict(ckpt.state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise SnnkdError(f"{ckpt.path}: weights do not match its stored architecture ({first})") from None
    return net


def _resolve_data(cfg: RunConfig, train: bool = True) -> tuple[Dataset | None, Dataset, DataInfo]:
    tr, val, info = build_datasets(cfg.data, train=train)
    cfg.data = resolved(cfg.data, info)
    cfg.model.num_classes = info.num_classes
    cfg.model.in_channels = info.in_channels
    if info.image_size >= 128 and cfg.data.dataset != "imagenet":
        cfg.model.stem = "imagenet"
    return tr, val, info


def _load_teacher(cfg: RunConfig, info: DataInfo, device: torch.device) -> nn.Module | None:
    kd = cfg.kd
    if kd.loss == "twce":
        return None
    if not kd.teacher:
        raise SnnkdError(f"--loss {kd.loss} needs --teacher TEACHER.safetensors (train one with 'snnkd train-teacher')")
    ckpt = load_checkpoint(kd.teacher, expect="teacher")
    tm = ckpt.config.model
    if tm.num_classes != info.num_classes:
        raise SnnkdError(
            f"teacher {kd.teacher} has {tm.num_classes} classes but {info.name} has "
            f"{info.num_classes}: use a teacher trained on this dataset"
        )
    if tm.in_channels != info.in_channels:
        raise SnnkdError(
            f"teacher {kd.teacher} takes {tm.in_channels} input channels but {info.name} has {info.in_channels}"
        )
    cfg.teacher_model = tm
    teacher = model_from_checkpoint(ckpt).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def check_out_dir(out: str | Path) -> Path:
    """Create ``out`` (and parents) and check it is writable, before any training starts."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".snnkd-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SnnkdError(f"cannot write to output folder {out}: {e.strerror or e}; choose another --out") from None
    return out


def train(cfg: RunConfig, reporter: Reporter | None = None, device: torch.device | None = None) -> TrainOutcome:
    """Train a teacher (``cfg.task == "teacher"``) or distil a student (``"distill"``).

    Writes ``best.safetensors``, ``last.safetensors`` and ``config.json`` in ``cfg.train.out``.
    """
    reporter = reporter or Reporter()
    device = device or default_device()
    out = check_out_dir(cfg.train.out)
    seed_everything(cfg.train.seed)
    tr, val, info = _resolve_data(cfg)
    spiking = cfg.task == "distill"
    teacher = _load_teacher(cfg, info, device) if spiking else None
    model = build_model(cfg.model).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if spiking:
        x, _ = tr[0]
        check_student(model, time_major(x[None].to(device), min(cfg.train.T, 2), info.temporal), info.num_classes)
    reporter.config(dataclasses.asdict(cfg))
    if spiking:
        kd = cfg.kd
        task = DistillTask(teacher, cfg.train.T, kd.loss, kd.alpha, kd.beta, kd.tau, info.temporal)
    else:
        task = TeacherTask(info.temporal)
    t = cfg.train
    train_loader = make_loader(tr, t.batch_size, train=True, workers=cfg.data.workers, seed=t.seed, device=device)
    val_loader = make_loader(val, t.batch_size, train=False, workers=cfg.data.workers, seed=t.seed, device=device)
    kind = "student" if spiking else "teacher"
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))

    def save(path: Path, extra: dict) -> None:
        save_checkpoint(path, model.state_dict(), kind, cfg, extra)

    result = fit(
        model,
        task,
        train_loader,
        val_loader,
        t,
        eval_T=t.T if spiking else None,
        temporal=info.temporal,
        device=device,
        save=save,
        out_dir=out,
        reporter=reporter,
    )
    return TrainOutcome(cfg, out, result, out / "best.safetensors", out / "last.safetensors")


def evaluate_checkpoint(
    path: str | Path,
    max_T: int | None = None,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    batch_size: int | None = None,
    device: torch.device | None = None,
    precision: str | None = None,
) -> tuple[Checkpoint, SweepResult]:
    """Rebuild a checkpoint's model from the file alone and sweep T = 1..max_T in one pass.

    Args:
        path: a snnkd checkpoint (teacher or student).
        max_T: steps of the pass (default: the training T); ignored for a teacher.
        dataset, data_dir: evaluate on this data instead of the checkpoint's own (same classes needed;
            the image size stays the one the model was trained at).
        batch_size: evaluation batch (default: the training batch).
        precision: autocast precision (default: the training precision).
    """
    device = device or default_device()
    ckpt = load_checkpoint(path)
    cfg = ckpt.config
    spiking = ckpt.kind == "student"
    if max_T is not None and max_T < 1:
        raise SnnkdError(f"--max-T must be >= 1, got {max_T}")
    changes = {k: v for k, v in (("dataset", dataset), ("data_dir", data_dir)) if v is not None}
    cfg.data = dataclasses.replace(cfg.data, **changes)
    _, val, info = build_datasets(cfg.data, train=False)
    if info.num_classes != cfg.model.num_classes:
        raise SnnkdError(f"{path} predicts {cfg.model.num_classes} classes but {info.name} has {info.num_classes}")
    model = model_from_checkpoint(ckpt).to(device)
    loader = make_loader(
        val, batch_size or cfg.train.batch_size, train=False, workers=cfg.data.workers, seed=0, device=device
    )
    T = (max_T or cfg.train.T) if spiking else None
    res = sweep(
        model,
        loader,
        T,
        temporal=info.temporal,
        device=device,
        precision=precision or cfg.train.precision,
        spiking=spiking,
    )
    return ckpt, res
