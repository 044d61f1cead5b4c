"""Training augmentation of event frames (the paper's CIFAR10-DVS recipe, NDA-style)."""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF


class DVSAugment:
    """Training augmentation for event frames ``[T, 2, H, W]``, drawn once per sample and applied to every frame.

    Horizontal flip (probability ``flip_p``), then one of: roll by up to ``roll`` pixels in x and y,
    rotate by up to ``rotate`` degrees (nearest, zero fill), or cutout of a ``cutout`` square (NDA-style).
    Uses torch's RNG (or ``generator``), so DataLoader worker seeding makes it reproducible.
    """

    OPS = ("roll", "rotate", "cutout")

    def __init__(self, flip_p: float = 0.5, roll: int = 5, rotate: float = 30.0, cutout: int = 16) -> None:
        self.flip_p, self.roll, self.rotate, self.cutout = flip_p, roll, rotate, cutout

    def sample(self, h: int, w: int, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Random parameters for one sample of height ``h`` and width ``w``."""
        g = generator
        params: dict[str, Any] = {"flip": bool(torch.rand((), generator=g) < self.flip_p)}
        op = self.OPS[int(torch.randint(len(self.OPS), (), generator=g))]
        params["op"] = op
        if op == "roll":
            params["shift"] = tuple(int(v) for v in torch.randint(-self.roll, self.roll + 1, (2,), generator=g))
        elif op == "rotate":
            params["angle"] = float((2 * torch.rand((), generator=g) - 1) * self.rotate)
        else:
            params["center"] = (int(torch.randint(h, (), generator=g)), int(torch.randint(w, (), generator=g)))
        return params

    def apply(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        """``x [T, C, H, W]`` -> the same shape, with ``params`` (from :meth:`sample`) applied to every frame."""
        if params["flip"]:
            x = x.flip(-1)
        if params["op"] == "roll":
            x = torch.roll(x, shifts=params["shift"], dims=(-2, -1))
        elif params["op"] == "rotate":
            x = TF.rotate(x, params["angle"], interpolation=InterpolationMode.NEAREST, fill=0.0)
        else:
            cy, cx = params["center"]
            y0, x0 = cy - self.cutout // 2, cx - self.cutout // 2
            x = x.clone()
            x[..., max(y0, 0) : y0 + self.cutout, max(x0, 0) : x0 + self.cutout] = 0
        return x.contiguous()

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, self.sample(x.shape[-2], x.shape[-1], generator))
