"""THE saver of a training run: ``best``/``last``/``resume.safetensors``, ``log.jsonl`` and ``config.json`` in
its folder (and TensorBoard events), with the metadata of :mod:`snnkd_cli.format`.

The training loop (:func:`snnkd_cli.train.loop.fit`) calls a :class:`Saver`; the command line and the Python
API both hand it a :class:`RunSaver` (the quiet base where nothing is written: the API without ``out``, and
the processes other than the main one under torchrun). Every file is written to a temporary file and renamed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snnkd_cli.checkpoint import write_checkpoint
from snnkd_cli.config import RunConfig
from snnkd_cli.errors import SnnkdError, option
from snnkd_cli.format import (
    BEST_FILE,
    CONFIG_FILE,
    CONFIG_KEY,
    FORMAT_KEY,
    LAST_FILE,
    LOG_FILE,
    LOOP_KEY,
    PARAM_GROUPS_KEY,
    RESUME_FILE,
    RESUME_FORMAT,
    RNG_NUMPY_KEY,
    RNG_PYTHON_KEY,
    RUN_FILES,
    SCALER_KEY,
    SCHEDULER_KEY,
    checkpoint_metadata,
    encode,
)
from snnkd_cli.fsutil import atomic_write_bytes

TENSORBOARD_DIR = "tensorboard"


class Saver:
    """Where :func:`~snnkd_cli.train.loop.fit` writes: this base writes nothing (override what you need).

    ``epoch_end`` is called after validation with the epoch's metrics; ``resume_point`` when a resume file is
    due (each epoch, and every ``save_every`` steps when the run is given one); ``log`` with each epoch's record.
    """

    out: Path | None = None  # the run's folder (None: nothing is written)
    created: bool = False  # this run made ``out`` (removed again if the run fails before its first checkpoint)

    def start(self, fresh: bool) -> None:
        """Before the first step; ``fresh``: a new run (not a resumed one)."""

    def epoch_end(self, epoch: int, improved: bool, metrics: dict) -> None:
        """Write last (and best, when ``improved``) checkpoints; ``metrics``: ``{"val", "best_epoch"}``."""

    def resume_point(self, loop: Any, opt: torch.optim.Optimizer, sched: Any, scaler: Any) -> None:
        """Write the resume file (``loop``: a :class:`~snnkd_cli.train.resume.LoopState`)."""

    def log(self, record: dict) -> None:
        """Append one epoch's record to the run's logs."""


class RunSaver(Saver):
    """Writes a run's files in ``out``: the checkpoints of ``model`` with ``config`` and the class names
    (metadata ``classes``, for ``snnkd predict``), the resume file, ``log.jsonl``, ``config.json`` (with the
    first checkpoint: a run that fails sooner leaves no file) and, with ``tensorboard``, event files in
    ``out/tensorboard``.

    Raises:
        SnnkdError: ``tensorboard`` without the tensorboard package.
    """

    def __init__(
        self,
        out: str | Path,
        model: nn.Module,
        config: RunConfig,
        *,
        classes: tuple[str, ...] | list[str] = (),
        tensorboard: bool = False,
        created: bool = False,
    ) -> None:
        self.out, self.model, self.config, self.created = Path(out), model, config, created
        self.kind = config.checkpoint_kind
        self.classes = list(classes)
        self.config_written = False
        self.writer = None
        self._writer_class = None
        if tensorboard:  # checked now, opened by start(): a fresh run first removes the old run's events
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise SnnkdError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
            self._writer_class = SummaryWriter

    def start(self, fresh: bool) -> None:
        if fresh:  # a fresh run (--overwrite): no file of the replaced run survives
            clear_run(self.out)
        if self._writer_class is not None:
            self.writer = self._writer_class(str(self.out / TENSORBOARD_DIR))

    def epoch_end(self, epoch: int, improved: bool, metrics: dict) -> None:
        if not self.config_written:
            config = json.dumps(dataclasses.asdict(self.config), indent=2).encode()
            atomic_write_bytes(self.out / CONFIG_FILE, config)
            self.config_written = True
        meta = checkpoint_metadata(self.kind, self.config, epoch=epoch, metrics=metrics, classes=self.classes)
        state = self.model.state_dict()
        write_checkpoint(self.out / LAST_FILE, state, meta)
        if improved:
            write_checkpoint(self.out / BEST_FILE, state, meta)

    def resume_point(self, loop: Any, opt: torch.optim.Optimizer, sched: Any, scaler: Any) -> None:
        save_resume(self.out / RESUME_FILE, self.model, opt, sched, scaler, loop, self.config)

    def log(self, record: dict) -> None:
        path = self.out / LOG_FILE
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


def save_resume(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    scaler: Any,
    loop: Any,
    config: RunConfig,
) -> None:
    """Write the whole training state to ``path`` atomically: the model, the optimiser's buffers and the RNG
    states as tensors; the loop position (``loop``, a dataclass), schedule, scaler, Python/NumPy RNG and the
    config as JSON metadata (read back by :mod:`snnkd_cli.train.resume`)."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    osd = opt.state_dict()
    for idx, st in osd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim/{idx}/{name}"] = val
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    py_state = random.getstate()
    sched_state = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
    meta = {
        FORMAT_KEY: RESUME_FORMAT,
        CONFIG_KEY: config.to_json(),
        LOOP_KEY: json.dumps(dataclasses.asdict(loop)),
        PARAM_GROUPS_KEY: json.dumps(osd["param_groups"]),
        SCHEDULER_KEY: json.dumps(sched_state),
        SCALER_KEY: json.dumps(scaler.state_dict()),
        RNG_PYTHON_KEY: json.dumps([py_state[0], list(py_state[1]), py_state[2]]),
    }
    try:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        tensors["rng/numpy"] = torch.from_numpy(keys.astype(np.int64))
        meta[RNG_NUMPY_KEY] = json.dumps([kind, int(pos), int(has_gauss), float(gauss)])
    except ImportError:  # numpy is optional
        pass
    atomic_write_bytes(Path(path), encode(tensors, meta))


def clear_run(out: Path) -> None:
    """Remove the files of a run in ``out`` (:data:`~snnkd_cli.format.RUN_FILES`, ``config.json``,
    ``tensorboard/``)."""
    for name in (*RUN_FILES, CONFIG_FILE):
        (out / name).unlink(missing_ok=True)
    if (out / TENSORBOARD_DIR).is_dir():  # the old run's curves would mix with the new ones
        shutil.rmtree(out / TENSORBOARD_DIR)


def open_out_dir(out: str | Path) -> tuple[Path, bool]:
    """Create ``out`` (and parents) and check it is writable, before any training starts; returns it and
    whether it was created here.

    Raises:
        SnnkdError: the folder cannot be made or written.
    """
    out = Path(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".snnkd-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        for stale in out.glob(".*.tmp"):  # temp files of a run that was killed mid-write
            stale.unlink()
    except OSError as e:
        raise SnnkdError(
            f"cannot write to output folder {out}: {e.strerror or e}; choose another {option('out')}"
        ) from None
    return out, created
