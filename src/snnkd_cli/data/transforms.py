"""Image transforms: the paper's CIFAR and ImageNet recipes (METHOD.md) and one for image folders.

Train transforms take a PIL image and return a normalised float tensor ``[3, size, size]``;
eval transforms are deterministic. Random choices use torch's RNG (torchvision's transforms and
:class:`Cutout`), so DataLoader worker seeding makes them reproducible.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms as tvt

from snnkd_cli.config import DVS_AUGMENT_MIN_EPOCHS

# The paper's normalisation (util/data.py). CIFAR-10's std is the widely copied (0.2023, 0.1994, 0.2010), the
# mean over images of the per-image std; the per-pixel std over the whole set is (0.2470, 0.2435, 0.2616).
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
AUTOAUGMENT_FILL = [128, 128, 128]  # grey where AutoAugment's rotations, shears and shifts leave no pixel (paper)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_RATIO = 0.875  # eval: resize the short side to size / 0.875, then centre-crop size (224 <- 256)


class Cutout(torch.nn.Module):
    """Zero one ``length`` x ``length`` square at a uniformly random centre (DeVries & Taylor, 2017).

    The centre may lie anywhere in the image; the square is clipped at the borders, so fewer
    than ``length**2`` pixels are zeroed near an edge. The recipes apply it before normalisation, as
    the paper does, so the square is black.

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
    """Paper CIFAR recipe (the ``cifar`` policy): crop ``size`` (pad 4 at 32 px), h-flip, AutoAugment (CIFAR10
    policy, grey fill), to tensor, Cutout 16 (``size // 2``, black), normalise.

    Returns:
        PIL image -> float tensor ``[3, size, size]``, normalised with ``dataset``'s mean/std.
    """
    mean, std = CIFAR_STATS[dataset]
    return tvt.Compose([*policy_train_ops("cifar", size), tvt.ToTensor(), Cutout(size // 2), tvt.Normalize(mean, std)])


def cifar_eval_transform(dataset: str = "cifar10") -> tvt.Compose:
    """PIL image -> normalised float tensor ``[3, 32, 32]``."""
    mean, std = CIFAR_STATS[dataset]
    return tvt.Compose([tvt.ToTensor(), tvt.Normalize(mean, std)])


def imagenet_train_transform(size: int = 224) -> tvt.Compose:
    """Paper ImageNet recipe (the ``imagenet`` policy): RandomResizedCrop ``size``, h-flip -> ``[3, size, size]``."""
    ops = policy_train_ops("imagenet", size)
    return tvt.Compose([*ops, tvt.ToTensor(), tvt.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def imagenet_eval_transform(size: int = 224) -> tvt.Compose:
    """Resize to ``int(size / 0.875)``, centre-crop ``size`` -> float tensor ``[3, size, size]``."""
    return tvt.Compose([*fit_ops("imagenet", size), tvt.ToTensor(), tvt.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def default_augment(dataset: str, size: int, epochs: int | None = None) -> str:
    """The policy ``--augment auto`` picks: the paper's for CIFAR and ImageNet; for an image folder a crop with
    padding below 128 px (no flip: digits, text and signs are not mirror-symmetric) and the ImageNet policy
    from 128 px; for CIFAR10-DVS the paper's ``dvs`` on runs of at least ``DVS_AUGMENT_MIN_EPOCHS`` epochs
    (or ``epochs`` None: the length not known) and none on shorter ones, where its roll, rotation and cutout
    kept teachers near chance; none for the built-in data (it is generated with its own variation)."""
    if dataset in ("cifar10", "cifar100"):
        return "cifar"
    if dataset == "cifar10dvs":
        return "dvs" if epochs is None or epochs >= DVS_AUGMENT_MIN_EPOCHS else "none"
    if dataset == "imagenet" or (dataset == "imagefolder" and size >= 128):
        return "imagenet"
    if dataset == "imagefolder":
        return "crop"
    return "none"


def crop_padding(size: int) -> int:
    """Padding of the ``crop`` policies: 4 px at 32 px (the paper's CIFAR recipe), ``size // 8`` in general."""
    return max(1, size // 8)


def policy_train_ops(policy: str, size: int) -> list:
    """The random ops of an image policy, on a PIL image already ``size`` x ``size`` (except ``imagenet``).

    ``none``: nothing; ``crop``: random crop ``size`` with :func:`crop_padding`; ``crop-flip``: and a
    horizontal flip; ``cifar``: the paper's CIFAR recipe before the tensor (crop, flip, AutoAugment with
    the CIFAR10 policy and grey fill); ``imagenet``: RandomResizedCrop ``size`` and a flip.
    """
    crop = tvt.RandomCrop(size, padding=crop_padding(size))
    auto = tvt.AutoAugment(tvt.AutoAugmentPolicy.CIFAR10, fill=AUTOAUGMENT_FILL)
    ops = {
        "none": [],
        "crop": [crop],
        "crop-flip": [crop, tvt.RandomHorizontalFlip()],
        "cifar": [crop, tvt.RandomHorizontalFlip(), auto],
        "imagenet": [tvt.RandomResizedCrop(size), tvt.RandomHorizontalFlip()],
    }
    if policy not in ops:
        raise ValueError(f"unknown image augmentation policy {policy!r}")
    return ops[policy]


def fit_ops(policy: str, size: int) -> list:
    """Resizing to ``size``: the ImageNet policy evaluates a centre crop of 87.5%, the others the whole image
    (shorter side resized to ``size``, centre-cropped square)."""
    if policy == "imagenet":
        return [tvt.Resize(int(size / CROP_RATIO)), tvt.CenterCrop(size)]
    return [tvt.Resize(size), tvt.CenterCrop(size)]


def folder_train_transform(size: int, policy: str = "crop") -> tvt.Compose:
    """Any image folder: RGB, fitted to ``size`` (not for ``imagenet``, which crops the original), then
    the policy's random ops -> normalised ``[3, size, size]`` (ImageNet mean/std; ``cifar`` adds Cutout before
    normalising, as the CIFAR recipe)."""
    fit = [] if policy == "imagenet" else fit_ops(policy, size)
    cut = [Cutout(size // 2)] if policy == "cifar" else []
    return tvt.Compose(
        [
            tvt.Lambda(_to_rgb),
            *fit,
            *policy_train_ops(policy, size),
            tvt.ToTensor(),
            *cut,
            tvt.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def folder_eval_transform(size: int, policy: str = "crop") -> tvt.Compose:
    """Any image folder: RGB, :func:`fit_ops` of the training policy -> normalised ``[3, size, size]``."""
    return tvt.Compose(
        [tvt.Lambda(_to_rgb), *fit_ops(policy, size), tvt.ToTensor(), tvt.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


def cifar_policy_transform(policy: str, size: int, dataset: str) -> tvt.Compose:
    """CIFAR arrays with another policy than the paper's: the policy's ops, then ``dataset``'s normalisation."""
    if policy == "cifar":
        return cifar_train_transform(size, dataset)
    mean, std = CIFAR_STATS[dataset]
    return tvt.Compose([*policy_train_ops(policy, size), tvt.ToTensor(), tvt.Normalize(mean, std)])
