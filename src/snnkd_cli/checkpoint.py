"""Checkpoints: safetensors tensors plus string metadata (the run config as JSON), and the network a
checkpoint rebuilds from its own config.

Nothing is unpickled. Files are written to a temporary file in the same folder, flushed,
and renamed over the target, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snnkd_cli.config import RunConfig, check_exit_rule
from snnkd_cli.errors import SnnkdError, given, option
from snnkd_cli.format import (
    CONFIG_FILE,
    CONFIG_KEY,
    EXIT_RULE_KEY,
    FORMAT,
    FORMAT_KEY,
    FORMAT_VERSION,
    FORMAT_VERSION_KEY,
    KIND_KEY,
    KINDS,
    LOG_FILE,
    METRICS_KEY,
    RUN_FILES,
    VERSION_KEY,
    checkpoint_metadata,
    encode,
    is_folded,
)
from snnkd_cli.fsutil import STDOUT, atomic_write_bytes, check_output_file, read_safetensors
from snnkd_cli.models import build_model
from snnkd_cli.models.fold import build_folded


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``kind`` is "teacher" (ANN) or "student" (SNN)."""

    path: Path
    kind: str
    config: RunConfig
    state: dict[str, torch.Tensor]
    meta: dict[str, str]

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads(self.meta.get(METRICS_KEY, "{}"))


def write_checkpoint(path: Path, state: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Write ``state`` (a state_dict) with ``meta`` (from :func:`snnkd_cli.format.checkpoint_metadata`),
    atomically: what every checkpoint writer calls."""
    atomic_write_bytes(Path(path), encode(state, meta))


def save_checkpoint(
    path: Path, state: dict[str, torch.Tensor], kind: str, config: RunConfig, extra: dict[str, Any] | None = None
) -> None:
    """Save ``state`` (a state_dict) with the run config and ``extra`` (JSON-able) as metadata."""
    write_checkpoint(path, state, checkpoint_metadata(kind, config, extra=extra))


def update_metadata(path: Path, extra: dict[str, str]) -> None:
    """Add or replace metadata keys of a snnkd checkpoint, keeping its tensors; the file is rewritten atomically.

    Raises:
        SnnkdError: the file is not a readable snnkd checkpoint, or cannot be written.
    """
    state, meta = _open(Path(path), tensors=True)
    meta.update(extra)
    write_checkpoint(path, state, meta)


def store_exit_rule(path: Path, record: dict) -> dict:
    """Write an early-exit record (``evaluation.early_exit.exit_rule_record``) into the checkpoint's metadata,
    atomically; returns it."""
    update_metadata(path, {EXIT_RULE_KEY: json.dumps(record, sort_keys=True)})
    return record


def stored_exit_rule(meta: dict[str, str]) -> dict | None:
    """The early-exit record a checkpoint's metadata holds (:func:`store_exit_rule`), or None.

    Raises:
        SnnkdError: a record that cannot be read (one line saying how to write it again).
    """
    raw = meta.get(EXIT_RULE_KEY)
    if raw is None:
        return None
    try:
        stored = json.loads(raw)
        check_exit_rule(stored["rule"])
        int(stored["max_T"])
    except (ValueError, KeyError, TypeError, SnnkdError) as e:
        raise SnnkdError(
            f"the stored early-exit rule cannot be read ({e}); re-run eval-sweep --dynamic --save-threshold"
        ) from None
    return stored


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a snnkd checkpoint, without reading its tensors."""
    return _open(Path(path), tensors=False)[1]


def load_checkpoint(path: str | Path, expect: str | None = None) -> Checkpoint:
    """Load a snnkd checkpoint.

    Args:
        path: a ``.safetensors`` file written by snnkd.
        expect: "teacher" or "student" to insist on one kind (``None``: either).

    Raises:
        SnnkdError: missing, corrupt or truncated file; not a snnkd checkpoint; wrong kind.
    """
    path = Path(path)
    state, meta = _open(path, tensors=True)
    kind = meta[KIND_KEY]
    if expect is not None and kind != expect:
        need = (
            "an ANN teacher checkpoint (from 'snnkd train-teacher')"
            if expect == "teacher"
            else "a spiking student checkpoint (from 'snnkd distill')"
        )
        raise SnnkdError(f"{path} is a {kind} checkpoint, but {need} is needed here")
    try:
        config = RunConfig.from_dict(json.loads(meta[CONFIG_KEY]))
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise SnnkdError(f"{path}: its stored configuration cannot be read ({e}); re-create the checkpoint") from None
    return Checkpoint(path, kind, config, state, meta)


def check_rebuildable(ckpt: Checkpoint) -> None:
    """A checkpoint names the network it holds (the Python API stores an empty arch for a module it did
    not build), else one line saying how to make one that does."""
    if not ckpt.config.model.arch:
        raise SnnkdError(
            f"{ckpt.path} holds a student the Python API trained from a module snnkd cannot rebuild: build it with "
            "snnkd_cli.models.create_model (a registered arch or 'package.module:factory') to use it here"
        )


def model_from_checkpoint(ckpt: Checkpoint) -> nn.Module:
    """Rebuild a checkpoint's network from its own config and load its weights (strict).

    A file from ``snnkd export --format safetensors`` (BN folded) is rebuilt folded.
    """
    check_rebuildable(ckpt)
    if is_folded(ckpt.meta):
        net = build_folded(ckpt.config)
    else:
        net = build_model(ckpt.config.model)
    try:
        net.load_state_dict(ckpt.state, strict=True)
    except RuntimeError as e:
        first = state_mismatch(net.state_dict(), ckpt.state) or str(e).splitlines()[0]
        if ckpt.config.model.arch == "preact_resnet34" and any(k.startswith("final.") for k in ckpt.state):
            first = (
                "it has the layout of snnkd's earlier preact_resnet34 (BN before each LIF, a final BN and LIF), "
                "replaced by the paper's network; train the student again"
            )
        raise SnnkdError(f"{ckpt.path}: weights do not match its stored architecture ({first})") from None
    return net


def state_mismatch(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> str:
    """How ``got`` differs from the state dict ``expected``, naming the first tensors ("" if it fits)."""

    def listed(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    shapes = [f"{k} {list(got[k].shape)} (the network: {list(v.shape)})" for k, v in expected.items()
              if k in got and got[k].shape != v.shape]  # fmt: skip
    parts = [f"{len(missing)} missing: {listed(missing)}"] if missing else []
    parts += [f"{len(extra)} unexpected: {listed(extra)}"] if extra else []
    parts += [f"{len(shapes)} of another shape: {listed(shapes)}"] if shapes else []
    return "tensors " + "; ".join(parts) if parts else ""


def _open(path: Path, tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    state, meta = read_safetensors(path, "checkpoint", tensors=tensors)
    if meta.get(FORMAT_KEY) != FORMAT or meta.get(KIND_KEY) not in KINDS:
        raise SnnkdError(
            f"{path} is a safetensors file but not a snnkd checkpoint (no snnkd metadata); "
            "pass a file written by 'snnkd train-teacher' or 'snnkd distill'"
        )
    version = meta.get(FORMAT_VERSION_KEY, FORMAT_VERSION)
    if not version.isdigit() or int(version) > int(FORMAT_VERSION):
        raise SnnkdError(
            f"{path} is in checkpoint format version {version} (written by snnkd {meta.get(VERSION_KEY, '?')}); "
            f"this snnkd reads version {FORMAT_VERSION} and older: upgrade snnkd to read it"
        )
    return state, meta


def run_files_in(out: str | Path) -> list[str]:
    """The files of a run (:data:`RUN_FILES`) that ``out`` holds."""
    return [name for name in RUN_FILES if (Path(out) / name).exists()]


def check_fresh_out(out: str | Path, overwrite: bool) -> None:
    """Refuse to start a new run in a folder that holds one, unless ``overwrite`` (the user's consent)."""
    out = Path(out)
    found = run_files_in(out)
    if not found or overwrite:
        return
    n = 2
    while (free := out.with_name(f"{out.name}-{n}")).exists():
        n += 1
    raise SnnkdError(
        f"{out} already holds a run ({found[0]}): pass {option('overwrite')} to replace it, --resume to continue it, "
        f"or another {option('out')} (free: {free})"
    )


def check_outputs(
    outputs: dict[str, str | Path | None], inputs: tuple[str | Path, ...] = (), overwrite: bool = False
) -> None:
    """The one check of the files a command writes (``json``, ``csv``, ``out``), before any work.

    ``outputs`` maps each option's name to its path; None and ``-`` (standard output) pass. Refused: a
    folder or a place that cannot be written; two outputs on one path; an output that is one of ``inputs``;
    a file of a training run (:data:`RUN_FILES`, ``config.json``) in a folder that holds one (``log.jsonl``),
    even with ``overwrite``; any other existing file unless ``overwrite``.

    Raises:
        SnnkdError: one line naming the option and its path, and what to do.
    """
    seen: dict[Path, str] = {}
    read = {Path(p).resolve() for p in inputs}
    for name, path in outputs.items():
        if path is None or str(path) == STDOUT:
            continue
        check_output_file(path, option(name))
        real, what = Path(path).resolve(), given(name, path)
        if real in seen:
            raise SnnkdError(f"{option(seen[real])} and {option(name)} are both {path}: give each its own file")
        seen[real] = name
        if real in read:
            raise SnnkdError(f"{what} is an input of this command: choose another file")
        if real.name in (*RUN_FILES, CONFIG_FILE) and (real.parent / LOG_FILE).exists():
            raise SnnkdError(f"{what} is a file of the training run in {real.parent}: choose another path")
        if real.exists() and not overwrite:
            raise SnnkdError(f"{what} already exists: pass {option('overwrite')} to replace it, or choose another path")


def check_writable(path: str | Path, why: str) -> None:
    """Before any long work: the existing file ``path`` can be replaced in place (``why``: the option that will)."""
    path = Path(path)
    read_only = not path.stat().st_mode & 0o222  # refused even where root could write it: the owner's intent
    if read_only or not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)):
        raise SnnkdError(f"{why} cannot write {path} (read-only file or folder): copy it somewhere writable first")
