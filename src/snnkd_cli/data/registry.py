"""What a dataset is, in one place: one :class:`DatasetSpec` per name in :data:`snnkd_cli.config.DATASETS`.

A spec holds the default image size, whether samples are event frames, the class names it knows, and
the function that builds its splits. The readers themselves (torchvision's CIFAR, image folders, the DVS
cache, the synthetic sets) stay in their modules and load on first use, so this module imports no torch
until a dataset is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from snnkd_cli.config import DATASETS, DataConfig, check_choice

if TYPE_CHECKING:
    from torch.utils.data import Dataset

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


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


Splits = tuple["Dataset | None", "Dataset", DataInfo]
Builder = Callable[[DataConfig, int, bool, bool, str], Splits]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: its default side, its kind of sample, the class names it knows, and its builder.

    ``build(cfg, size, train, augment, policy) -> (train_set | None, val_set, info)``: ``size`` is the
    image side asked for (the default when the config has none), ``policy`` the training augmentation.
    ``class_names`` are known names (CIFAR-10's; empty: read from the data or the checkpoint);
    ``folder_classes``: the class names are the folders of ``DATA_DIR/val``.
    """

    name: str
    image_size: int
    temporal: bool
    build: Builder
    class_names: tuple[str, ...] = ()
    folder_classes: bool = False


def _synthetic(cfg: DataConfig, size: int, train: bool, augment: bool, policy: str) -> Splits:
    from snnkd_cli.data.synthetic import SyntheticImages

    n_cls, chans = cfg.num_classes or 10, cfg.in_channels or 3
    make = lambda n, split: SyntheticImages(n, n_cls, size=size, channels=chans, seed=0, split_seed=split)  # noqa: E731
    val = make(cfg.synthetic_val, 1)
    tr = make(cfg.synthetic_train, 0) if train else None
    return tr, val, DataInfo("synthetic", n_cls, chans, size, False, val.classes)


def _synthetic_dvs(cfg: DataConfig, size: int, train: bool, augment: bool, policy: str) -> Splits:
    from snnkd_cli.data.dvs_synthetic import SyntheticEvents

    n_cls, frames = cfg.num_classes or 10, cfg.frames or 8
    make = lambda n, split: SyntheticEvents(n, n_cls, frames=frames, size=size, seed=0, split_seed=split)  # noqa: E731
    val = make(cfg.synthetic_val, 1)
    tr = make(cfg.synthetic_train, 0) if train else None
    classes = tuple(f"class_{i}" for i in range(n_cls))
    return tr, val, DataInfo("synthetic-dvs", n_cls, 2, size, True, classes, frames)


def _cifar10dvs(cfg: DataConfig, size: int, train: bool, augment: bool, policy: str) -> Splits:
    from pathlib import Path

    from snnkd_cli.data.dvs import DVSFrames, open_dvs_cache

    cache = open_dvs_cache(
        Path(cfg.data_dir), frames=cfg.frames, size=cfg.image_size, split=cfg.split, resize=cfg.resize
    )
    val = DVSFrames(cache, train=False)
    tr = DVSFrames(cache, train=True, augment=augment and policy == "dvs") if train else None
    return tr, val, DataInfo("cifar10dvs", len(val.classes), 2, val.size, True, tuple(val.classes), val.frames)


def _static(cfg: DataConfig, size: int, train: bool, augment: bool, policy: str) -> Splits:
    from snnkd_cli.data.static import build_static

    return build_static(cfg, size, train=train, augment=augment, policy=policy)


SPECS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("synthetic", 16, False, _synthetic),
        DatasetSpec("cifar10", 32, False, _static, class_names=CIFAR10_NAMES),
        DatasetSpec("cifar100", 32, False, _static),
        DatasetSpec("imagefolder", 64, False, _static, folder_classes=True),
        DatasetSpec("imagenet", 224, False, _static, folder_classes=True),
        DatasetSpec("cifar10dvs", 48, True, _cifar10dvs, class_names=CIFAR10_NAMES),
        DatasetSpec("synthetic-dvs", 32, True, _synthetic_dvs),
    )
}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``.

    Raises:
        SnnkdError: an unknown name (one line listing the known ones).
    """
    check_choice(name, DATASETS, "dataset")
    return SPECS[name]
