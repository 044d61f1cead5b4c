"""snnkd: full-range logit distillation of spiking neural networks (one model for every T)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("snnkd")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"

from snnkd_cli.kd.losses import full_range_kd_loss, standard_kd_loss, twce_loss  # noqa: E402

__all__ = [
    "EarlyExitClassifier",
    "__version__",
    "distill",
    "early_exit",
    "full_range_kd_loss",
    "standard_kd_loss",
    "sweep",
    "twce_loss",
]


def __getattr__(name: str):
    """``distill``, ``sweep``, ``EarlyExitClassifier`` and ``early_exit`` load the engine on first use
    (keeps ``import snnkd_cli`` light)."""
    if name in ("distill", "sweep"):
        from snnkd_cli import api

        return getattr(api, name)
    if name == "EarlyExitClassifier":
        from snnkd_cli.engine.exit_runtime import EarlyExitClassifier

        return EarlyExitClassifier
    if name == "early_exit":
        from snnkd_cli.engine.early_exit import early_exit

        return early_exit
    raise AttributeError(f"module 'snnkd_cli' has no attribute {name!r}")
