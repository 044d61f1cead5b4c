"""Static image datasets: CIFAR-10/100 (official python release), ImageNet and any image folder.

Every sample is ``(image [3, H, W] float32, label int)``. User mistakes (missing files, a wrong
layout, a corrupt file) become one-line :class:`SnnkdError` messages that say what to do.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100, ImageFolder
from torchvision.datasets.folder import default_loader
from torchvision.datasets.utils import download_and_extract_archive

from snnkd_cli.config import DataConfig
from snnkd_cli.data import DataInfo
from snnkd_cli.data import transforms as tf
from snnkd_cli.errors import SnnkdError


# The official CIFAR release is a set of python pickles; torchvision unpickles them, and so do we
# (that is the format), only from the user's own --data-dir. torchvision also checks the md5 of every
# extracted file, so a re-packed but correct copy (or the small files the tests write) is refused
# with "Dataset not found or corrupted". With md5 None its `check_integrity` only asks that the file
# exists; the parsing stays torchvision's own, and a download still checks the archive's md5.
class LocalCIFAR10(CIFAR10):
    """torchvision's CIFAR10, accepting any copy whose files exist."""

    train_list: ClassVar = [[name, None] for name, _ in CIFAR10.train_list]
    test_list: ClassVar = [[name, None] for name, _ in CIFAR10.test_list]
    meta: ClassVar = {**CIFAR10.meta, "md5": None}


class LocalCIFAR100(CIFAR100):
    """torchvision's CIFAR100, accepting any copy whose files exist."""

    train_list: ClassVar = [[name, None] for name, _ in CIFAR100.train_list]
    test_list: ClassVar = [[name, None] for name, _ in CIFAR100.test_list]
    meta: ClassVar = {**CIFAR100.meta, "md5": None}


CIFAR = {"cifar10": (LocalCIFAR10, "CIFAR-10"), "cifar100": (LocalCIFAR100, "CIFAR-100")}
CIFAR_SIZE = 32
# What unpickling a damaged or foreign file can raise.
UNPICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    OSError,
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    ImportError,
)


def build_static(
    cfg: DataConfig, size: int, *, train: bool = True, augment: bool = True, policy: str | None = None
) -> tuple[Dataset | None, Dataset, DataInfo]:
    """Build ``(train_set, val_set, info)`` for cifar10, cifar100, imagefolder or imagenet.

    Args:
        cfg: dataset name, ``data_dir`` and ``download``.
        size: image side in pixels; samples are ``[3, size, size]``.
        train: False returns None for the train set without reading its files (evaluation).
        augment: False gives the train set the deterministic eval transform.
        policy: the augmentation policy (``transforms.policy_train_ops``; default: the dataset's own).

    Raises:
        SnnkdError: missing or corrupt files, a wrong folder layout (one line, what to do).
    """
    policy = policy or tf.default_augment(cfg.dataset, size)
    if cfg.dataset in CIFAR:
        if size != CIFAR_SIZE:
            raise SnnkdError(f"{cfg.dataset} images are {CIFAR_SIZE}x{CIFAR_SIZE}: drop --image-size or set it to 32")
        eval_tf = tf.cifar_eval_transform(cfg.dataset)
        train_tf = tf.cifar_policy_transform(policy, size, cfg.dataset) if augment and policy != "none" else eval_tf
        tr, val = _cifar(cfg, train, train_tf, eval_tf)
    elif cfg.dataset in ("imagenet", "imagefolder"):
        eval_tf = tf.folder_eval_transform(size, policy)
        train_tf = tf.folder_train_transform(size, policy) if augment and policy != "none" else eval_tf
        tr, val = _image_folders(cfg, train, train_tf, eval_tf)
    else:
        raise SnnkdError(f"{cfg.dataset!r} is not a static image dataset (cifar10, cifar100, imagefolder, imagenet)")
    classes = tuple(val.classes)
    return tr, val, DataInfo(cfg.dataset, len(classes), 3, size, temporal=False, classes=classes)


def _one_line(err: BaseException) -> str:
    if isinstance(err, KeyError):
        return f"no key {err}"
    return " ".join(str(err).split()) or type(err).__name__


# --- CIFAR -------------------------------------------------------------------------------------


def _cifar(cfg: DataConfig, train: bool, train_tf: Callable, eval_tf: Callable) -> tuple[Dataset | None, Dataset]:
    cls, title = CIFAR[cfg.dataset]
    root = Path(cfg.data_dir).expanduser()
    if root.name == cls.base_folder and not (root / cls.base_folder).exists():
        root = root.parent  # --data-dir named the extracted folder itself
    folder = root / cls.base_folder
    if cfg.download and _missing(cls, folder):
        try:
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
        except Exception as err:  # network, disk or archive errors: all mean "fetch it yourself"
            raise SnnkdError(
                f"could not download {title} into {root} ({_one_line(err)}): fetch {cls.url} and extract it there"
            ) from err
    missing = _missing(cls, folder)
    if missing:
        what = f"missing {', '.join(missing)}" if folder.is_dir() else "no such folder"
        raise SnnkdError(
            f"{title} not found: looked in {folder} ({what}); pass --download, "
            f"or --data-dir pointing to the folder that holds {cls.base_folder}"
        )
    val = _parse_cifar(cls, title, root, False, eval_tf)
    return (_parse_cifar(cls, title, root, True, train_tf) if train else None), val


def _missing(cls: type[CIFAR10], folder: Path) -> list[str]:
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [name for name in names if not (folder / name).is_file()]


def _parse_cifar(cls: type[CIFAR10], title: str, root: Path, train: bool, transform: Callable) -> CIFAR10:
    """torchvision's parser; if it fails, or its labels do not fit the data, name the bad file."""
    folder = root / cls.base_folder
    try:
        ds = cls(str(root), train=train, transform=transform)
        labels = np.asarray(ds.targets)
        if not (len(labels) == len(ds.data) > 0 and 0 <= labels.min() <= labels.max() < len(ds.classes)):
            raise ValueError(f"{len(ds.data)} images, {len(labels)} labels, {len(ds.classes)} class names")
    except Exception as err:
        problem = _cifar_problem(cls, folder, train) or f"in {folder} ({_one_line(err)})"
        raise SnnkdError(
            f"corrupt {title} file {problem}; re-extract {cls.filename}, or delete {folder} and re-run with --download"
        ) from err
    return ds


def _cifar_problem(cls: type[CIFAR10], folder: Path, train: bool) -> str | None:
    """``"<path>: <what is wrong>"`` for the first bad file of the split (meta first), else None."""

    def load(path: Path) -> object:
        # Official python-pickle release format, read as torchvision reads it.
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")

    meta_path = folder / cls.meta["filename"]
    try:
        names = load(meta_path)[cls.meta["key"]]
    except UNPICKLE_ERRORS as err:
        return f"{meta_path}: no {cls.meta['key']!r} list ({_one_line(err)})"
    for name, _ in cls.train_list if train else cls.test_list:
        path = folder / name
        try:
            entry = load(path)
            data = np.asarray(entry["data"])
            labels = np.asarray(entry["labels"] if "labels" in entry else entry["fine_labels"])
        except UNPICKLE_ERRORS as err:
            return f"{path}: not a CIFAR batch with 'data' and 'labels'/'fine_labels' ({_one_line(err)})"
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * CIFAR_SIZE * CIFAR_SIZE:
            return f"{path}: 'data' is {data.dtype} {list(data.shape)}, expected uint8 [N, 3072]"
        bad_labels = labels.dtype.kind not in "iu" or labels.shape != (len(data),)
        if bad_labels or (len(labels) and not 0 <= labels.min() <= labels.max() < len(names)):
            return f"{path}: labels must be {len(data)} integers in [0, {len(names)})"
    return None


# --- Image folders (imagefolder, imagenet) -----------------------------------------------------


def read_image(path: str) -> Image.Image:
    """torchvision's image loader (RGB), with one line naming the file that cannot be decoded."""
    try:
        return default_loader(path)
    except (OSError, ValueError, Image.DecompressionBombError) as err:  # UnidentifiedImageError is an OSError
        raise SnnkdError(f"cannot read image {path} ({_one_line(err)}): remove or replace the file") from None


class _ImageFolder(ImageFolder):
    """torchvision's ImageFolder, except that hidden folders (``.ipynb_checkpoints``) are not classes and an
    unreadable image stops the run with one line naming it."""

    def __init__(self, root: str, transform: Callable) -> None:
        super().__init__(root, transform=transform, loader=read_image)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = _class_dirs(Path(directory))
        return classes, {c: i for i, c in enumerate(classes)}


def _class_dirs(split: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(split) if e.is_dir() and not e.name.startswith("."))


def _image_folders(
    cfg: DataConfig, train: bool, train_tf: Callable, eval_tf: Callable
) -> tuple[Dataset | None, Dataset]:
    """``data_dir/{train,val}/<class>/<image>``; the train folder is not touched when ``train`` is False."""
    root = Path(cfg.data_dir).expanduser()
    layout = f"expected {root}/train/<class>/<image> and {root}/val/<class>/<image>"
    if not root.is_dir():
        raise SnnkdError(f"data directory {root} does not exist: pass --data-dir; {layout}")
    classes = {}
    for split in ("train", "val") if train else ("val",):
        if not (root / split).is_dir():
            raise SnnkdError(f"no {split}/ folder in {root}: {layout}")
        classes[split] = _class_dirs(root / split)
        if not classes[split]:
            raise SnnkdError(f"no class folders in {root / split}: {layout}")
    if train and classes["train"] != classes["val"]:
        only_train = sorted(set(classes["train"]) - set(classes["val"])) or ["-"]
        only_val = sorted(set(classes["val"]) - set(classes["train"])) or ["-"]
        raise SnnkdError(
            f"train and val class folders differ in {root}: only in train: {', '.join(only_train)}; "
            f"only in val: {', '.join(only_val)}"
        )

    if len(classes["val"]) < 2:
        raise SnnkdError(f"{root / 'val'} has one class folder ({classes['val'][0]}): a classifier needs at least 2")

    def load(split: str, transform: Callable) -> ImageFolder:
        try:
            return _ImageFolder(str(root / split), transform=transform)
        except FileNotFoundError as err:  # a class folder without images (torchvision names the classes)
            raise SnnkdError(f"no images in {root / split}: {_one_line(err)}") from err

    val = load("val", eval_tf)
    return (load("train", train_tf) if train else None), val
