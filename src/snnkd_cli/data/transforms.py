"""Image transforms: the paper's CIFAR and ImageNet recipes (METHOD.md) and one for image folders.

Train transforms take a PIL image and return a normalised float tensor ``[3, size, size]``;
eval transforms are deterministic. Random choices use torch's RNG (torchvision's transforms and
:class:`Cutout`), so DataLoader worker seeding makes them reproducible.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms as tvt

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_RATIO = 0.875  # eval: resize the short side to size / 0.875, then centre-crop size (224 <- 256)


class Cutout(torch.nn.Module):
    """Zero one ``length`` x ``length`` square at a uniformly random centre (DeVries & Taylor, 2017).

    The centre may lie anywhere in the image; the square is clipped at the borders, so fewer
    than ``length**2`` pixels are zeroed near an edge. Applied after normalisation, zero is the
    dataset's mean colour.

    Args:
        length: side of the square in pixels.
    """

    def __init__(self, length: int = 16) -> None:
        super().__init__()
        self.length = length

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """``img [C, H, W]`` -> a copy with the square zeroed in every channel ``[C, H, W]``."""
        h, w = img.shape[-2:]
        cy = int(torch.randint(h, ()))
        cx = int(torch.randint(w, ()))
        y0, x0 = cy - self.length // 2, cx - self.length // 2
        out = img.clone()
        out[..., max(y0, 0) : y0 + self.length, max(x0, 0) : x0 + self.length] = 0  # slicing clips the far edges
        return out

    def extra_repr(self) -> str:
        return f"length={self.length}"


def _to_rgb(img: Image.Image) -> Image.Image:
    """Grey, palette and RGBA images -> RGB (a module-level function, so workers can pickle it)."""
    return img if img.mode == "RGB" else img.convert("RGB")


def cifar_train_transform(size: int = 32, dataset: str = "cifar10") -> tvt.Compose:
    """Paper CIFAR recipe: crop ``size`` (pad 4), h-flip, AutoAugment (CIFAR10 policy), Cutout 16.

    Returns:
        PIL image -> float tensor ``[3, size, size]``, normalised with ``dataset``'s mean/std.
    """
    mean, std = CIFAR_STATS[dataset]
    return tvt.Compose(
        [
            tvt.RandomCrop(size, padding=4),
            tvt.RandomHorizontalFlip(),
            tvt.AutoAugment(tvt.AutoAugmentPolicy.CIFAR10),
            tvt.ToTensor(),
            tvt.Normalize(mean, std),
            Cutout(16),
        ]
    )


def cifar_eval_transform(dataset: str = "cifar10") -> tvt.Compose:
    """PIL image -> normalised float tensor ``[3, 32, 32]``."""
    mean, std = CIFAR_STATS[dataset]
    return tvt.Compose([tvt.ToTensor(), tvt.Normalize(mean, std)])


def imagenet_train_transform(size: int = 224) -> tvt.Compose:
    """Paper ImageNet recipe: RandomResizedCrop ``size``, h-flip -> float tensor ``[3, size, size]``."""
    return tvt.Compose(
        [
            tvt.RandomResizedCrop(size),
            tvt.RandomHorizontalFlip(),
            tvt.ToTensor(),
            tvt.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def imagenet_eval_transform(size: int = 224) -> tvt.Compose:
    """Resize to ``int(size / 0.875)``, centre-crop ``size`` -> float tensor ``[3, size, size]``."""
    return tvt.Compose(
        [
            tvt.Resize(int(size / CROP_RATIO)),
            tvt.CenterCrop(size),
            tvt.ToTensor(),
            tvt.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def folder_train_transform(size: int) -> tvt.Compose:
    """Any image folder: RGB, RandomResizedCrop ``size`` (scale 0.35-1), h-flip -> ``[3, size, size]``.

    The milder minimum scale than ImageNet's 0.08 suits small images and small datasets.
    """
    return tvt.Compose(
        [
            tvt.Lambda(_to_rgb),
            tvt.RandomResizedCrop(size, scale=(0.35, 1.0)),
            tvt.RandomHorizontalFlip(),
            tvt.ToTensor(),
            tvt.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def folder_eval_transform(size: int) -> tvt.Compose:
    """Any image folder: RGB, resize to ``int(size / 0.875)``, centre-crop ``size`` -> ``[3, size, size]``."""
    return tvt.Compose([tvt.Lambda(_to_rgb), *imagenet_eval_transform(size).transforms])
