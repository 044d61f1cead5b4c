"""The built-in offline dataset: class prototypes plus shifts, contrast and noise.

Deterministic by seed, no download, and learnable: each class is a smooth random colour
pattern; a sample is its class pattern, shifted by up to ``max_shift`` pixels, scaled in
contrast, mixed with a weaker pattern of another class, plus Gaussian noise. A small
network reaches well above chance in a minute; the noise keeps it from being trivial.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


def class_prototypes(num_classes: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """Smooth zero-mean unit-std patterns, one per class: ``[num_classes, channels, size, size]``."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(num_classes, channels, 4, 4, generator=g)
    protos = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    protos = protos - protos.mean(dim=(1, 2, 3), keepdim=True)
    return protos / protos.std(dim=(1, 2, 3), keepdim=True)


@dataclass(eq=False)
class SyntheticSplit(Dataset):
    """What the built-in datasets share: ``n`` balanced labels ``[n]`` shuffled per split, names ``class_<i>``.

    ``self.rng`` is the split's generator, already advanced past the shuffle: a subclass draws its samples
    from it in :meth:`draw` and returns sample ``i`` from :meth:`sample`. Only ``n`` and ``num_classes`` are
    positional; every other parameter is a keyword.

    Args:
        n: number of samples.
        num_classes: number of classes.
        seed: data seed: what the classes look like, and with ``split_seed`` the draw; train and val share it.
        split_seed: distinguishes splits (0 train, 1 val): other samples of the same classes.
    """

    n: int
    num_classes: int = 10
    seed: int = field(default=0, kw_only=True)
    split_seed: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        self.rng = torch.Generator().manual_seed(self.seed * 1000 + 17 + self.split_seed)
        self.labels = (torch.arange(self.n) % self.num_classes)[torch.randperm(self.n, generator=self.rng)]  # [n]
        self.classes = tuple(f"class_{i}" for i in range(self.num_classes))
        self.draw()

    def draw(self) -> None:
        """Draw the samples from ``self.rng`` (the labels are drawn)."""
        raise NotImplementedError

    def sample(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.sample(i), int(self.labels[i])


@dataclass(eq=False, kw_only=True)
class SyntheticImages(SyntheticSplit):
    """``n`` images ``[channels, size, size]`` (float32) with labels in ``[0, num_classes)``; ``seed`` picks the
    class prototypes.

    Args:
        size: image height and width.
        channels: image channels.
        noise: standard deviation of the additive Gaussian noise.
        max_shift: largest circular shift in pixels.
    """

    size: int = 16
    channels: int = 3
    noise: float = 1.2
    max_shift: int = 3

    def draw(self) -> None:
        n, num_classes, noise, max_shift = self.n, self.num_classes, self.noise, self.max_shift
        protos = class_prototypes(num_classes, self.channels, self.size, self.seed)
        g, labels = self.rng, self.labels
        other = (labels + torch.randint(1, num_classes, (n,), generator=g)) % num_classes
        contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=g)
        x = contrast * protos[labels] + 0.5 * protos[other]
        shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=g)
        for i in range(n):  # per-sample circular shift
            x[i] = torch.roll(x[i], shifts=(int(shifts[i, 0]), int(shifts[i, 1])), dims=(1, 2))
        x = x + noise * torch.randn(x.shape, generator=g)
        self.images = x.float().contiguous()  # [n, C, H, W]

    def sample(self, i: int) -> torch.Tensor:
        return self.images[i]


# Image files for the synthetic data (``snnkd predict`` on a synthetic checkpoint): a value v maps to the
# 8-bit pixel round((v / PIXEL_RANGE + 1) / 2 * 255), clipped; reading maps a pixel p back to
# (p / 255 * 2 - 1) * PIXEL_RANGE. 99.9% of synthetic values lie within +-4.
PIXEL_RANGE = 4.0


def to_image(x: torch.Tensor):
    """A synthetic sample ``[3, H, W]`` as an RGB ``PIL.Image`` (8 bits per channel, see ``PIXEL_RANGE``)."""
    from PIL import Image

    pixels = ((x / PIXEL_RANGE + 1) / 2 * 255).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())


def from_unit(x: torch.Tensor) -> torch.Tensor:
    """Pixels scaled to [0, 1] (``ToTensor``'s output) -> synthetic values in [-PIXEL_RANGE, PIXEL_RANGE]."""
    return (x * 2 - 1) * PIXEL_RANGE
