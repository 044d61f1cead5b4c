"""Models by name, timm-style: ``@register_model("snn", "resnet18")`` and ``create_model``.

Two namespaces share names: ``kind="snn"`` (spiking students, ``[T,B,...] -> [T,B,C]``)
and ``kind="ann"`` (teachers, ``[B,...] -> [B,C]``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from snnkd_cli.errors import SnnkdError

KINDS = ("snn", "ann")
_REGISTRY: dict[tuple[str, str], Callable[..., nn.Module]] = {}


def register_model(kind: str, name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers ``fn(num_classes, **kw) -> nn.Module`` under ``(kind, name)``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[(kind, name)] = fn
        return fn

    return deco


def list_models(kind: str | None = None) -> list[str]:
    """Registered names (of one kind, or all as ``kind/name``), sorted."""
    if kind is None:
        return sorted(f"{k}/{n}" for k, n in _REGISTRY)
    return sorted(n for k, n in _REGISTRY if k == kind)


def create_model(name: str, num_classes: int, *, kind: str = "snn", **kw) -> nn.Module:
    """Build a registered model.

    Args:
        name: architecture name, e.g. ``resnet18``.
        num_classes: size of the classifier output C.
        kind: ``"snn"`` for a spiking student or ``"ann"`` for a teacher.
        **kw: architecture options (``in_channels``, ``width``, ``stem``; for SNNs ``decay``, ``soft_reset``).

    Raises:
        SnnkdError: unknown name or kind.
    """
    if kind not in KINDS:
        raise SnnkdError(f"unknown model kind '{kind}': choose one of {', '.join(KINDS)}")
    fn = _REGISTRY.get((kind, name))
    if fn is None:
        what = "spiking student" if kind == "snn" else "ANN teacher"
        raise SnnkdError(f"unknown {what} architecture '{name}': choose one of {', '.join(list_models(kind))}")
    if num_classes < 1:
        raise SnnkdError(f"num_classes must be >= 1, got {num_classes}")
    return fn(num_classes, **kw)
