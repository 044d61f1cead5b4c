"""snnkd: full-range logit distillation of spiking neural networks (one model for every T)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("snnkd")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"

from snnkd_cli.kd.losses import full_range_kd_loss, standard_kd_loss, twce_loss  # noqa: E402

__all__ = ["__version__", "distill", "full_range_kd_loss", "standard_kd_loss", "sweep", "twce_loss"]


def __getattr__(name: str):
    """``distill`` and ``sweep`` load the engine on first use (keeps ``import snnkd_cli`` light)."""
    if name in ("distill", "sweep"):
        from snnkd_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'snnkd_cli' has no attribute {name!r}")
