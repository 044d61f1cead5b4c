"""The folded safetensors format (inference weights only). The folding itself (:func:`fold_bn`,
:func:`build_folded`, :class:`FoldReport`) is :mod:`snnkd_cli.models.fold`'s, re-exported here.

A folded file keeps the checkpoint's metadata (``kind``, ``config``...) and adds ``"folded": "1"``
and ``"fold_report"`` (:func:`snnkd_cli.format.folded_metadata`); :func:`build_folded` rebuilds the same
structure from the config, so :func:`load_exported` is ``build_folded(config) -> load_state_dict(strict=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from snnkd_cli import format as fmt
from snnkd_cli.config import RunConfig
from snnkd_cli.errors import SnnkdError
from snnkd_cli.fsutil import read_safetensors
from snnkd_cli.models import build_model
from snnkd_cli.models.fold import FoldReport, build_folded, fold_bn

__all__ = ["FoldReport", "build_folded", "fold_bn", "folded_metadata", "load_exported"]


def folded_metadata(meta: dict[str, str], report: FoldReport) -> dict[str, str]:
    """The checkpoint's metadata (kind and config kept) plus ``folded`` and ``fold_report``."""
    return fmt.folded_metadata(meta, report.to_json())


def load_exported(path: str | Path) -> nn.Module:
    """Rebuild a model from a folded safetensors file written by ``snnkd export --format safetensors``.

    Args:
        path: the exported file (an unfolded snnkd checkpoint is accepted as well).

    Returns:
        The network in eval mode: an SNN maps ``[T, B, C, H, W]`` to ``[T, B, classes]``, an ANN
        ``[B, C, H, W]`` to ``[B, classes]``.

    Raises:
        SnnkdError: missing or unreadable file, no snnkd metadata, or weights that do not match.
    """
    path = Path(path)
    state, meta = read_safetensors(path, "exported model")
    if fmt.CONFIG_KEY not in meta:
        raise SnnkdError(f"{path} has no snnkd metadata (no 'config'); pass a file written by 'snnkd export'")
    try:
        config = RunConfig.from_dict(json.loads(meta[fmt.CONFIG_KEY]))
    except (ValueError, TypeError) as e:
        raise SnnkdError(f"{path}: its stored configuration cannot be read ({e})") from None
    net = build_folded(config) if fmt.is_folded(meta) else build_model(config.model)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SnnkdError(f"{path}: weights do not match the stored architecture ({str(e).splitlines()[0]})") from None
    return net.eval()
