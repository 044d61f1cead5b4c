"""From a :class:`RunConfig` to trained checkpoints, and from a checkpoint to a sweep.

These are what the commands call: ``train`` (teacher or distillation, chosen by
``cfg.task``); evaluation of a saved checkpoint is in :mod:`snnkd_cli.evaluation.evaluate`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from snnkd_cli.checkpoint import RUN_FILES, check_fresh_out, run_files_in, save_checkpoint
from snnkd_cli.config import ModelConfig, RunConfig, freeze, notes
from snnkd_cli.data import DataInfo, build_datasets, resolved, without_calibration
from snnkd_cli.data.loaders import check_T_fits, make_loader
from snnkd_cli.errors import SnnkdError, option
from snnkd_cli.fsutil import atomic_write_bytes
from snnkd_cli.kd.tasks import DistillTask, TeacherTask
from snnkd_cli.models import build_model
from snnkd_cli.models.contract import check_student, time_major
from snnkd_cli.models.neurons import set_neuron_precision
from snnkd_cli.precision import default_device, precision_note, resolve_precision
from snnkd_cli.train.distributed import (
    convert_sync_bn,
    dist_env,
    finish_distributed,
    init_distributed,
    resolve_sync_bn,
)
from snnkd_cli.train.loop import Checkpointer, FitResult, fit
from snnkd_cli.train.report import Reporter
from snnkd_cli.train.resume import (
    LoopState,
    ResumeFile,
    config_differences,
    interrupted_note,
    read_resume,
    save_resume,
)
from snnkd_cli.train.teacher import load_teacher
from snnkd_cli.train.threads import busy_note, others_load, usable_cores


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


def _resolve_data(cfg: RunConfig, train: bool = True) -> tuple[Dataset | None, Dataset, DataInfo, RunConfig]:
    """The splits, what the data is, and ``cfg`` resolved against it (a new config: classes, channels, image
    size and augmentation from the data; the ImageNet stem for large images)."""
    tr, val, info = build_datasets(cfg.data, train=train)
    if tr is not None:  # --calib-holdout: the calibration slice of early exit is never trained on
        tr = without_calibration(tr, cfg.data.calib_holdout)
    stem = "imagenet" if info.image_size >= 128 and cfg.data.dataset != "imagenet" else cfg.model.stem
    model = dataclasses.replace(cfg.model, num_classes=info.num_classes, in_channels=info.in_channels, stem=stem)
    cfg = dataclasses.replace(cfg, data=resolved(cfg.data, info), model=model)
    if cfg.task == "distill":
        check_T_fits(cfg.train.T, info, option("T"))
    return tr, val, info, cfg


def _clear_run(out: Path) -> None:
    """Remove the files of a run in ``out`` (:data:`RUN_FILES`, ``config.json``, ``tensorboard/``)."""
    for name in (*RUN_FILES, "config.json"):
        (out / name).unlink(missing_ok=True)
    if (out / "tensorboard").is_dir():  # the old run's curves would mix with the new ones
        shutil.rmtree(out / "tensorboard")


def _busy(device: torch.device, world_size: int) -> str | None:
    """The note for a CPU run on cores other processes keep busy (a single process: ranks share cores)."""
    if device.type != "cpu" or world_size > 1:
        return None
    return busy_note(torch.get_num_threads(), others_load(), usable_cores())


@contextlib.contextmanager
def _failing_cleanly(out: Path, created: bool) -> Iterator[None]:
    """An interrupt says what is saved in ``out``; an error (an unreadable image mid-epoch) removes ``out``
    if this run ``created`` it and saved no checkpoint in it."""
    try:
        yield
    except KeyboardInterrupt:
        raise KeyboardInterrupt(interrupted_note(out)) from None
    except SnnkdError:
        if created and not run_files_in(out):
            _clear_run(out)
            with contextlib.suppress(OSError):
                out.rmdir()  # only if nothing else is in it
        raise


def check_resumable(res: ResumeFile, cfg: RunConfig, reporter: Reporter) -> None:
    """``cfg`` may continue ``res``: the same configuration, except ``--epochs``, which may change while
    an epoch is left to run (the learning-rate schedule is then recomputed for the new length)."""
    old = res.config
    if old.task != cfg.task:
        runs = {"teacher": "'snnkd train-teacher'", "distill": "'snnkd distill'"}
        raise SnnkdError(
            f"{option('resume')} {res.path} continues a {runs.get(old.task, old.task)} run, not a "
            f"{runs[cfg.task]} one: pass the resume.safetensors of an earlier {runs[cfg.task]} run"
        )
    same_length = dataclasses.replace(old, train=dataclasses.replace(old.train, epochs=cfg.train.epochs))
    diff = config_differences(same_length, cfg)
    if diff:
        raise SnnkdError(
            f"--resume {res.path} was written by a run with another configuration; "
            f"fields that differ: {', '.join(diff)}"
        )
    done = res.loop().epoch - 1
    if cfg.train.epochs == old.train.epochs and done >= cfg.train.epochs:
        raise SnnkdError(
            f"the run in {res.path} is finished ({done} of {done} epochs): nothing to resume; give a larger "
            f"{option('epochs')} to extend it, or {option('overwrite')} instead of {option('resume')} to train it again"
        )
    if cfg.train.epochs != old.train.epochs:
        if cfg.train.epochs <= done:
            raise SnnkdError(
                f"--epochs {cfg.train.epochs}: the run in {res.path} has already done {done} epochs; "
                f"give more than {done} to extend it"
            )
        reporter.message(
            f"--epochs {old.train.epochs} -> {cfg.train.epochs}: the learning-rate schedule is recomputed "
            f"for {cfg.train.epochs} epochs"
        )


def check_out_dir(out: str | Path) -> Path:
    """Create ``out`` (and parents) and check it is writable, before any training starts."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".snnkd-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        for stale in out.glob(".*.tmp"):  # temp files of a run that was killed mid-write
            stale.unlink()
    except OSError as e:
        raise SnnkdError(f"cannot write to output folder {out}: {e.strerror or e}; choose another --out") from None
    return out


class RunCheckpointer(Checkpointer):
    """Writes ``best``/``last``/``resume.safetensors`` and ``log.jsonl`` (and TensorBoard events) in ``out``.

    The checkpoints also carry the class names (metadata ``classes``, a JSON list) for ``snnkd predict``.
    """

    def __init__(
        self, out: Path, model: nn.Module, kind: str, cfg: RunConfig, tensorboard: bool = False, classes: tuple = ()
    ) -> None:
        self.out, self.model, self.kind, self.cfg = out, model, kind, cfg
        self.classes = list(classes)
        self.config_written = False
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise SnnkdError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def epoch_end(self, epoch: int, improved: bool, extra: dict) -> None:
        if not self.config_written:  # with the first checkpoint: a run that fails sooner leaves no file
            atomic_write_bytes(self.out / "config.json", json.dumps(dataclasses.asdict(self.cfg), indent=2).encode())
            self.config_written = True
        extra = {**extra, "classes": self.classes} if self.classes else extra
        save_checkpoint(self.out / "last.safetensors", self.model.state_dict(), self.kind, self.cfg, extra)
        if improved:
            save_checkpoint(self.out / "best.safetensors", self.model.state_dict(), self.kind, self.cfg, extra)

    def resume_point(self, loop: LoopState, opt, sched, scaler) -> None:
        save_resume(self.out / "resume.safetensors", self.model, opt, sched, scaler, loop, self.cfg)

    def log(self, record: dict) -> None:
        path = self.out / "log.jsonl"
        try:
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise SnnkdError(f"cannot write {path}: {e.strerror or e}") from None
        if self.writer is not None:
            ep = record["epoch"]
            for k in ("loss", "train_acc", "val_top1", "lr"):
                self.writer.add_scalar(k, record[k], ep)
            for row in record["val"]:
                if row["T"] is not None:
                    self.writer.add_scalar(f"val_top1_by_T/T{row['T']}", row["top1"], ep)
            self.writer.flush()


def _task(cfg: RunConfig, info: DataInfo, device: torch.device) -> tuple[DistillTask | TeacherTask, ModelConfig | None]:
    """Distillation (the teacher loaded and checked against the data) or the teacher's cross-entropy, and the
    teacher network's config (None without one)."""
    if cfg.task != "distill":
        return TeacherTask(info.temporal), None
    teacher, tm = load_teacher(cfg, info, device)
    kd = cfg.kd
    return DistillTask(teacher, cfg.train.T, kd, info.temporal), tm


def _model(cfg: RunConfig, tr: Dataset, info: DataInfo, device: torch.device) -> nn.Module:
    """The network to train, on ``device``, in the run's neuron precision, memory format and BatchNorm; a
    student checked against the contract on one sample first."""
    model = build_model(cfg.model).to(device)
    set_neuron_precision(model, cfg.train.neuron_precision)
    if cfg.task == "distill":
        x, _ = tr[0]
        check_student(model, time_major(x[None].to(device), min(cfg.train.T, 2), info.temporal), info.num_classes)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.train.sync_bn:
        model = convert_sync_bn(model, device)
    return model


def _device(cfg: RunConfig, env, device: torch.device | None) -> torch.device:
    """The run's device: this process's GPU under torchrun (the process group started), else ``device`` or the
    default one. The global batch must split evenly over the processes."""
    if env.distributed:
        device = init_distributed(env)
        if cfg.train.batch_size % env.world_size:
            raise SnnkdError(
                f"--batch-size {cfg.train.batch_size} is the global batch and must be divisible by the "
                f"world size {env.world_size}: use a multiple of {env.world_size}"
            )
    return device or default_device()


def train(
    cfg: RunConfig,
    reporter: Reporter | None = None,
    device: torch.device | None = None,
    *,
    resume: str | Path | None = None,
    save_every: int | None = None,
    tensorboard: bool = False,
    overwrite: bool = False,
) -> TrainOutcome:
    """Train a teacher (``cfg.task == "teacher"``) or distil a student (``"distill"``).

    Writes ``best.safetensors``, ``last.safetensors``, ``resume.safetensors``, ``log.jsonl`` and
    ``config.json`` in ``cfg.train.out``.

    Args:
        cfg: the run.
        reporter: progress output (default: silent).
        device: default CUDA if available.
        resume: a ``resume.safetensors`` to continue from (its config must match ``cfg``).
        save_every: also write the resume file every this many steps.
        tensorboard: also write TensorBoard event files to ``out/tensorboard``.
        overwrite: start afresh in an ``out`` that holds a run (its checkpoints and log are replaced);
            without it such a folder is refused unless ``resume`` is given.
    """
    env = dist_env()
    device = _device(cfg, env, device)
    reporter = (reporter or Reporter()) if env.is_primary else Reporter()
    # the run's own copy (the caller's is never changed) with what runs: precision "auto" -> bf16 or fp32, sync_bn
    # on for the ImageNet recipe under torchrun; the checkpoints and a resume compare the real values
    run_train = {"precision": resolve_precision(cfg.train.precision, device), "sync_bn": resolve_sync_bn(cfg, env)}
    cfg = dataclasses.replace(copy.deepcopy(cfg), train=dataclasses.replace(cfg.train, **run_train))
    if save_every is not None and save_every < 1:
        raise SnnkdError(f"{option('save_every')} must be >= 1, got {save_every}")
    if resume is not None and overwrite:
        raise SnnkdError(f"{option('resume')} continues a run and {option('overwrite')} replaces it: give one of them")
    if resume is None:
        check_fresh_out(cfg.train.out, overwrite)
    seed_everything(cfg.train.seed)
    tr, val, info, cfg = _resolve_data(cfg)
    task, teacher_model = _task(cfg, info, device)
    cfg = freeze(dataclasses.replace(cfg, teacher_model=teacher_model))  # resolved once: nothing changes it now
    res = read_resume(resume) if resume is not None else None
    if res is not None:
        check_resumable(res, cfg, reporter)
    model = _model(cfg, tr, info, device)
    created = not Path(cfg.train.out).exists()
    out = check_out_dir(cfg.train.out)  # after every input is checked: a bad one leaves no folder
    reporter.config(dataclasses.asdict(cfg))
    for note in [*notes(cfg), precision_note(cfg.train.precision, device), _busy(device, env.world_size)]:
        if note:
            reporter.message(f"note: {note}")
    per_rank = cfg.train.batch_size // env.world_size  # --batch-size is the global batch
    shard = {"rank": env.rank, "world_size": env.world_size, "workers": cfg.data.workers, "seed": cfg.train.seed}
    train_loader = make_loader(tr, per_rank, train=True, device=device, **shard)
    val_loader = make_loader(val, per_rank, train=False, device=device, **shard)
    ckpt: Checkpointer = Checkpointer()
    if env.is_primary:
        if res is None:  # a fresh run (--overwrite): no file of the replaced run survives
            _clear_run(out)
        ckpt = RunCheckpointer(out, model, cfg.checkpoint_kind, cfg, tensorboard, info.classes)
        ckpt.save_every = save_every
    if res is not None:
        reporter.message(f"resuming from {res.path} (epoch {res.loop().epoch}, step {res.loop().step})")
    net = model
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    eval_T = cfg.train.T if cfg.task == "distill" else None
    kw = {"eval_T": eval_T, "device": device, "checkpointer": ckpt, "reporter": reporter, "resume": res}
    with _failing_cleanly(out, created and env.is_primary):
        result = fit(net, task, train_loader, val_loader, cfg.train, **kw)
    finish_distributed()
    return TrainOutcome(cfg, out, result, out / "best.safetensors", out / "last.safetensors")
