"""Mixed precision in one place: an autocast context (a no-op for fp32) and a grad scaler for fp16."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from snnkd_cli.config import PRECISIONS, check_choice

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_bf16()


@functools.cache
def _cpu_bf16() -> bool:
    """The CPU flags, read once per process (``autocast("auto", ...)`` runs at every step)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:  # not Linux: no cheap way to tell, stay on fp32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where the device computes it natively, else ``fp32``; others unchanged.

    bf16 is the default because it trains ~1.8x faster on such CPUs with no loss of accuracy
    (measured over 3 seeds on synthetic data: docs/results.md); without native bf16 it is slower.
    """
    check_choice(precision, PRECISIONS, "precision")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def precision_note(precision: str, device: torch.device) -> str | None:
    """A warning for a precision that runs but is a poor choice on ``device`` (None when it is fine)."""
    if precision == "fp16" and device.type == "cpu":
        return "--precision fp16 on a CPU is emulated (about 25x slower than bf16 here): use bf16 or auto"
    if precision == "bf16" and not native_bf16(device):
        return f"--precision bf16: this {device.type} has no native bf16 and may run slower than fp32"
    return None


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for bf16/fp16, ``nullcontext`` for fp32 (an off switch costs nothing)."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 (bf16 has fp32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=resolve_precision(precision, device) == "fp16")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def cudnn_autotune(device: torch.device) -> Iterator[None]:
    """cuDNN benchmark mode inside the block on CUDA (each convolution's fastest algorithm, timed once per
    input shape: training batches have one shape, so the search runs once); the previous setting after it.
    Elsewhere nothing changes."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
