"""The checkpoint format in one place: its names and version, every metadata key (named constants), the file
names of a training run, the functions that make each kind of metadata, and the one encoder of safetensors
bytes for snnkd's files (checkpoints, resume files, folded exports).

A new checkpoint key goes here: a constant, and a keyword of :func:`checkpoint_metadata` (or a function of its
own) that every writer calls. :mod:`snnkd_cli.checkpoint` reads and writes checkpoints, :mod:`snnkd_cli.saver`
writes a run's files; nothing else encodes safetensors except the DVS frame cache (``data/dvs.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from snnkd_cli import __version__
from snnkd_cli.config import CHECKPOINT_OF_NETWORK, RunConfig

if TYPE_CHECKING:
    import torch

FORMAT = "snnkd-checkpoint"
FORMAT_VERSION = "1"
KINDS = tuple(CHECKPOINT_OF_NETWORK.values())  # ("teacher", "student")
RESUME_FORMAT = "snnkd-resume"

# The metadata of a checkpoint (safetensors metadata: string values, JSON where structured).
FORMAT_KEY = "format"  # FORMAT (RESUME_FORMAT in a resume file)
FORMAT_VERSION_KEY = "format_version"
VERSION_KEY = "snnkd_version"  # the snnkd that wrote it
KIND_KEY = "kind"  # "teacher" or "student"
CONFIG_KEY = "config"  # the run config as JSON: what rebuilds the model (also in a resume file)
EPOCH_KEY = "epoch"  # training: the epoch that wrote it
METRICS_KEY = "metrics"  # training: {"val": the sweep rows of that epoch, "best_epoch"}
CLASSES_KEY = "classes"  # the class names, a JSON list (snnkd predict)
EXIT_RULE_KEY = "early_exit"  # eval-sweep --dynamic --save-threshold: the chosen rule and threshold
FOLDED_KEY = "folded"  # "1": BatchNorm folded (snnkd export --format safetensors)
FOLD_REPORT_KEY = "fold_report"  # what was folded
IMPORTED_FROM_KEY = "imported_from"  # snnkd import: the source file's name
LAYOUT_KEY = "layout"  # snnkd import: the source's key layout

# The metadata of a resume file, beside FORMAT_KEY and CONFIG_KEY.
LOOP_KEY = "loop"  # train.resume.LoopState as JSON: where the run stands
PARAM_GROUPS_KEY = "param_groups"
SCHEDULER_KEY = "scheduler"
SCALER_KEY = "scaler"
RNG_PYTHON_KEY = "rng_python"
RNG_NUMPY_KEY = "rng_numpy"

# The files of a training run in its folder.
BEST_FILE = "best.safetensors"  # best validation top-1 at the training T
LAST_FILE = "last.safetensors"
RESUME_FILE = "resume.safetensors"
LOG_FILE = "log.jsonl"  # one JSON object per epoch
CONFIG_FILE = "config.json"  # the resolved config, written with the first checkpoint
RUN_FILES = (BEST_FILE, LAST_FILE, RESUME_FILE, LOG_FILE)  # what makes a folder hold a run


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def checkpoint_metadata(
    kind: str,
    config: RunConfig,
    *,
    epoch: int | None = None,
    metrics: dict | None = None,
    classes: Iterable[str] = (),
    imported_from: str | None = None,
    layout: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The metadata of a snnkd checkpoint: format, version, kind ("teacher" or "student") and the run config as
    JSON (what rebuilds the model), then what the writer knows: a training epoch and its ``metrics``, the class
    names, an import's source and layout; ``extra`` adds keys (values not strings are stored as JSON)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    meta = {
        FORMAT_KEY: FORMAT,
        FORMAT_VERSION_KEY: FORMAT_VERSION,
        VERSION_KEY: __version__,
        KIND_KEY: kind,
        CONFIG_KEY: config.to_json(),
    }
    named = {EPOCH_KEY: epoch, METRICS_KEY: metrics, IMPORTED_FROM_KEY: imported_from, LAYOUT_KEY: layout}
    named[CLASSES_KEY] = list(classes) or None
    for key, value in {**named, **(extra or {})}.items():
        if value is not None:
            meta[key] = str(value) if key == EPOCH_KEY else _json(value)
    return meta


def folded_metadata(meta: dict[str, str], report_json: str) -> dict[str, str]:
    """A checkpoint's metadata (kind and config kept) for its BatchNorm-folded export: ``folded`` and the
    ``fold_report`` (JSON) added."""
    return {**meta, FOLDED_KEY: "1", FOLD_REPORT_KEY: report_json}


def is_folded(meta: dict[str, str]) -> bool:
    """Whether a file's metadata marks BatchNorm-folded weights (:func:`folded_metadata`)."""
    return meta.get(FOLDED_KEY) == "1"


def encode(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> bytes:
    """The safetensors bytes of ``tensors`` (made contiguous, on the CPU) with string ``meta``: the one
    writer of snnkd's checkpoint, resume and export files."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)
