"""The checkpoint format's fields, in one place: every writer (training, the Python API, export) takes its
metadata from :func:`checkpoint_metadata`; :mod:`snnkd_cli.checkpoint` reads and writes the files."""

from __future__ import annotations

from snnkd_cli import __version__
from snnkd_cli.config import CHECKPOINT_OF_NETWORK, RunConfig

FORMAT = "snnkd-checkpoint"
FORMAT_VERSION = "1"
KINDS = tuple(CHECKPOINT_OF_NETWORK.values())  # ("teacher", "student")


def checkpoint_metadata(kind: str, config: RunConfig) -> dict[str, str]:
    """The metadata every snnkd checkpoint carries: format, version, kind ("teacher" or "student") and
    the run config as JSON (what rebuilds the model)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "snnkd_version": __version__,
        "kind": kind,
        "config": config.to_json(),
    }
