"""From the user's options to trained checkpoints: the one resolution of a run's config (:func:`resolve_config`,
and :func:`resolve_run` for snnkd's datasets) and the one wiring of a run (:func:`run`), which the command
line (:func:`train`) and the Python API (:func:`snnkd_cli.distill`) both call.

Evaluation of a saved checkpoint is in :mod:`snnkd_cli.evaluation.evaluate`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from snnkd_cli.checkpoint import check_fresh_out, run_files_in
from snnkd_cli.config import ModelConfig, RunConfig, freeze, notes
from snnkd_cli.data import DataInfo, build_datasets, for_run_length, resolved, without_calibration
from snnkd_cli.data.loaders import check_T_fits, make_loader
from snnkd_cli.dist import DistEnv, dist_env
from snnkd_cli.errors import SnnkdError, option
from snnkd_cli.format import BEST_FILE, LAST_FILE
from snnkd_cli.kd.tasks import DistillTask, TeacherTask
from snnkd_cli.models import build_model
from snnkd_cli.models.contract import check_student, time_major
from snnkd_cli.models.neurons import set_neuron_precision
from snnkd_cli.precision import default_device, precision_note, resolve_precision
from snnkd_cli.saver import RunSaver, Saver, clear_run, open_out_dir
from snnkd_cli.train import memopt
from snnkd_cli.train.distributed import convert_sync_bn, finish_distributed, init_distributed, resolve_sync_bn
from snnkd_cli.train.loop import FitResult, fit
from snnkd_cli.train.report import Reporter
from snnkd_cli.train.resume import ResumeFile, interrupted_note, open_resume
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


def resolve_config(
    cfg: RunConfig,
    device: torch.device,
    env: DistEnv,
    info: DataInfo | None = None,
    teacher_model: ModelConfig | None = None,
) -> RunConfig:
    """The run's config as it runs, in one step, frozen (the caller's is never changed): precision ``auto`` ->
    bf16 or fp32 on ``device``; ``--memopt``'s level on ``device`` (``train.memopt_level``); sync-bn on for the
    ImageNet recipe under torchrun unless given; with ``info`` (the data built from ``cfg.data``) the data's
    classes, channels, image size, frames and augmentation, and the network's classes, channels and stem
    (ImageNet's for images of 128 px and more); the teacher's network (``teacher_model``, else the one ``cfg``
    records).

    A value derived at the start of a run goes here: the checkpoints and a resume compare what ran.
    """
    train = dataclasses.replace(
        cfg.train,
        precision=resolve_precision(cfg.train.precision, device),
        sync_bn=resolve_sync_bn(cfg, env),
        memopt_level=memopt.resolve_level(cfg.train.memopt, device),
    )
    data, model = cfg.data, cfg.model
    if info is not None:
        stem = "imagenet" if info.image_size >= 128 and cfg.data.dataset != "imagenet" else cfg.model.stem
        model = dataclasses.replace(cfg.model, num_classes=info.num_classes, in_channels=info.in_channels, stem=stem)
        data = resolved(cfg.data, info)
    teacher_model = teacher_model or cfg.teacher_model
    return freeze(dataclasses.replace(cfg, data=data, model=model, train=train, teacher_model=teacher_model))


@dataclass
class Setup:
    """A run resolved against its data: the frozen config, the splits, what the data is, and the teacher
    (None without one)."""

    config: RunConfig
    train_set: Dataset
    val_set: Dataset
    info: DataInfo
    teacher: nn.Module | None


def resolve_run(cfg: RunConfig, device: torch.device, env: DistEnv, train: bool = True) -> Setup:
    """Build ``cfg``'s data (less the ``--calib-holdout`` slice, which early exit calibrates on) and its teacher,
    then resolve the config once (:func:`resolve_config`).

    Raises:
        SnnkdError: data that cannot be read or does not fit ``--T``, a teacher that does not fit the data.
    """
    cfg = dataclasses.replace(cfg, data=for_run_length(cfg.data, cfg.train.epochs))
    tr, val, info = build_datasets(cfg.data, train=train)
    if tr is not None:
        tr = without_calibration(tr, cfg.data.calib_holdout)
    if cfg.task == "distill":
        check_T_fits(cfg.train.T, info, option("T"))
    teacher, teacher_model = load_teacher(cfg, info, device) if cfg.task == "distill" else (None, None)
    return Setup(resolve_config(cfg, device, env, info, teacher_model), tr, val, info, teacher)


def make_task(cfg: RunConfig, teacher: nn.Module | None, temporal: bool) -> DistillTask | TeacherTask:
    """What a step computes: the distillation losses (``cfg.kd``, the teacher frozen) or the teacher's
    cross-entropy."""
    if cfg.task != "distill":
        return TeacherTask(temporal)
    return DistillTask(teacher, cfg.train.T, cfg.kd, temporal)


def check_student_on(model: nn.Module, x: torch.Tensor, T: int, temporal: bool, num_classes: int | None = None) -> None:
    """The student contract on a batch ``x [B, ...]``: its first two samples, at ``min(T, 2)`` steps."""
    check_student(model, time_major(x[:2], min(T, 2), temporal), num_classes)


def check_run_options(
    out: str | Path | None, resume: str | Path | None, overwrite: bool, save_every: int | None
) -> None:
    """The options of a run's files, before any work: ``save_every`` >= 1, not both ``resume`` and
    ``overwrite``, and a fresh run refuses an ``out`` that holds one (unless ``overwrite``)."""
    if save_every is not None and save_every < 1:
        raise SnnkdError(f"{option('save_every')} must be >= 1, got {save_every}")
    if resume is not None and overwrite:
        raise SnnkdError(f"{option('resume')} continues a run and {option('overwrite')} replaces it: give one of them")
    if resume is None and out:
        check_fresh_out(out, overwrite)


def _busy(device: torch.device, world_size: int) -> str | None:
    """The note for a CPU run on cores other processes keep busy (a single process: ranks share cores)."""
    if device.type != "cpu" or world_size > 1:
        return None
    return busy_note(torch.get_num_threads(), others_load(), usable_cores())


@contextlib.contextmanager
def _failing_cleanly(out: Path | None, created: bool) -> Iterator[None]:
    """An interrupt says what is saved in ``out``; an error (an unreadable image mid-epoch) removes ``out``
    if this run ``created`` it and saved no checkpoint in it."""
    try:
        yield
    except KeyboardInterrupt:
        if out is None:
            raise
        raise KeyboardInterrupt(interrupted_note(out)) from None
    except SnnkdError:
        if out is not None and created and not run_files_in(out):
            clear_run(out)
            with contextlib.suppress(OSError):
                out.rmdir()  # only if nothing else is in it
        raise


def run(
    model: nn.Module,
    task: DistillTask | TeacherTask,
    loaders: tuple[DataLoader, DataLoader],
    cfg: RunConfig,
    saver: Saver,
    reporter: Reporter,
    *,
    device: torch.device,
    env: DistEnv | None = None,
    resume: ResumeFile | None = None,
    save_every: int | None = None,
) -> FitResult:
    """Run a resolved run: the one wiring of the command line's :func:`train` and the Python API's ``distill``.

    Prints the config and its notes, starts the saver (a fresh run clears an old one's files), applies
    ``--memopt`` to the model (:mod:`snnkd_cli.train.memopt`), wraps it in DistributedDataParallel under
    torchrun, trains (:func:`~snnkd_cli.train.loop.fit`) and leaves the process group. An interrupt says where
    the resume file stands; an error in a folder this run made, before its first checkpoint, removes the folder.

    Args:
        model: the network (on ``device``; a student already checked against the contract).
        task: from :func:`make_task`.
        loaders: training and validation loaders, ``(x [B, ...], y [B])``.
        cfg: the resolved, frozen config (:func:`resolve_config`); ``cfg.train.out`` names the run's folder.
        saver: writes the run's files (:class:`~snnkd_cli.saver.RunSaver`; the quiet base writes nothing).
        reporter: progress and messages.
        device: where the run trains.
        env: this process among torchrun's (default: read from the environment).
        resume: a resume file checked against ``cfg`` (:func:`~snnkd_cli.train.resume.open_resume`).
        save_every: also a resume point every this many steps.
    """
    env = env or dist_env()
    reporter.config(dataclasses.asdict(cfg))
    for note in [*notes(cfg), precision_note(cfg.train.precision, device), _busy(device, env.world_size)]:
        if note:
            reporter.message(f"note: {note}")
    saver.start(fresh=resume is None)
    if resume is not None:
        reporter.message(f"resuming from {resume.path} (epoch {resume.loop().epoch}, step {resume.loop().step})")
    eval_T = cfg.train.T if cfg.task == "distill" else None
    kw = {"eval_T": eval_T, "device": device, "saver": saver, "reporter": reporter, "resume": resume}
    with _failing_cleanly(Path(cfg.train.out) if cfg.train.out else None, saver.created):
        if cfg.train.memopt_level:  # in place, before DDP wraps it: every rank the same structure
            reporter.message(memopt.optimise(model, loaders[0], cfg.train, device, getattr(task, "temporal", False)))
        net = model
        if env.distributed:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        try:
            result = fit(net, task, *loaders, cfg.train, save_every=save_every, **kw)
        finally:
            memopt.remove(model)  # the network given back is the one built
    finish_distributed()
    return result


def _model(cfg: RunConfig, tr: Dataset, info: DataInfo, device: torch.device) -> nn.Module:
    """The network to train, on ``device``, in the run's neuron precision, memory format and BatchNorm; a
    student checked against the contract on one sample first."""
    model = build_model(cfg.model).to(device)
    set_neuron_precision(model, cfg.train.neuron_precision)
    if cfg.task == "distill":
        x, _ = tr[0]
        check_student_on(model, x[None].to(device), cfg.train.T, info.temporal, info.num_classes)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.train.sync_bn:
        model = convert_sync_bn(model, device)
    return model


def _device(cfg: RunConfig, env: DistEnv, device: torch.device | None) -> torch.device:
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
    """Train a teacher (``cfg.task == "teacher"``) or distil a student (``"distill"``) on a snnkd dataset.

    Writes ``best.safetensors``, ``last.safetensors``, ``resume.safetensors``, ``log.jsonl`` and
    ``config.json`` in ``cfg.train.out``.

    Args:
        cfg: the run (the user's options: resolved here, never changed).
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
    check_run_options(cfg.train.out, resume, overwrite, save_every)
    seed_everything(cfg.train.seed)
    setup = resolve_run(cfg, device, env)  # resolved once: nothing changes it now
    cfg, info = setup.config, setup.info
    res = open_resume(resume, cfg, reporter)
    model = _model(cfg, setup.train_set, info, device)
    out, created = open_out_dir(cfg.train.out)  # after every input is checked: a bad one leaves no folder
    per_rank = cfg.train.batch_size // env.world_size  # --batch-size is the global batch
    shard = {"rank": env.rank, "world_size": env.world_size, "workers": cfg.data.workers, "seed": cfg.train.seed}
    loaders = (
        make_loader(setup.train_set, per_rank, train=True, device=device, drop_last=cfg.train.drop_last, **shard),
        make_loader(setup.val_set, per_rank, train=False, device=device, **shard),
    )
    saver = Saver()
    if env.is_primary:
        saver = RunSaver(out, model, cfg, classes=info.classes, tensorboard=tensorboard, created=created)
    task = make_task(cfg, setup.teacher, info.temporal)
    kw = {"device": device, "env": env, "resume": res, "save_every": save_every}
    result = run(model, task, loaders, cfg, saver, reporter, **kw)
    return TrainOutcome(cfg, out, result, out / BEST_FILE, out / LAST_FILE)
