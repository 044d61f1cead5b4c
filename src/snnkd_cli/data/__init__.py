"""Datasets by name. Samples are ``(image [C,H,W] float, label int)`` for static data."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch.utils.data import Dataset, Subset

from snnkd_cli.config import EVENT_DATASETS, DataConfig
from snnkd_cli.data.registry import CIFAR10_NAMES, SPECS, DataInfo, DatasetSpec, dataset_spec

__all__ = [
    "CIFAR10_NAMES",
    "DEFAULT_IMAGE_SIZE",
    "DataInfo",
    "DatasetSpec",
    "augment_policy",
    "build_datasets",
    "calibration_indices",
    "calibration_split",
    "dataset_spec",
    "for_run_length",
    "resolved",
    "without_calibration",
]

DEFAULT_IMAGE_SIZE = {name: spec.image_size for name, spec in SPECS.items()}  # the registry's, by name


def augment_policy(cfg: DataConfig, size: int | None = None, epochs: int | None = None) -> str:
    """The training augmentation policy that runs: ``cfg.augment``, or the dataset's default for ``auto`` (for
    event data it depends on the run's ``epochs``: :func:`for_run_length`)."""
    from snnkd_cli.data.transforms import default_augment

    size = size or cfg.image_size or DEFAULT_IMAGE_SIZE.get(cfg.dataset, 32)
    return default_augment(cfg.dataset, size, epochs) if cfg.augment == "auto" else cfg.augment


def for_run_length(cfg: DataConfig, epochs: int) -> DataConfig:
    """``cfg`` with ``--augment auto`` settled where the default depends on the length of the run (event data:
    none below ``DVS_AUGMENT_MIN_EPOCHS`` epochs); other data unchanged, resolved later from its image size."""
    if cfg.augment != "auto" or cfg.dataset not in EVENT_DATASETS:
        return cfg
    return dataclasses.replace(cfg, augment=augment_policy(cfg, epochs=epochs))


def resolved(cfg: DataConfig, info: DataInfo) -> DataConfig:
    """``cfg`` with the dataset's classes, channels, image size and augmentation policy filled in."""
    return dataclasses.replace(
        cfg,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        image_size=info.image_size,
        frames=info.frames if info.temporal else cfg.frames,
        augment=augment_policy(cfg, info.image_size),
    )


def build_datasets(
    cfg: DataConfig, *, train: bool = True, augment: bool = True
) -> tuple[Dataset | None, Dataset, DataInfo]:
    """Build ``(train_set, val_set, info)`` with the dataset's :class:`DatasetSpec`; ``train_set`` is None when
    ``train`` is False.

    The training split uses the policy :func:`augment_policy` gives, unless ``augment`` is False.

    Raises:
        SnnkdError: unknown dataset, missing files, wrong layout (one line, what to do).
    """
    from snnkd_cli.errors import SnnkdError

    spec = dataset_spec(cfg.dataset)
    size = cfg.image_size or spec.image_size
    tr, val, info = spec.build(cfg, size, train, augment, augment_policy(cfg, size))
    for split, part in (("training", tr), ("validation", val)):
        if part is not None and len(part) == 0:  # a metric on it would read 0.00, a "best" epoch chosen on nothing
            raise SnnkdError(
                f"the {split} split of {info.name} in {cfg.data_dir} has no samples: add {split} data"
                + (" (preprocess-dvs: at least 10 recordings for --split random, or --split per-class)"
                   if cfg.dataset == "cifar10dvs" else "")
            )  # fmt: skip
    return tr, val, info


CALIB_SEED = 0  # the permutation that defines the calibration slice of a training split


def calibration_indices(n: int, fraction: float, seed: int = CALIB_SEED) -> list[int]:
    """The calibration slice of a training split of ``n`` samples: the first ``ceil(fraction * n)`` of a
    permutation fixed by ``seed`` (sorted). A smaller fraction gives a subset of a larger one."""
    k = math.ceil(fraction * n)
    return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].tolist())


def calibration_split(cfg: DataConfig, fraction: float, seed: int = CALIB_SEED) -> Subset:
    """The calibration slice of the training split, with the evaluation transforms (never the evaluation set).

    The same checkpoint and data give the same slice on any machine. A student distilled with
    ``calib_holdout >= fraction`` (``snnkd distill --calib-holdout``) never trained on it.

    Raises:
        SnnkdError: the slice would be empty, or the training split cannot be read.
    """
    from snnkd_cli.errors import SnnkdError, option

    tr, _, info = build_datasets(cfg, train=True, augment=False)
    idx = calibration_indices(len(tr), fraction, seed)
    if not idx:
        raise SnnkdError(
            f"the calibration slice of {info.name}'s training split is empty: raise {option('calib_fraction')}"
        )
    return Subset(tr, idx)


def without_calibration(train_set: Dataset, fraction: float, seed: int = CALIB_SEED) -> Dataset:
    """``train_set`` less its calibration slice (``snnkd distill --calib-holdout``)."""
    if fraction <= 0:
        return train_set
    held = set(calibration_indices(len(train_set), fraction, seed))
    return Subset(train_set, [i for i in range(len(train_set)) if i not in held])
