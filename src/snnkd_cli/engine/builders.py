"""Networks from configs and files: the model a config describes, a checkpoint's model, the teacher."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from snnkd_cli.config import ModelConfig, RunConfig
from snnkd_cli.data import DataInfo
from snnkd_cli.engine.checkpoint import Checkpoint, load_checkpoint
from snnkd_cli.errors import SnnkdError
from snnkd_cli.models import build_model


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
    if ckpt.meta.get("folded") == "1":
        from snnkd_cli.export import build_folded

        net = build_folded(ckpt.config)
    else:
        net = build_model(ckpt.config.model)
    try:
        net.load_state_dict(ckpt.state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise SnnkdError(f"{ckpt.path}: weights do not match its stored architecture ({first})") from None
    return net


def load_teacher(cfg: RunConfig, info: DataInfo, device: torch.device) -> nn.Module | None:
    kd = cfg.kd
    if kd.loss == "twce":
        return None
    if not kd.teacher:
        raise SnnkdError(f"--loss {kd.loss} needs --teacher TEACHER.safetensors (train one with 'snnkd train-teacher')")
    if Path(kd.teacher).suffix in (".pth", ".pt"):
        return load_foreign_teacher(cfg, info, device)
    ckpt = load_checkpoint(kd.teacher, expect="teacher")
    tm = ckpt.config.model
    if kd.teacher_arch and kd.teacher_arch != tm.arch:
        raise SnnkdError(
            f"--teacher-arch {kd.teacher_arch} contradicts {kd.teacher}, a {tm.arch} checkpoint: "
            "drop --teacher-arch (it is for .pth/.pt state dicts)"
        )
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


def _first_line(err: BaseException) -> str:
    """The first line of an error's message, without terminal colour codes (torch's load errors have them)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(err).splitlines()[0]) if str(err) else ""


def load_foreign_teacher(cfg: RunConfig, info: DataInfo, device: torch.device) -> nn.Module:
    """A teacher trained elsewhere: a torchvision/timm-style state dict (``.pth``/``.pt``), read with
    ``weights_only=True``, into the ANN named by ``--teacher-arch``."""
    kd, path = cfg.kd, Path(cfg.kd.teacher)
    if not kd.teacher_arch:
        raise SnnkdError(f"--teacher {path} is a state dict: also give --teacher-arch (e.g. resnet34)")
    if not path.is_file():
        raise SnnkdError(f"teacher state dict not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # not a pickle torch can read at all
            raise SnnkdError(f"{path} is not a PyTorch state dict file (it cannot be unpickled)") from None
        raise SnnkdError(  # torch's weights-only unpickler met an object other than tensors
            f"{path} holds pickled Python objects (a whole model?), not only tensors: snnkd reads .pth files "
            "weights-only and never runs their code; save model.state_dict() and pass that file"
        ) from None
    except Exception as e:  # noqa: BLE001  (a file torch cannot parse at all: refuse it in one line)
        raise SnnkdError(f"{path} is not a PyTorch state dict file ({type(e).__name__}: {_first_line(e)})") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise SnnkdError(f"{path} does not hold a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    stem = "imagenet" if info.image_size >= 128 else "cifar"
    tm = ModelConfig(
        arch=kd.teacher_arch, kind="ann", num_classes=info.num_classes, in_channels=info.in_channels, stem=stem
    )
    teacher = build_model(tm)
    want = teacher.state_dict()
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    shapes = [k for k in want if k in state and state[k].shape != want[k].shape]
    if {"conv1.weight", "fc.weight", "layer1.0.conv1.weight"} <= set(state):
        raise SnnkdError(
            f"{path} has a conv1/layer1..4/fc ResNet layout (torchvision, timm, the paper's code), not mapped onto "
            f"snnkd's {kd.teacher_arch} (stem, blocks, and a 3x3 stem for small images): train the teacher with "
            "'snnkd train-teacher'"
        )
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (first {extra[0]})")
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} of another shape (first {k}: {tuple(state[k].shape)} vs {tuple(want[k].shape)})"
            )
        raise SnnkdError(
            f"{path} does not fit --teacher-arch {kd.teacher_arch} with {info.num_classes} classes: "
            + "; ".join(parts)
            + " keys"
        )
    teacher.load_state_dict(state)
    cfg.teacher_model = tm
    return teacher.to(device).eval().requires_grad_(False)
