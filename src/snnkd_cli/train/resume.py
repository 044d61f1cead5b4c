"""Resume files: everything a run needs to continue exactly where it stopped.

``resume.safetensors`` holds the model, the optimiser's buffers and the RNG states as tensors,
and the rest (loop position, schedule, scaler, history, Python/NumPy RNG, the config) as JSON
metadata. Nothing is unpickled. Written atomically like every checkpoint, by :mod:`snnkd_cli.saver`
(:func:`save_resume`, re-exported here); read, checked and restored here.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from snnkd_cli.config import RunConfig
from snnkd_cli.errors import SnnkdError, option
from snnkd_cli.format import (
    CONFIG_KEY,
    FORMAT_KEY,
    LOOP_KEY,
    PARAM_GROUPS_KEY,
    RESUME_FILE,
    RNG_NUMPY_KEY,
    RNG_PYTHON_KEY,
    SCALER_KEY,
    SCHEDULER_KEY,
)
from snnkd_cli.format import RESUME_FORMAT as FORMAT
from snnkd_cli.fsutil import read_safetensors
from snnkd_cli.saver import save_resume
from snnkd_cli.train.report import Reporter

__all__ = [
    "FORMAT",
    "MAY_CHANGE",
    "LoopState",
    "ResumeFile",
    "check_resumable",
    "config_differences",
    "interrupted_note",
    "open_resume",
    "read_resume",
    "restore",
    "save_resume",
]

# Fields that may differ between the interrupted run and its resumption. train.sync_bn: the ImageNet recipe
# turns it on by the number of processes, which may change on resumption (as the per-rank batch does).
# train.memopt(_level): checkpointing changes the memory a step takes, not its numbers.
MAY_CHANGE = {"data.workers", "data.data_dir", "data.download", "train.out", "train.compile", "train.sync_bn"}
MAY_CHANGE |= {"train.memopt", "train.memopt_level"}


@dataclass
class LoopState:
    """Where the loop is: the next step to run is ``step`` (0-based) of ``epoch`` (1-based)."""

    epoch: int = 1
    step: int = 0
    best_top1: float = -1.0
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0


@dataclass
class ResumeFile:
    """A loaded resume file."""

    path: Path
    config: RunConfig
    tensors: dict[str, torch.Tensor]
    meta: dict[str, str]

    def loop(self) -> LoopState:
        return LoopState(**json.loads(self.meta[LOOP_KEY]))


def read_resume(path: str | Path) -> ResumeFile:
    """Read a resume file; one-line errors for a missing, corrupt or foreign file."""
    path = Path(path)
    tensors, meta = read_safetensors(path, "resume file", hint=" (it is written to --out as resume.safetensors)")
    if meta.get(FORMAT_KEY) != FORMAT:
        raise SnnkdError(f"{path} is not a snnkd resume file; pass the resume.safetensors of an earlier run")
    return ResumeFile(path, RunConfig.from_dict(json.loads(meta[CONFIG_KEY])), tensors, meta)


def interrupted_note(out: Path) -> str:
    """What an interrupted run in ``out`` left: where its resume file stands and how to continue."""
    path = Path(out) / RESUME_FILE
    try:
        loop = LoopState(**json.loads(read_safetensors(path, "resume file", tensors=False)[1][LOOP_KEY]))
    except (SnnkdError, KeyError, TypeError, ValueError):
        return f"no resume point was saved in {out} yet: run the same command again to start over"
    where = f"after epoch {loop.epoch - 1}" if loop.step == 0 else f"at epoch {loop.epoch}, step {loop.step}"
    return f"{path} holds the run {where}: add --resume to the same command to continue it"


def config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    """``section.field (old -> new)`` for every value that differs (ignoring :data:`MAY_CHANGE`)."""

    def flat(cfg: RunConfig) -> dict[str, Any]:
        out = {}
        for section, values in dataclasses.asdict(cfg).items():
            if isinstance(values, dict):
                out.update({f"{section}.{k}": v for k, v in values.items()})
            else:
                out[section] = values
        return out

    a, b = flat(old), flat(new)
    keys = sorted(k for k in set(a) | set(b) if k not in MAY_CHANGE and a.get(k) != b.get(k))
    return [f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in keys]


def restore(res: ResumeFile, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, scaler: Any) -> LoopState:
    """Load model, optimiser, schedule, scaler and RNG states from ``res``; return the loop position."""
    t = res.tensors
    model = getattr(model, "module", model)  # DistributedDataParallel wraps the network
    model.load_state_dict({k[len("model/") :]: v for k, v in t.items() if k.startswith("model/")}, strict=True)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in t.items():
        if k.startswith("optim/"):
            _, idx, name = k.split("/", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(res.meta[PARAM_GROUPS_KEY])})
    sched_state = json.loads(res.meta[SCHEDULER_KEY])
    sched_state["lr_lambdas"] = [None] * len(sched.lr_lambdas)
    sched.load_state_dict(sched_state)
    # the lr of the saved position under this run's schedule (the same unless --epochs changed)
    for group, base, fn in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True):
        group["lr"] = base * fn(sched.last_epoch)
    scaler.load_state_dict(json.loads(res.meta[SCALER_KEY]))
    torch.set_rng_state(t["rng/torch"])
    cuda = [t[k] for k in sorted(t) if k.startswith("rng/cuda/")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    v, state_py, gauss = json.loads(res.meta[RNG_PYTHON_KEY])
    random.setstate((v, tuple(state_py), gauss))
    if RNG_NUMPY_KEY in res.meta:
        import numpy as np

        kind, pos, has_gauss, g = json.loads(res.meta[RNG_NUMPY_KEY])
        np.random.set_state((kind, t["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, g))
    return res.loop()


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
        # a run started before the default schedule became cosine-step
        old_default = old.train.schedule == "cosine-epoch" != cfg.train.schedule
        raise SnnkdError(
            f"--resume {res.path} was written by a run with another configuration; "
            f"fields that differ: {', '.join(diff)}; give the earlier values as options"
            + (" (add --schedule cosine-epoch)" if old_default else "")
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


def open_resume(resume: str | Path | None, cfg: RunConfig, reporter: Reporter) -> ResumeFile | None:
    """The resume file a run continues from (None: a fresh run), read and checked against the run's resolved
    ``cfg`` (:func:`check_resumable`)."""
    if resume is None:
        return None
    res = read_resume(resume)
    check_resumable(res, cfg, reporter)
    return res
