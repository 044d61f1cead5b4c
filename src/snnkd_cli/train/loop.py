"""The one training loop: teacher training and distillation differ only in their task.

Per step: reset the network state (the only place training does), run the task under
autocast, step SGD and the per-step schedule. Per epoch: validate with the one-pass sweep, and hand the
saver (:mod:`snnkd_cli.saver`) the epoch: it writes ``last.safetensors``, ``best.safetensors`` (when
validation improves), the log and the resume file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from spikingjelly.activation_based import functional
from torch import nn
from torch.utils.data import DataLoader

from snnkd_cli.config import MAX_WARMUP_SHARE, TrainConfig, warmup_steps
from snnkd_cli.data.loaders import EpochSampler
from snnkd_cli.dist import all_reduce_sum
from snnkd_cli.errors import SnnkdError, given, option
from snnkd_cli.evaluation.sweep import SweepResult, sweep
from snnkd_cli.kd.tasks import Task
from snnkd_cli.models.contract import reset_state
from snnkd_cli.precision import autocast, cudnn_autotune, grad_scaler
from snnkd_cli.progress import timed, timed_items
from snnkd_cli.saver import Saver
from snnkd_cli.train import health
from snnkd_cli.train.memopt import plain
from snnkd_cli.train.report import Reporter
from snnkd_cli.train.resume import LoopState, ResumeFile, restore


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch history, the best validation result and its epoch."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: SweepResult | None = None
    best_epoch: int = 0
    best_top1: float = -1.0
    notes: list[str] = field(default_factory=list)  # signs that the run is not learning (train.health)


def param_groups(model: nn.Module, weight_decay: float, everything: bool = False) -> list[dict]:
    """Weight decay on conv/linear weights only, none on BN parameters and biases (the paper's students);
    ``everything``: on every parameter (the paper's teacher loop, ``--bn-weight-decay``)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 and not everything else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(total_steps: int, warmup_steps: int, steps_per_epoch: int | None = None) -> Callable[[int], float]:
    """Linear warm-up from ``1/warmup_steps`` of the lr to all of it, then cosine to 0.

    ``steps_per_epoch`` None: the cosine advances every step (``cosine-step``). Given: it advances once per
    epoch, as the paper's ``CosineAnnealingLR(T_max=epochs)`` stepped after each epoch (``cosine-epoch``):
    epoch e of E runs at ``0.5 * (1 + cos(pi * e / E))`` of the peak (the last epoch above 0).
    """

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if steps_per_epoch is not None:
            epochs = max(1, round(total_steps / steps_per_epoch))
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step // steps_per_epoch) / epochs)))
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


Checkpointer = Saver  # the name of the saver's protocol before snnkd_cli.saver


def compile_for_training(model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` for the training forward, which runs at one fixed T.

    Evaluation keeps the eager ``model`` (the same parameters): every new T of a sweep would
    recompile. State is still reset on the eager module; spikingjelly's cached list of
    stateful modules is cleared because compiling wraps the network.
    """
    compiled = torch.compile(model)
    functional.invalidate_reset_cache(model)
    return compiled


@dataclass
class Optimiser:
    """SGD, its schedule and the gradient scaler (enabled for fp16 only): what a step updates."""

    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler


def build_optimiser(
    model: nn.Module, cfg: TrainConfig, steps_per_epoch: int, device: torch.device, reporter: Reporter, quiet: bool
) -> Optimiser:
    """SGD (momentum, decay on conv/linear weights) with warm-up (capped) and the cosine of ``cfg.schedule``."""
    groups = param_groups(model, cfg.weight_decay, everything=cfg.bn_weight_decay)
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    total = steps_per_epoch * cfg.epochs
    warmup = warmup_steps(cfg.warmup_epochs, steps_per_epoch, total)
    if warmup < round(cfg.warmup_epochs * steps_per_epoch) and not quiet:
        reporter.message(
            f"warm-up: {warmup} steps ({warmup / steps_per_epoch:.2g} epochs), not {cfg.warmup_epochs:g} epochs: "
            f"at most {MAX_WARMUP_SHARE:.0%} of the run's {total} steps"
        )
    per_epoch = steps_per_epoch if cfg.schedule == "cosine-epoch" else None
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, warmup, per_epoch))
    return Optimiser(opt, sched, grad_scaler(cfg.precision, device))


def train_step(
    model: nn.Module,
    task: Task,
    x: torch.Tensor,
    y: torch.Tensor,
    optim: Optimiser,
    precision: str,
    device: torch.device,
    net: nn.Module | None = None,
    check_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step: reset ``model``'s state (the one place training does), the task on ``net`` (default ``model``;
    its compiled form with ``--compile``) under autocast, backward, SGD and schedule steps.
    ``x [B, ...]`` and ``y [B]`` on ``device``; returns (loss, logits ``[B, C]``), detached.
    ``check_finite=False`` skips the loss check (a host sync): the caller checks the returned loss later.

    Raises:
        SnnkdError: a non-finite loss (before any weight changes).
    """
    reset_state(model)
    with autocast(precision, device):
        losses, logits = task(model if net is None else net, x, y)
    loss = losses["loss"]
    if check_finite and bool(not_finite(loss.detach().reshape(1))[0]):
        raise SnnkdError(_not_finite_message(loss))
    optim.opt.zero_grad(set_to_none=True)
    optim.scaler.scale(loss).backward()
    optim.scaler.step(optim.opt)
    optim.scaler.update()
    optim.sched.step()
    return loss.detach(), logits.detach()


def not_finite(losses: torch.Tensor) -> torch.Tensor:
    """Which of the losses ``[n]`` (the same steps on every process) were not finite on some process: bool ``[n]``.

    Under torchrun this is one all-reduce, so every rank stops at the same step with the same error (a rank
    that stopped alone would leave the others in a collective, and its message unprinted); alone, it is local.
    """
    bad = (~torch.isfinite(losses)).to(torch.int32)
    all_reduce_sum(bad)
    return bad > 0


def _not_finite_message(loss: torch.Tensor) -> str:
    return f"loss is {loss.item()}" if not torch.isfinite(loss) else "loss is not finite on another process"


CUDA_READ_EVERY = 25  # steps between reads of the running loss/accuracy on CUDA (each read waits for the GPU)


def _read_every(device: torch.device) -> int:
    """Steps between host reads of the running figures: every step on a CPU (a read costs nothing there),
    ``CUDA_READ_EVERY`` on CUDA, where a read is a sync that stalls the queue of kernels."""
    return CUDA_READ_EVERY if device.type == "cuda" else 1


@dataclass
class _Tally:
    """The epoch's loss sum and correct count on the device, and the losses since the last read.

    ``loss_sum`` (float64 ``[]``) adds ``loss * B`` in the same order and precision as a Python float would,
    so a read gives exactly the figures of a per-step ``loss.item()``.
    """

    loss_sum: torch.Tensor
    correct: torch.Tensor
    deferred: bool = False  # the losses are checked at the reads (CUDA), not by train_step
    pending: list[torch.Tensor] = field(default_factory=list)  # losses ``[]`` of the steps since the last read

    @classmethod
    def start(cls, st: LoopState, device: torch.device, deferred: bool) -> _Tally:
        """Continue from ``st``'s figures (a resumed epoch starts from the saved sums)."""
        loss_sum = torch.tensor(st.loss_sum, dtype=torch.float64, device=device)
        return cls(loss_sum, torch.tensor(st.correct, dtype=torch.int64, device=device), deferred)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """One step: ``loss []``, ``logits [B, C]``, ``y [B]``, all on the device (no sync)."""
        self.loss_sum += loss.double() * len(y)
        self.correct += (logits.argmax(-1) == y).sum()
        if self.deferred:  # else train_step checked it already
            self.pending.append(loss)

    def read(self, st: LoopState, first_step: int) -> None:
        """Check the unread losses (steps ``first_step + 1``...), then copy the sums into ``st`` (one sync).

        Raises:
            SnnkdError: a loss was not finite (the message names its epoch and step).
        """
        if self.pending:
            losses = torch.stack(self.pending)  # [steps since the last read]
            self.pending = []
            bad = not_finite(losses).nonzero()
            if len(bad):
                i = int(bad[0, 0])
                raise SnnkdError(_diverged(_not_finite_message(losses[i]), st.epoch, first_step + i + 1))
        st.loss_sum, st.correct = float(self.loss_sum), int(self.correct)


def _diverged(message: str, epoch: int, step: int) -> str:
    """The one-line error of a diverged run, naming where it happened."""
    fix = f"lower {option('lr')} or use {given('precision', 'fp32')}"
    return f"{message} at epoch {epoch} step {step}: {fix}; the last good checkpoint is kept"


def _steps_per_epoch(train_loader: DataLoader, cfg: TrainConfig) -> int:
    sampler = train_loader.sampler
    full = sampler.batches_per_epoch() if isinstance(sampler, EpochSampler) else len(train_loader)
    steps = full if cfg.max_steps is None else min(full, cfg.max_steps)
    if steps == 0:
        raise SnnkdError(f"the training set gives no batch of {cfg.batch_size}: lower {option('batch_size')}")
    return steps


def fit(
    model: nn.Module,
    task: Task,
    train_loader: DataLoader,
    val_loader: DataLoader,
    cfg: TrainConfig,
    *,
    eval_T: int | None,
    device: torch.device,
    saver: Saver | None = None,
    reporter: Reporter | None = None,
    resume: ResumeFile | None = None,
    save_every: int | None = None,
) -> FitResult:
    """Train ``model`` with ``task`` for ``cfg.epochs`` epochs.

    Args:
        model: the network being trained (already on ``device``).
        task: computes ``({"loss": ..., ...}, logits [B, C])`` for a batch.
        train_loader: yields ``(x [B, ...], y [B])``; if its sampler is an :class:`EpochSampler`,
            the order is fixed by (seed, epoch) and a resumed run skips the batches already done.
        val_loader: the same, for validation.
        cfg: optimiser, schedule (warm-up capped at ``MAX_WARMUP_SHARE`` of the run), training precision
            (validation always runs in fp32).
        eval_T: validation steps for a spiking model (None for an ANN). Validation reads ``task.temporal``
            (event frames instead of static images) and ``task.spiking``.
        device: where batches go.
        saver: writes checkpoints, resume files and logs (:class:`snnkd_cli.saver.RunSaver`; default: nothing).
        reporter: progress and per-epoch lines.
        resume: continue from this resume file (model, optimiser, schedule, RNG, position).
        save_every: also a resume point every this many steps (None: at the end of each epoch only).

    Raises:
        SnnkdError: a non-finite loss (names the epoch and step; the last good checkpoint stays).
    """
    reporter = reporter or Reporter()
    saver = saver or Saver()
    steps_per_epoch = _steps_per_epoch(train_loader, cfg)
    optim = build_optimiser(model, cfg, steps_per_epoch, device, reporter, quiet=resume is not None)
    st = restore(resume, model, optim.opt, optim.sched, optim.scaler) if resume is not None else LoopState()
    if st.step >= steps_per_epoch:  # saved at the very end of an epoch's steps
        st.epoch, st.step = st.epoch + 1, 0
    started = (st.epoch - 1) * steps_per_epoch + st.step
    watch = health.Watch(steps_per_epoch * cfg.epochs, started, per_epoch=cfg.schedule == "cosine-epoch")
    net = compile_for_training(model) if cfg.compile else model
    say = lambda note: reporter.message(f"note: {note}")  # noqa: E731
    run = _Run(model, net, task, optim, cfg, device, watch, say, save_every)
    result = FitResult(history=st.history, best_epoch=st.best_epoch, best_top1=st.best_top1)
    for rec in st.history:  # a resumed run: the best epoch's sweep is in its history
        if rec["epoch"] == st.best_epoch:
            result.best = SweepResult(rec["val"], rec.get("val_samples", 0))
    spiking = getattr(task, "spiking", False)
    # validation in fp32 whatever the training precision: the figure that picks best.safetensors
    val_pass = {"temporal": getattr(task, "temporal", False), "device": device, "precision": "fp32", "spiking": spiking}
    with cudnn_autotune(device):  # fixed batch shapes: cuDNN's search runs once per shape
        while st.epoch <= cfg.epochs:
            t0 = time.perf_counter()
            with reporter.epoch_progress(st.epoch, cfg.epochs, steps_per_epoch) as update:
                run.epoch(train_loader, st, steps_per_epoch, update, saver)
            train_time = time.perf_counter() - t0
            with plain(model), timed("validation"):  # the network as built (memopt checkpoints hide hooks)
                val = sweep(model, val_loader, eval_T, **val_pass)
            record = _epoch_record(st, val, eval_T if spiking else None, optim, train_time)
            if watch.unrecorded:
                record["notes"], watch.unrecorded = watch.unrecorded, []
            result.history.append(record)
            improved = record["val_top1"] > result.best_top1
            if improved:
                result.best, result.best_epoch, result.best_top1 = val, st.epoch, record["val_top1"]
            with timed("checkpoints"):
                saver.epoch_end(st.epoch, improved, {"val": val.rows, "best_epoch": result.best_epoch})
                saver.log(record)
            reporter.epoch_end(st.epoch, cfg.epochs, {k: v for k, v in record.items() if k not in _NOT_STATS})
            st = LoopState(st.epoch + 1, 0, result.best_top1, result.best_epoch, result.history)
            with timed("checkpoints"):
                saver.resume_point(st, optim.opt, optim.sched, optim.scaler)
    result.notes = watch.notes
    return result


@dataclass
class _Run:
    """What one epoch of :func:`fit` needs: the model (state reset on it), the network run forward (compiled or
    the model), the task, the optimiser and the settings."""

    model: nn.Module
    net: nn.Module
    task: Task
    optim: Optimiser
    cfg: TrainConfig
    device: torch.device
    watch: health.Watch
    say: Callable[[str], None]
    save_every: int | None = None  # also a resume point every this many steps

    def epoch(self, loader: DataLoader, st: LoopState, steps: int, update, saver: Saver) -> None:
        """Train from ``st.step`` to ``steps`` of epoch ``st.epoch``, counting into ``st``."""
        cfg, fmt = self.cfg, torch.channels_last if self.cfg.channels_last else torch.preserve_format
        self.model.train()
        if isinstance(loader.sampler, EpochSampler):
            loader.sampler.set_epoch(st.epoch, st.step)
        if loader.generator is not None:  # worker seeds depend on (seed, epoch) only
            loader.generator.manual_seed(cfg.seed * 1_000_003 + st.epoch)
        # on CUDA the loss and accuracy stay on the device between reads (a read waits for the GPU)
        every, first = _read_every(self.device), st.step
        tally, stats = _Tally.start(st, self.device, deferred=every > 1), _running(st)
        for x, y in timed_items(loader, "data"):  # each wait for a batch: a part of bench/step.py --epoch
            if st.step >= steps:
                break
            x = x.to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=fmt) if x.dim() == 4 else x
            y = y.to(self.device, non_blocking=True)
            try:
                step = (self.model, self.task, x, y, self.optim, cfg.precision, self.device, self.net)
                with timed("step"):
                    loss, logits = train_step(*step, check_finite=not tally.deferred)  # at the reads on CUDA
            except SnnkdError as e:
                raise SnnkdError(_diverged(e.message, st.epoch, st.step + 1)) from None
            st.step += 1
            st.seen += len(y)
            tally.add(loss, logits, y)
            save = bool(self.save_every) and st.step % self.save_every == 0 and st.step < steps
            if st.step % every == 0 or save or st.step == steps:
                tally.read(st, first)
                first, stats = st.step, _running(st)
                if self.watch.due((st.epoch - 1) * steps + st.step):
                    with plain(self.model), timed("health"):
                        notes = self.watch.check_run(self.model, self.task, x, y, stats["acc"], logits.shape[-1])
                    for note in notes:
                        self.say(note)
            update(stats)
            if save:
                with timed("checkpoints"):
                    saver.resume_point(st, self.optim.opt, self.optim.sched, self.optim.scaler)
        tally.read(st, first)
        reset_state(self.model)


def _running(st: LoopState) -> dict[str, float]:
    """The progress bar's figures: mean loss and accuracy (%) of the epoch so far (none before a step)."""
    return {"loss": st.loss_sum / st.seen, "acc": 100.0 * st.correct / st.seen} if st.seen else {}


_NOT_STATS = ("epoch", "val", "val_samples", "notes")  # in a record, not on the epoch's line


def _epoch_record(st: LoopState, val: SweepResult, eval_T: int | None, optim: Optimiser, seconds: float) -> dict:
    """One line of ``log.jsonl``: loss, train accuracy, validation top-1 (at the training T, and T=1), lr, time."""
    seen = max(st.seen, 1)
    top1 = val.at(eval_T)["top1"] if eval_T is not None else val.rows[0]["top1"]
    stats = {"loss": st.loss_sum / seen, "train_acc": 100.0 * st.correct / seen, "val_top1": top1}
    stats |= {"lr": optim.opt.param_groups[0]["lr"], "time": seconds}
    if eval_T is not None:
        stats["val_top1_T1"] = val.at(1)["top1"]
    return {"epoch": st.epoch, **stats, "val": val.rows, "val_samples": val.num_samples}
