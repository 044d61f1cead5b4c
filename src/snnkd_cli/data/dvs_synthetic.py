"""Offline event data: a learnable synthetic event-frame dataset, and synthetic AEDAT 2.0 recordings.

:class:`SyntheticEvents` renders, per sample, a class pattern moving across the frame; a frame's events
are Poisson counts of the brightness change between two time points (ON where it brightens, the leading
edge of a bright pattern; OFF where it darkens), plus noise events. Classes come in pairs with the same
pattern and path: a bright pattern moving one way and a dark one moving back. Their time-mean images are
equal in expectation, so the sequence, not the mean image, tells a pair apart.

Recordings in the original CIFAR10-DVS file layout, for tests and benchmarks, are written by
:mod:`snnkd_cli.testing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from snnkd_cli.data.synthetic import SyntheticSplit


@dataclass(eq=False, kw_only=True)
class SyntheticEvents(SyntheticSplit):
    """``n`` event-frame samples ``([frames, 2, size, size] float32 counts, label)``; channel 1 is ON. Classes
    come in pairs that share a pattern and path, with opposite contrast and direction; ``seed`` picks the
    patterns and directions.

    Args:
        frames: frames per sample T.
        size: frame height and width.
        rate: expected events per unit of brightness change.
        noise: expected noise events per pixel, polarity and frame.
    """

    frames: int = 8
    size: int = 32
    rate: float = 3.0
    noise: float = 0.03

    def draw(self) -> None:
        n, num_classes, frames, size, rate, noise = (
            self.n,
            self.num_classes,
            self.frames,
            self.size,
            self.rate,
            self.noise,
        )
        g = torch.Generator().manual_seed(self.seed)
        pairs = (num_classes + 1) // 2
        offs = (torch.rand(pairs, 3, 2, generator=g) - 0.5) * size * 0.3  # pattern: 3 Gaussian blobs
        sigma = size * (0.05 + 0.05 * torch.rand(pairs, 3, generator=g))
        amp = 0.6 + 0.4 * torch.rand(pairs, 3, generator=g)
        angle = 2 * math.pi * (torch.arange(pairs) + 0.25 * torch.rand(pairs, generator=g)) / pairs
        direction = torch.stack([torch.cos(angle), torch.sin(angle)], 1)  # [pairs, 2] as (x, y)

        gs, labels = self.rng, self.labels
        pair, sign = labels // 2, 1.0 - 2.0 * (labels % 2).float()  # odd class: dark and moving back
        travel = size * 0.5 * (0.8 + 0.4 * torch.rand(n, generator=gs))
        centre = size / 2 + (torch.rand(n, 2, generator=gs) - 0.5) * size * 0.2
        gain = rate * (0.7 + 0.6 * torch.rand(n, generator=gs))

        s = torch.arange(frames + 1) / frames - 0.5  # [T+1] positions along the path
        pos = centre[:, None] + (sign * travel)[:, None, None] * s[None, :, None] * direction[pair][:, None]
        coords = torch.arange(size, dtype=torch.float32)
        out = torch.empty(n, frames, 2, size, size, dtype=torch.uint8)
        for a in range(0, n, 256):  # chunks keep the [chunk, T+1, 3, H, W] intermediate small
            b = min(n, a + 256)
            p = pos[a:b, :, None] + offs[pair[a:b]][:, None]  # [c, T+1, 3, 2] blob centres
            sg = 2 * sigma[pair[a:b]][:, None, :, None] ** 2
            gx = torch.exp(-((coords - p[..., 0, None]) ** 2) / sg)  # separable Gaussians [c, T+1, 3, W]
            gy = torch.exp(-((coords - p[..., 1, None]) ** 2) / sg) * amp[pair[a:b]][:, None, :, None]
            bright = sign[a:b, None, None, None] * torch.einsum("ctky,ctkx->ctyx", gy, gx)  # [c, T+1, H, W]
            change = (bright[:, 1:] - bright[:, :-1]) * gain[a:b, None, None, None]
            lam = torch.stack([(-change).clamp(min=0), change.clamp(min=0)], 2) + noise  # [c, T, 2(OFF, ON), H, W]
            out[a:b] = torch.poisson(lam, generator=gs).clamp(max=255).to(torch.uint8)
        self.counts = out  # uint8 [n, T, 2, H, W]: a quarter of float32's memory

    def sample(self, i: int) -> torch.Tensor:
        return self.counts[i].float()
