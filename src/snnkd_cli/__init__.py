"""snnkd: full-range logit distillation of spiking neural networks (one model for every T)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("snnkd")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"

__all__ = [
    "EarlyExitClassifier",
    "__version__",
    "distill",
    "early_exit",
    "full_range_kd_loss",
    "import_checkpoint",
    "load_foreign",
    "standard_kd_loss",
    "sweep",
    "twce_loss",
]


def __getattr__(name: str):
    """Everything in ``__all__`` loads torch and the engine on first use: ``import snnkd_cli`` (and so
    ``snnkd --help``) stays light."""
    if name in ("full_range_kd_loss", "standard_kd_loss", "twce_loss"):
        from snnkd_cli.kd import losses

        return getattr(losses, name)
    if name in ("distill", "sweep", "load_foreign"):
        from snnkd_cli import api

        return getattr(api, name)
    if name == "import_checkpoint":
        from snnkd_cli.convert.importer import import_checkpoint

        return import_checkpoint
    if name == "EarlyExitClassifier":
        from snnkd_cli.inference.exit_runtime import EarlyExitClassifier

        return EarlyExitClassifier
    if name == "early_exit":
        from snnkd_cli.evaluation.early_exit import early_exit

        return early_exit
    raise AttributeError(f"module 'snnkd_cli' has no attribute {name!r}")
