"""Datasets by name. Samples are ``(image [C,H,W] float, label int)`` for static data."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Subset

from snnkd_cli.config import DATASETS, DataConfig, check_choice
from snnkd_cli.data.synthetic import SyntheticImages

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

DEFAULT_IMAGE_SIZE = {
    "synthetic": 16,
    "cifar10": 32,
    "cifar100": 32,
    "imagefolder": 64,
    "imagenet": 224,
    "cifar10dvs": 48,
    "synthetic-dvs": 32,
}


@dataclass(frozen=True)
class DataInfo:
    """What the models and the engine need to know about a dataset.

    ``temporal`` is False for static images (``[C,H,W]``, repeated at every step) and True
    for event frames (``[T,C,H,W]``, frame t fed at step t).
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    temporal: bool = False
    classes: tuple[str, ...] = ()
    frames: int | None = None  # event data: frames per sample (the largest T it supports)


def augment_policy(cfg: DataConfig, size: int | None = None) -> str:
    """The training augmentation policy that runs: ``cfg.augment``, or the dataset's default for ``auto``."""
    from snnkd_cli.data.transforms import default_augment

    size = size or cfg.image_size or DEFAULT_IMAGE_SIZE.get(cfg.dataset, 32)
    return default_augment(cfg.dataset, size) if cfg.augment == "auto" else cfg.augment


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
    """Build ``(train_set, val_set, info)``; ``train_set`` is None when ``train`` is False.

    The training split uses the policy :func:`augment_policy` gives, unless ``augment`` is False.

    Raises:
        SnnkdError: unknown dataset, missing files, wrong layout (one line, what to do).
    """
    check_choice(cfg.dataset, DATASETS, "dataset")
    size = cfg.image_size or DEFAULT_IMAGE_SIZE[cfg.dataset]
    if cfg.dataset == "synthetic":
        n_cls = cfg.num_classes or 10
        make = lambda n, split: SyntheticImages(n, n_cls, size, cfg.in_channels or 3, seed=0, split_seed=split)  # noqa: E731
        val = make(cfg.synthetic_val, 1)
        tr = make(cfg.synthetic_train, 0) if train else None
        return tr, val, DataInfo("synthetic", n_cls, cfg.in_channels or 3, size, False, val.classes)
    if cfg.dataset == "synthetic-dvs":
        from snnkd_cli.data.dvs_synthetic import SyntheticEvents

        n_cls, frames = cfg.num_classes or 10, cfg.frames or 8
        make = lambda n, split: SyntheticEvents(n, n_cls, frames, size, seed=0, split_seed=split)  # noqa: E731
        val = make(cfg.synthetic_val, 1)
        tr = make(cfg.synthetic_train, 0) if train else None
        classes = tuple(f"class_{i}" for i in range(n_cls))
        return tr, val, DataInfo("synthetic-dvs", n_cls, 2, size, True, classes, frames)
    if cfg.dataset == "cifar10dvs":
        from pathlib import Path

        from snnkd_cli.data.dvs import DVSFrames, open_dvs_cache

        cache = open_dvs_cache(
            Path(cfg.data_dir), frames=cfg.frames, size=cfg.image_size, split=cfg.split, resize=cfg.resize
        )
        val = DVSFrames(cache, train=False)
        tr = DVSFrames(cache, train=True, augment=augment and augment_policy(cfg, val.size) == "dvs") if train else None
        return tr, val, DataInfo("cifar10dvs", len(val.classes), 2, val.size, True, tuple(val.classes), val.frames)
    from snnkd_cli.data.static import build_static

    return build_static(cfg, size, train=train, augment=augment, policy=augment_policy(cfg, size))


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
    from snnkd_cli.errors import SnnkdError

    tr, _, info = build_datasets(cfg, train=True, augment=False)
    idx = calibration_indices(len(tr), fraction, seed)
    if not idx:
        raise SnnkdError(f"the calibration slice of {info.name}'s training split is empty: raise --calib-fraction")
    return Subset(tr, idx)


def without_calibration(train_set: Dataset, fraction: float, seed: int = CALIB_SEED) -> Dataset:
    """``train_set`` less its calibration slice (``snnkd distill --calib-holdout``)."""
    if fraction <= 0:
        return train_set
    held = set(calibration_indices(len(train_set), fraction, seed))
    return Subset(train_set, [i for i in range(len(train_set)) if i not in held])
