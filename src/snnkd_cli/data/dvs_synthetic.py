"""Offline event data: a learnable synthetic event-frame dataset, and synthetic AEDAT 2.0 recordings.

:class:`SyntheticEvents` renders, per sample, a class pattern moving across the frame; a frame's events
are Poisson counts of the brightness change between two time points (ON where it brightens, the leading
edge of a bright pattern; OFF where it darkens), plus noise events. Classes come in pairs with the same
pattern and path: a bright pattern moving one way and a dark one moving back. Their time-mean images are
equal in expectation, so the sequence, not the mean image, tells a pair apart.

:func:`make_cifar10dvs_tree` writes recordings in the original CIFAR10-DVS layout and format
(``root/<class>/cifar10_<class>_<index>.aedat``, AEDAT 2.0, DVS128 addresses) for tests and benchmarks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
AEDAT2_HEADER = (
    b"#!AER-DAT2.0\r\n"
    b"# This is a raw AE data file - do not edit\r\n"
    b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
    b"# Timestamps tick is 1 us\r\n"
    b"# created by snnkd (synthetic recording)\r\n"
)


class SyntheticEvents(Dataset):
    """``n`` event-frame samples ``([frames, 2, size, size] float32 counts, label)``; channel 1 is ON.

    Args:
        n: number of samples.
        num_classes: number of classes (pairs share a pattern and path, with opposite contrast and direction).
        frames: frames per sample T.
        size: frame height and width.
        seed: data seed (class patterns and directions); train and val use the same one.
        split_seed: distinguishes splits (0 train, 1 val).
        rate: expected events per unit of brightness change.
        noise: expected noise events per pixel, polarity and frame.
    """

    def __init__(
        self,
        n: int,
        num_classes: int = 10,
        frames: int = 8,
        size: int = 32,
        seed: int = 0,
        split_seed: int = 0,
        rate: float = 3.0,
        noise: float = 0.03,
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        pairs = (num_classes + 1) // 2
        offs = (torch.rand(pairs, 3, 2, generator=g) - 0.5) * size * 0.3  # pattern: 3 Gaussian blobs
        sigma = size * (0.05 + 0.05 * torch.rand(pairs, 3, generator=g))
        amp = 0.6 + 0.4 * torch.rand(pairs, 3, generator=g)
        angle = 2 * math.pi * (torch.arange(pairs) + 0.25 * torch.rand(pairs, generator=g)) / pairs
        direction = torch.stack([torch.cos(angle), torch.sin(angle)], 1)  # [pairs, 2] as (x, y)

        gs = torch.Generator().manual_seed(seed * 1000 + 17 + split_seed)
        labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gs)]
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
        self.labels = labels.long()
        self.classes = tuple(f"class_{i}" for i in range(num_classes))
        self.frames, self.size = frames, size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.counts[i].float(), int(self.labels[i])


def write_aedat2(path: Path, x: np.ndarray, y: np.ndarray, p: np.ndarray, t: np.ndarray) -> None:
    """Write events as an AEDAT 2.0 file with DVS128 addresses, as in the CIFAR10-DVS release.

    ``x, y, p, t`` (``[N]``) are in spikingjelly's reading convention: its CIFAR10-DVS reader gives
    them back unchanged (it maps the raw address to ``x = 127 - ybits``, ``y = 127 - xbits``,
    ``p = 1 - pbit``; this writes the inverse). ``t`` in microseconds (uint32).
    """
    x, y, p, t = (np.asarray(a).astype(np.int64) for a in (x, y, p, t))
    if x.size and (x.min() < 0 or y.min() < 0 or x.max() > 127 or y.max() > 127 or t.min() < 0 or t.max() >= 2**32):
        raise ValueError("x and y must be in [0, 127] and t in [0, 2**32)")
    addr = ((127 - x) << 8) | ((127 - y) << 1) | (1 - (p != 0).astype(np.int64))
    data = np.empty(2 * x.size, dtype=">u4")
    data[0::2], data[1::2] = addr, t
    Path(path).write_bytes(AEDAT2_HEADER + data.tobytes())


def synthetic_recording(label: int, num_classes: int, n_events: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One recording: a class-specific 3-blob pattern moving in a class direction, ON at its leading edge.

    Returns:
        ``{"t", "x", "y", "p"}`` arrays ``[n_events]``, time-sorted, on the 128x128 sensor.
    """
    shape_rng = np.random.default_rng([7, label])
    blobs = shape_rng.uniform(-20, 20, (3, 2))
    angle = 2 * np.pi * label / num_classes
    d = np.array([np.cos(angle), np.sin(angle)])
    duration = 1_200_000
    t_rel = np.sort(rng.integers(0, duration, n_events))
    s = t_rel / duration - 0.5
    off = blobs[rng.integers(0, 3, n_events)] + rng.normal(0, 5, (n_events, 2))
    xy = 64 + s[:, None] * 60 * d + off
    p = ((off - blobs.mean(0)) @ d > 0).astype(np.int64)  # leading side of the pattern: ON
    noise = rng.random(n_events) < 0.1
    xy[noise] = rng.uniform(0, 128, (int(noise.sum()), 2))
    p[noise] = rng.integers(0, 2, int(noise.sum()))
    xy = np.clip(np.floor(xy), 0, 127).astype(np.int64)
    t = t_rel + int(rng.integers(0, 2**31))  # recordings carry absolute timestamps
    return {"t": t, "x": xy[:, 0], "y": xy[:, 1], "p": p}


def make_cifar10dvs_tree(
    root: Path, per_class: int, classes: int = 10, events: int = 20_000, seed: int = 0
) -> dict[Path, int]:
    """Write ``root/<class>/cifar10_<class>_<index>.aedat`` (AEDAT 2.0) for ``classes`` classes.

    Each recording has ``events`` to ``1.1 * events`` events (so counts rarely divide by T).

    Returns:
        ``{path: number of events}`` for every file written.
    """
    names = CIFAR10_CLASSES[:classes] if classes <= len(CIFAR10_CLASSES) else [f"class{i}" for i in range(classes)]
    written = {}
    for label, name in enumerate(names):
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, label, i])
            n = events + int(rng.integers(0, events // 10 + 1))
            ev = synthetic_recording(label, classes, n, rng)
            path = folder / f"cifar10_{name}_{i}.aedat"
            write_aedat2(path, ev["x"], ev["y"], ev["p"], ev["t"])
            written[path] = n
    return written
