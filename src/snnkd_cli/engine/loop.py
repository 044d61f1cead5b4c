"""The one training loop: teacher training and distillation differ only in their task.

Per step: reset the network state (the only place training does), run the task under
autocast, step SGD and the per-step schedule. Per epoch: validate with the one-pass sweep,
write ``last.safetensors`` and (when validation improves) ``best.safetensors`` atomically.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from snnkd_cli.config import TrainConfig
from snnkd_cli.engine.precision import autocast, grad_scaler
from snnkd_cli.engine.report import Reporter
from snnkd_cli.engine.sweep import SweepResult, sweep
from snnkd_cli.errors import SnnkdError
from snnkd_cli.kd.tasks import Task
from snnkd_cli.models.contract import reset_state


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch history, the best validation result and its epoch."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: SweepResult | None = None
    best_epoch: int = 0
    best_top1: float = -1.0


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv/linear weights only, none on BN parameters and biases (paper)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up from ``1/warmup_steps`` of the lr to all of it, then cosine to 0, per step."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def fit(
    model: nn.Module,
    task: Task,
    train_loader: DataLoader,
    val_loader: DataLoader,
    cfg: TrainConfig,
    *,
    eval_T: int | None,
    temporal: bool = False,
    device: torch.device,
    save: Callable[[Path, dict], None] | None = None,
    out_dir: Path | None = None,
    reporter: Reporter | None = None,
) -> FitResult:
    """Train ``model`` with ``task`` for ``cfg.epochs`` epochs.

    Args:
        model: the network being trained (already on ``device``).
        task: computes ``({"loss": ..., ...}, logits [B, C])`` for a batch.
        train_loader, val_loader: yield ``(x [B, ...], y [B])``.
        cfg: optimiser, schedule, precision.
        eval_T: validation steps for a spiking model (None for an ANN).
        temporal: event frames instead of static images.
        device: where batches go.
        save: ``save(path, extra_metadata)`` writes a checkpoint of the model; None: no files.
        out_dir: folder of ``last.safetensors`` and ``best.safetensors``.
        reporter: progress and per-epoch lines.

    Raises:
        SnnkdError: a non-finite loss (names the epoch and step; the last good checkpoint stays).
    """
    reporter = reporter or Reporter()
    opt = torch.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    steps_per_epoch = len(train_loader) if cfg.max_steps is None else min(len(train_loader), cfg.max_steps)
    if steps_per_epoch == 0:
        raise SnnkdError(f"the training set gives no batch of {cfg.batch_size}: lower --batch-size")
    total = steps_per_epoch * cfg.epochs
    warmup = min(total, round(cfg.warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, warmup))
    scaler = grad_scaler(cfg.precision, device)
    memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
    result = FitResult()
    spiking = getattr(task, "spiking", False)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        with reporter.epoch_progress(epoch, cfg.epochs, steps_per_epoch) as update:
            for step, (x, y) in enumerate(train_loader, 1):
                if step > steps_per_epoch:
                    break
                x = x.to(device, non_blocking=True)
                if x.dim() == 4:
                    x = x.contiguous(memory_format=memory_format)
                y = y.to(device, non_blocking=True)
                reset_state(model)  # the one place training resets membrane state
                with autocast(cfg.precision, device):
                    losses, logits = task(model, x, y)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    raise SnnkdError(
                        f"loss is {loss.item()} at epoch {epoch} step {step}: lower --lr or use "
                        "--precision fp32; the last good checkpoint is kept"
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(-1) == y).sum())
                seen += len(y)
                update({"loss": loss_sum / seen, "acc": 100.0 * correct / seen})
        reset_state(model)
        train_time = time.perf_counter() - t0
        val = sweep(
            model, val_loader, eval_T, temporal=temporal, device=device, precision=cfg.precision, spiking=spiking
        )
        top1 = val.at(eval_T)["top1"] if spiking else val.rows[0]["top1"]
        stats = {
            "loss": loss_sum / max(seen, 1),
            "train_acc": 100.0 * correct / max(seen, 1),
            "val_top1": top1,
            "lr": opt.param_groups[0]["lr"],
            "time": train_time,
        }
        if spiking:
            stats["val_top1_T1"] = val.at(1)["top1"]
        result.history.append({"epoch": epoch, **stats})
        improved = top1 > result.best_top1
        if improved:
            result.best, result.best_epoch, result.best_top1 = val, epoch, top1
        if save is not None and out_dir is not None:
            extra = {"epoch": str(epoch), "metrics": {"val": val.rows, "best_epoch": result.best_epoch}}
            save(out_dir / "last.safetensors", extra)
            if improved:
                save(out_dir / "best.safetensors", extra)
        reporter.epoch_end(epoch, cfg.epochs, stats)
    return result
