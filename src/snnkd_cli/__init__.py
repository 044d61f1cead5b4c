"""snnkd: full-range logit distillation of spiking neural networks (one model for every T)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("snnkd")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"

from snnkd_cli.kd.losses import full_range_kd_loss, standard_kd_loss, twce_loss  # noqa: E402

__all__ = ["__version__", "full_range_kd_loss", "standard_kd_loss", "twce_loss"]
