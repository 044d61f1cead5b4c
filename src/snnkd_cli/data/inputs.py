"""Files to classify (``snnkd predict``): images and cached event frames, read with a checkpoint's preprocessing.

* Images (PNG, JPEG, BMP, GIF, TIFF, WebP) for image checkpoints, with the evaluation transform of the
  checkpoint's dataset at its image size. ``imagefolder``/``imagenet`` convert any image to RGB, as their
  training did; ``cifar10``/``cifar100``/``synthetic`` were trained on RGB arrays, so an image with another
  channel count (grey, RGBA) is refused. Images of another size are resized (shorter side) and centre-cropped.
  ``synthetic`` maps pixels back to its values with :func:`snnkd_cli.data.synthetic.from_unit`.
* Event frames for DVS checkpoints: a ``.safetensors`` file holding ``frames [T, 2, H, W]`` (the files
  ``snnkd preprocess-dvs`` writes, or any file with one such tensor), at the checkpoint's frame size.

Every problem with one input is an :class:`InputError` (one line naming the file), so the others can
still be classified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torchvision import transforms as tvt

from snnkd_cli.config import EVENT_DATASETS, DataConfig
from snnkd_cli.data import transforms as tf
from snnkd_cli.errors import SnnkdError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FRAME_SUFFIXES = (".safetensors",)
BANDS = {1: "grey", 2: "grey + alpha", 3: "RGB", 4: "RGBA or CMYK"}


class InputError(SnnkdError):
    """One input that cannot be classified (the others still can)."""


def is_temporal(data: DataConfig) -> bool:
    return data.dataset in EVENT_DATASETS


def expand_inputs(paths: Iterable[Path], temporal: bool) -> list[tuple[Path, InputError | None]]:
    """Files and folders -> ``(file, None)`` per input file (folders: their files, sorted, recursively),
    or ``(path, error)`` for a missing path or a folder without any file of the right kind."""
    suffixes = FRAME_SUFFIXES if temporal else IMAGE_SUFFIXES
    kind = "event-frame files" if temporal else "images"
    out: list[tuple[Path, InputError | None]] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in suffixes and not any(s.startswith(".") for s in f.parts)
            )
            if not files:
                out.append((p, InputError(f"{p}: a folder with no {kind} ({', '.join(suffixes)})")))
            out.extend((f, None) for f in files)
        elif not p.exists():
            out.append((p, InputError(f"{p}: no such file or folder")))
        else:
            out.append((p, None))
    return out


def image_transform(data: DataConfig) -> Callable:
    """PIL image -> ``[C, size, size]``: the evaluation transform of the checkpoint's dataset, resizing
    (shorter side) and centre-cropping images of another size."""
    size = data.image_size or 32
    if data.dataset in ("imagefolder", "imagenet"):  # ImageFolder's loader made every image RGB
        from snnkd_cli.data import augment_policy

        return tf.folder_eval_transform(size, augment_policy(data, size))
    fit = [tvt.Resize(size), tvt.CenterCrop(size)]
    if data.dataset in ("cifar10", "cifar100"):
        mean, std = tf.CIFAR_STATS[data.dataset]
        return tvt.Compose([*fit, tvt.ToTensor(), tvt.Normalize(mean, std)])
    if data.dataset == "synthetic":
        from snnkd_cli.data.synthetic import from_unit

        return tvt.Compose([*fit, tvt.ToTensor(), tvt.Lambda(from_unit)])
    raise InputError(f"no image preprocessing for dataset '{data.dataset}'")


def load_image(path: Path, data: DataConfig, transform: Callable | None = None) -> torch.Tensor:
    """One image file -> ``[C, size, size]`` with the checkpoint's preprocessing (see the module docstring)."""
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
    any_mode = data.dataset in ("imagefolder", "imagenet")  # ImageFolder's loader made every image RGB
    transform = transform or image_transform(data)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":  # a palette is an encoding of RGB(A) colours
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            else:
                img = img.copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise InputError(f"{path}: cannot read the image ({msg})") from None
    if any_mode:
        return transform(img)
    bands = len(img.getbands())
    if bands != data.in_channels:
        want = BANDS.get(data.in_channels, str(data.in_channels))
        raise InputError(
            f"{path}: the image has {bands} channel{'s' if bands != 1 else ''} ({img.mode}) but the checkpoint "
            f"takes {data.in_channels} ({want})"
        )
    return transform(img.convert("L" if bands == 1 else "RGB"))


def load_frames(path: Path, data: DataConfig, steps: int, exact: bool = False) -> torch.Tensor:
    """One event-frame file -> its first ``steps`` frames ``[steps, 2, size, size]`` float32.

    ``exact``: the file must hold exactly ``steps`` frames (an ANN teacher sees the mean of all of them).
    """
    from safetensors import safe_open

    if path.suffix.lower() not in FRAME_SUFFIXES:
        raise InputError(f"{path}: not an event-frame file: a DVS checkpoint takes .safetensors frames [T, 2, H, W]")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            key = "frames" if "frames" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise InputError(f"{path}: no 'frames' tensor (found {', '.join(keys) or 'none'})")
            x = f.get_tensor(key)
    except InputError:
        raise
    except Exception as e:  # safetensors raises its own error types for corrupt files
        msg = " ".join(str(e).split()) or type(e).__name__
        raise InputError(f"{path}: cannot read the frames ({msg})") from None
    size = data.image_size
    if x.dim() != 4:
        raise InputError(f"{path}: frames must be [T, 2, H, W], got shape {list(x.shape)}")
    if x.shape[1] != 2:
        raise InputError(f"{path}: frames have {x.shape[1]} channels but the checkpoint takes 2 (ON/OFF polarities)")
    if size and tuple(x.shape[2:]) != (size, size):
        raise InputError(
            f"{path}: frames are {x.shape[2]}x{x.shape[3]} but the checkpoint takes {size}x{size}; "
            f"preprocess with --size {size}"
        )
    if exact and x.shape[0] != steps:
        raise InputError(f"{path}: {x.shape[0]} frames, but the teacher was trained on the mean of {steps}")
    if x.shape[0] < steps:
        raise InputError(f"{path}: {x.shape[0]} frames, but {steps} steps need {steps} frames")
    return x[:steps].float()
