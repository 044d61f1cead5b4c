"""The teacher of a distillation run: a snnkd teacher checkpoint, or a state dict saved by other code."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from snnkd_cli.checkpoint import load_checkpoint, model_from_checkpoint, read_metadata
from snnkd_cli.config import ModelConfig, RunConfig
from snnkd_cli.convert import convert_state, read_state_dict
from snnkd_cli.convert.reader import is_safetensors
from snnkd_cli.data import DataInfo
from snnkd_cli.errors import SnnkdError, given, option
from snnkd_cli.format import FORMAT


def _check_fits(teacher: str | Path, num_classes: int, in_channels: int, info: DataInfo) -> None:
    """A teacher must predict the data's classes from its input channels (one line if not)."""
    if num_classes != info.num_classes:
        raise SnnkdError(
            f"teacher {teacher} has {num_classes} classes but {info.name} has "
            f"{info.num_classes}: use a teacher trained on this dataset"
        )
    if in_channels != info.in_channels:
        raise SnnkdError(f"teacher {teacher} takes {in_channels} input channels but {info.name} has {info.in_channels}")


def load_teacher(cfg: RunConfig, info: DataInfo, device: torch.device) -> tuple[nn.Module | None, ModelConfig | None]:
    """The teacher of a distillation run, checked against the data, and the config of its network (what the
    run's ``teacher_model`` records); ``(None, None)`` for ``--loss twce``.

    Raises:
        SnnkdError: no teacher given, a file of the wrong kind, or classes/channels that differ from the data.
    """
    kd = cfg.kd
    if kd.loss == "twce":
        return None, None
    if not kd.teacher:
        raise SnnkdError(
            f"{given('loss', kd.loss)} needs {option('teacher')} TEACHER.safetensors "
            "(train one with 'snnkd train-teacher')"
        )
    if is_foreign_teacher(kd.teacher, kd.teacher_arch):
        return load_foreign_teacher(cfg, info, device)
    ckpt = load_checkpoint(kd.teacher, expect="teacher")
    tm = ckpt.config.model
    if kd.teacher_arch and kd.teacher_arch != tm.arch:
        raise SnnkdError(
            f"{given('teacher_arch', kd.teacher_arch)} contradicts {kd.teacher}, a {tm.arch} checkpoint: "
            f"drop {option('teacher_arch')} (it is for .pth/.pt state dicts)"
        )
    _check_fits(kd.teacher, tm.num_classes, tm.in_channels, info)
    teacher = model_from_checkpoint(ckpt).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, tm


FOREIGN_SUFFIXES = (".pth", ".pt", ".bin")


def is_foreign_teacher(path: str | Path, teacher_arch: str) -> bool:
    """True when ``--teacher`` is a state dict saved by other code rather than a snnkd checkpoint: a
    ``.pth``/``.pt``/``.bin`` file, or (with ``--teacher-arch``) any file without snnkd metadata."""
    path = Path(path)
    if path.suffix in FOREIGN_SUFFIXES:
        return True
    if not teacher_arch or not path.is_file():
        return False
    if not is_safetensors(path):
        return True
    try:
        return read_metadata(path).get("format") != FORMAT
    except SnnkdError:
        return True


def load_foreign_teacher(cfg: RunConfig, info: DataInfo, device: torch.device) -> tuple[nn.Module, ModelConfig]:
    """A teacher trained elsewhere, loaded into the ANN named by ``--teacher-arch``: a state dict in any layout
    :mod:`snnkd_cli.convert` maps (torchvision, timm, the paper's ``{"best_net": ...}`` ANN teachers, snnkd's
    own), read weights-only and converted in memory. Width, stem and input channels come from the weights."""
    kd, path = cfg.kd, Path(cfg.kd.teacher)
    if not kd.teacher_arch:
        raise SnnkdError(
            f"{given('teacher', str(path))} is a state dict: also give {option('teacher_arch')} (e.g. resnet34)"
        )
    state = read_state_dict(path)
    label = given("teacher_arch", kd.teacher_arch)
    conv = convert_state(state, kd.teacher_arch, "ann", source=str(path), label=label, kind_hint=False)
    _check_fits(path, conv.num_classes, conv.in_channels, info)
    tm = ModelConfig(arch=kd.teacher_arch, kind="ann", num_classes=conv.num_classes, in_channels=conv.in_channels)
    tm.width = conv.options.get("width", tm.width)
    tm.stem = conv.options.get("stem", tm.stem)
    return conv.model.to(device).eval().requires_grad_(False), tm
