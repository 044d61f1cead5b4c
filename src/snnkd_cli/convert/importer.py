"""``snnkd import``: weights saved by other code (the paper's released code, torchvision, timm) written as a
normal snnkd checkpoint, with the metadata training writes, so that ``eval-sweep``, ``export``, ``predict``
and early exit open it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnkd_cli.checkpoint import check_outputs, write_checkpoint
from snnkd_cli.config import DATASETS, TASK_OF_NETWORK, RunConfig, check_choice, freeze, from_preset
from snnkd_cli.convert import Converted, convert_state, read_state_dict
from snnkd_cli.data import build_datasets, resolved
from snnkd_cli.data.loaders import check_T_fits
from snnkd_cli.errors import SnnkdError, given, option
from snnkd_cli.format import checkpoint_metadata


@dataclass
class ImportReport:
    """What ``import_checkpoint`` wrote: the file, its config, the source layout and the keys renamed."""

    out: Path
    source: Path
    config: RunConfig
    converted: Converted

    @property
    def checkpoint_kind(self) -> str:
        return self.config.checkpoint_kind


def _check_out(src: Path, out: Path, overwrite: bool) -> None:
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise SnnkdError(f"{given('out', str(out))} is the source file itself: choose another file")
    check_outputs({"out": out}, (src,), overwrite)


def _resolved(cfg: RunConfig, conv: Converted, source: Path) -> tuple[RunConfig, tuple[str, ...]]:
    """The checkpoint's config, resolved and frozen: the network's stem and width from the weights, the data
    filled from the dataset as training does (the data must be readable, with the network's classes and input
    channels), and the class names."""
    data = cfg.data
    if data.dataset.startswith("synthetic"):  # generated data takes the network's classes (and channels)
        data = dataclasses.replace(data, num_classes=conv.num_classes, in_channels=conv.in_channels)
    _, _, info = build_datasets(data, train=False)
    if info.num_classes != conv.num_classes:
        raise SnnkdError(
            f"{source} predicts {conv.num_classes} classes but {info.name} has {info.num_classes}: "
            "import it with the dataset it was trained on"
        )
    if info.in_channels != conv.in_channels:
        raise SnnkdError(
            f"{source} takes {conv.in_channels}-channel input but {info.name} has {info.in_channels} channels"
        )
    if cfg.task == "distill":
        check_T_fits(cfg.train.T, info, option("T"))
    model = dataclasses.replace(
        cfg.model,
        stem=conv.options.get("stem", cfg.model.stem),
        width=conv.options.get("width", cfg.model.width),
        num_classes=info.num_classes,
        in_channels=info.in_channels,
    )
    return freeze(dataclasses.replace(cfg, data=resolved(data, info), model=model)), info.classes


def import_checkpoint(
    src: str | Path,
    out: str | Path,
    *,
    arch: str,
    kind: str,
    dataset: str,
    T: int | None = None,
    data_dir: str | Path = "./data",
    image_size: int | None = None,
    decay: float | None = None,
    soft_reset: bool | None = None,
    overwrite: bool = False,
) -> ImportReport:
    """Write the weights of ``src`` as a snnkd checkpoint of ``arch``.

    Args:
        src: a ``.pth``/``.pt`` (read weights-only; the paper's ``{"best_net": ...}`` unwrapped) or plain
            ``.safetensors`` file in a layout :mod:`snnkd_cli.convert` maps.
        out: the ``.safetensors`` file to write (refused if it exists, unless ``overwrite``).
        arch, kind: a registered network; ``"snn"`` (a student, ``[T,B,...] -> [T,B,C]``) or ``"ann"`` (a
            teacher, ``[B,...] -> [B,C]``). Width, stem, input channels and classes come from the weights.
        dataset, data_dir, image_size: the data it was trained on; it is read, as training does, to fill the
            checkpoint's data config and class names (its classes and channels must match the weights').
        T, decay, soft_reset: the student's timesteps and neuron (default: the dataset's paper recipe),
            which a state dict does not hold.

    Raises:
        SnnkdError: one line, nothing written: unreadable file, wrong kind, keys or shapes that do not map
            onto ``arch``, data that does not fit, an existing ``out``.
    """
    src, out = Path(src), Path(out)
    check_choice(kind, tuple(TASK_OF_NETWORK), "kind")
    check_choice(dataset, DATASETS, "dataset")
    _check_out(src, out, overwrite)
    spiking = kind == "snn"
    opts: dict[str, Any] = {"arch": arch, "T": T, "data_dir": str(data_dir), "image_size": image_size}
    opts |= {"decay": decay, "soft_reset": soft_reset, "out": str(out.parent)}
    cfg = from_preset(TASK_OF_NETWORK[kind], dataset, **opts)
    state = read_state_dict(src)
    neuron = {"decay": cfg.model.decay, "soft_reset": cfg.model.soft_reset} if spiking else {}
    conv = convert_state(
        state, arch, kind, source=str(src), label=f"{given('arch', arch)} {given('kind', kind)}", **neuron
    )
    cfg, classes = _resolved(cfg, conv, src)
    meta = checkpoint_metadata(
        cfg.checkpoint_kind, cfg, classes=classes, imported_from=src.name, layout=conv.layout.name
    )
    write_checkpoint(out, conv.model.state_dict(), meta)
    return ImportReport(out, src, cfg, conv)
