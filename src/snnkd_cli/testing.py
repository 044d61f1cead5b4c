"""Files for tests and benchmarks: synthetic event recordings in the CIFAR10-DVS layout and format.

Nothing in train, evaluation or inference imports this module. :func:`make_cifar10dvs_tree` writes
``root/<class>/cifar10_<class>_<index>.aedat`` (AEDAT 2.0, DVS128 addresses), the layout of the
original CIFAR10-DVS release, so the real loaders can be tested without a download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snnkd_cli.data import CIFAR10_NAMES

AEDAT2_HEADER = (
    b"#!AER-DAT2.0\r\n"
    b"# This is a raw AE data file - do not edit\r\n"
    b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
    b"# Timestamps tick is 1 us\r\n"
    b"# created by snnkd (synthetic recording)\r\n"
)


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
    names = CIFAR10_NAMES[:classes] if classes <= len(CIFAR10_NAMES) else [f"class{i}" for i in range(classes)]
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
