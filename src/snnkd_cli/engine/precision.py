"""Mixed precision in one place: an autocast context (a no-op for fp32) and a grad scaler for fp16."""

from __future__ import annotations

import contextlib

import torch

from snnkd_cli.config import PRECISIONS, check_choice

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for bf16/fp16, ``nullcontext`` for fp32 (an off switch costs nothing)."""
    check_choice(precision, PRECISIONS, "precision")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 (bf16 has fp32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
