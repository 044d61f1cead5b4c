"""Event recordings: finding them (one folder per class), reading them, splitting them and framing them.

Decoding is tonic's and framing spikingjelly's own code (what the paper used), with a thin layer of checks:

* ``.aedat``: AEDAT 2.0, 128x128 DVS addresses (the original CIFAR10-DVS release), decoded by tonic's
  public readers, with ``x, y, p`` in spikingjelly's CIFAR10-DVS convention (the paper's):
  ``x = 127 - x_tonic, y = 127 - y_tonic, p = 1 - p_tonic`` (tested equal to spikingjelly's reader).
* ``.npz``: spikingjelly's ``events_np`` files (arrays ``t, x, y, p``), what its ``CIFAR10DVS`` writes.
* ``.npy``: tonic's structured event arrays (fields ``x, y, t, p``).
* ``.aedat4``: tonic's re-release of CIFAR10-DVS, read with ``tonic.io.read_aedat4`` (needs ``aedat``).

Events are a dict of equal-length numpy arrays ``t, x, y, p`` (``p`` 1 = ON, frame channel 1).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from spikingjelly.datasets.utils import (
    integrate_events_by_fixed_frames_number,
    integrate_events_segment_to_frame,
)
from torch.utils.data import random_split

from snnkd_cli.errors import SnnkdError

SUFFIXES = (".aedat", ".aedat4", ".npz", ".npy")
SPLIT_BY = ("number", "time")
SENSOR_SIZE = (128, 128)  # (height, width) of the DVS128 sensor CIFAR10-DVS was recorded with
SPLITS = ("random", "per-class")
SPLIT_SEED = 42
SPLIT_RULES = {
    "random": "torch.utils.data.random_split(files, [0.9, 0.1], generator seeded 42) over files sorted by "
    "class folder, then file name (torchvision DatasetFolder order)",
    "per-class": "per class, files in index order: the first 10% (at least 1) val, the rest train "
    "(spikingjelly's CIFAR10DVSTEBNSplit: 0-99 val, 100-999 train)",
}
# How frames are resized from the sensor size: "bilinear" (antialiased: torchvision's Resize on a tensor, the
# paper's pipeline) or "area" (each output pixel the mean event count of its source window; snnkd before 0.2).
RESIZE_MODES = ("bilinear", "area")
RESIZE_MODE = "bilinear"  # the default


class RecordingError(Exception):
    """A recording that cannot be used (corrupt, truncated, unsupported); the message is one line."""


def read_events(path: Path) -> dict[str, np.ndarray]:
    """Decode one recording by its suffix.

    Returns:
        ``{"t", "x", "y", "p"}``: numpy arrays ``[N]`` in file order.

    Raises:
        RecordingError: unsupported version, truncated or malformed data.
    """
    suffix = path.suffix.lower()
    if suffix == ".aedat":
        ev = _read_aedat2(path)
    elif suffix == ".npz":
        with _np_load(path) as z:
            missing = [k for k in "txyp" if k not in z.files]
            if missing:
                raise RecordingError(f"npz has no {', '.join(missing)} array (want spikingjelly's t, x, y, p)")
            ev = {k: z[k] for k in "txyp"}
    elif suffix == ".npy":
        arr = _np_load(path)
        ev = _from_struct(arr, "npy")
    elif suffix == ".aedat4":
        from tonic.io import read_aedat4  # imports the optional `aedat` package

        ev = _from_struct(read_aedat4(str(path)), "aedat4")
    else:
        raise RecordingError(f"unknown recording type {suffix!r}: use one of {', '.join(SUFFIXES)}")
    n = {k: np.asarray(v).reshape(-1).shape[0] for k, v in ev.items()}
    if len(set(n.values())) != 1:
        raise RecordingError(f"event arrays of different lengths {n}")
    return {k: np.asarray(v).reshape(-1) for k, v in ev.items()}


def _np_load(path: Path):
    try:
        return np.load(path, allow_pickle=False)  # never unpickle: a recording is plain arrays
    except ValueError as err:
        reason = str(err).split(".")[0]
        raise RecordingError(f"not a numpy {path.suffix} file of event arrays (numpy: {reason})") from err


def _from_struct(arr: np.ndarray, what: str) -> dict[str, np.ndarray]:
    names = arr.dtype.names or ()
    pol = "p" if "p" in names else "on" if "on" in names else None
    if pol is None or not {"t", "x", "y"} <= set(names):
        raise RecordingError(f"{what} events need fields t, x, y, p; got {names or arr.dtype}")
    return {"t": arr["t"], "x": arr["x"], "y": arr["y"], "p": arr[pol].astype(np.int64)}


def _read_aedat2(path: Path) -> dict[str, np.ndarray]:
    """AEDAT 2.0 through tonic's public readers (header, then big-endian address/time pairs), in
    spikingjelly's CIFAR10-DVS convention (the paper's): ``x = 127 - x_tonic``, ``y = 127 - y_tonic``,
    ``p = 1 - p_tonic`` (tested equal to spikingjelly's own reader). tonic does not check the version line
    or a cut file: both are checked here."""
    from tonic.io import get_aer_events_from_file, read_aedat_header_from_file

    with open(path, "rb") as fp:
        first = fp.readline(256)
    if not first:
        raise RecordingError("empty file")
    if not first.startswith(b"#!AER-DAT"):
        raise RecordingError("not an AEDAT file: no '#!AER-DAT2.0' header line")
    version = first[len(b"#!AER-DAT") :].decode("ascii", "replace").strip()
    if not version.startswith("2."):
        raise RecordingError(f"AEDAT version {version} is not supported (CIFAR10-DVS is AEDAT 2.0)")
    data_version, start, _ = read_aedat_header_from_file(str(path))
    with open(path, "rb") as fp:  # at the end of a header-only file tonic's reader stops on its last newline
        fp.seek(start)
        if fp.read(1) in (b"", b"\n"):
            raise RecordingError("no events after the header")
    size = path.stat().st_size - start
    if size % 8:  # a file cut at a multiple of 8 bytes just has fewer events: nothing in the format tells
        raise RecordingError(f"truncated event data ({size} bytes after the header, not whole 8-byte events)")
    raw = get_aer_events_from_file(str(path), data_version, start)
    addr = raw["address"].astype(np.int64)
    t = raw["timeStamp"].astype(np.int64)
    return {"t": t, "x": 127 - ((addr >> 8) & 0x7F), "y": 127 - ((addr >> 1) & 0x7F), "p": 1 - (addr & 1)}


def segment_bounds(t: np.ndarray, frames: int, split_by: str) -> tuple[np.ndarray, np.ndarray]:
    """Start and end index ``[frames]`` of each frame's events (events sorted by time for "time").

    "number" is spikingjelly's rule: ``N // frames`` events per frame, the remainder in the last.
    "time" uses spikingjelly's windows ``[t0 + i*dt, t0 + (i+1)*dt)`` with ``dt = (t_end - t0) // frames``
    and the tail in the last frame, found by ``searchsorted``: spikingjelly's own version raises
    IndexError when a window holds no event (a pause, or ``dt == 0``); here that frame is empty.
    """
    n = t.shape[0]
    if split_by == "number":
        step = n // frames
        left = np.arange(frames, dtype=np.int64) * step
        right = left + step
    else:
        t = t.astype(np.int64)
        dt = (int(t[-1]) - int(t[0])) // frames
        left = np.searchsorted(t, t[0] + dt * np.arange(frames, dtype=np.int64), side="left").astype(np.int64)
        left[0] = 0
        right = np.append(left[1:], n)
    right[-1] = n
    return left, right


def frame_events(
    events: dict[str, np.ndarray] | np.ndarray,
    frames: int,
    split_by: str = "number",
    size: int = 48,
    sensor_size: tuple[int, int] = SENSOR_SIZE,
    resize: str = RESIZE_MODE,
) -> torch.Tensor:
    """Integrate events into ``frames`` two-channel count frames, then resize.

    Args:
        events: ``{"t", "x", "y", "p"}`` arrays ``[N]`` or a structured array with those fields.
        frames: number of frames T.
        split_by: "number" (equal shares of the events, as the paper) or "time" (equal durations).
        size: output side, resized from the sensor size by :func:`resize_frames` (none if equal).
        sensor_size: ``(height, width)`` of the sensor; events outside it are an error.
        resize: one of :data:`RESIZE_MODES`.

    Returns:
        ``[frames, 2, size, size]`` float32; channel ``p`` (1 = ON) holds the events of polarity ``p``.

    Raises:
        RecordingError: no events, or coordinates outside the sensor.
    """
    if isinstance(events, np.ndarray):
        events = _from_struct(events, "structured")
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
    h, w = sensor_size
    t, x, y = (np.asarray(events[k]) for k in "txy")
    p = (np.asarray(events["p"]) != 0).astype(np.int64)
    if t.shape[0] == 0:
        raise RecordingError("no events")
    if int(x.min()) < 0 or int(y.min()) < 0 or int(x.max()) >= w or int(y.max()) >= h:
        raise RecordingError(f"event coordinates outside the {h}x{w} sensor")
    ev = {"t": t, "x": x, "y": y, "p": p}
    if split_by == "number":  # spikingjelly's own function: equal shares, remainder in the last frame
        out = integrate_events_by_fixed_frames_number(ev, "number", frames, h, w)
    else:
        if np.any(np.diff(t.astype(np.int64)) < 0):  # spikingjelly assumes time order; sort (stable) if not
            order = np.argsort(t, kind="stable")
            t, x, y, p = t[order], x[order], y[order], p[order]
        left, right = segment_bounds(t, frames, "time")
        out = np.zeros((frames, 2, h, w))
        for i in range(frames):
            out[i] = integrate_events_segment_to_frame(x, y, p, h, w, int(left[i]), int(right[i]))
    x_frames = resize_frames(torch.from_numpy(out), size, resize)  # float64 counts [T, 2, H, W] -> [T, 2, size, size]
    return x_frames.to(torch.float32).contiguous()


def resize_frames(x: torch.Tensor, size: int, resize: str = RESIZE_MODE) -> torch.Tensor:
    """``x [T, C, H, W]`` -> ``[T, C, size, size]`` (``x`` itself if already that size).

    "bilinear": antialiased bilinear, ``align_corners=False`` (what ``torchvision.transforms.Resize`` does
    to a tensor, the paper's pipeline); "area": the mean of each output pixel's source window.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if tuple(x.shape[-2:]) == (size, size):
        return x
    if resize == "area":
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def expected_frame_counts(n: int, frames: int) -> list[int]:
    """Events per frame for ``split_by="number"``: ``[n // frames] * (frames - 1) + [rest]``."""
    step = n // frames
    return [step] * (frames - 1) + [n - step * (frames - 1)]


def natural_key(name: str) -> tuple:
    """Sort key that orders ``x_2`` before ``x_10`` (digit runs compared as numbers)."""
    return tuple(int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name))


def scan_recordings(src: Path) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
    """Find ``src/<class>/<recording>`` files.

    Returns:
        ``(classes, items)``: class folder names sorted, and ``("class/file", label)`` sorted by class then name.

    Raises:
        SnnkdError: no such folder, a wrong layout, no recognised recordings.
    """
    src = Path(src).expanduser()
    if not src.is_dir():
        what = "is a file, not a folder" if src.exists() else "does not exist"
        raise SnnkdError(f"source {src} {what}: SRC must hold one folder per class (SRC/airplane/*.aedat, ...)")
    per_class = {}
    try:
        for d in sorted((p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name):
            files = sorted(f.name for f in d.iterdir() if _is_recording(f))
            if files:
                per_class[d.name] = files
        if not per_class:
            raise SnnkdError(_layout_problem(src))
    except OSError as err:
        raise SnnkdError(f"cannot read the source folder {src}: {' '.join(str(err).split())}") from err
    classes = tuple(per_class)
    return classes, [(f"{c}/{f}", i) for i, c in enumerate(classes) for f in per_class[c]]


def _is_recording(f: Path) -> bool:
    return f.suffix.lower() in SUFFIXES and not f.name.startswith(".") and f.is_file()


def _layout_problem(src: Path) -> str:
    entries = sorted(src.iterdir(), key=lambda p: p.name)
    loose = [f for f in entries if _is_recording(f)]
    if loose:
        return f"{len(loose)} recordings lie directly in {src}: put them in one folder per class (SRC/<class>/<file>)"
    archives = [f.name for f in entries if f.suffix.lower() in (".zip", ".rar", ".tar", ".gz", ".7z")]
    if archives:
        return f"{src} holds archives ({', '.join(archives[:3])}): extract them so each class is a folder of recordings"
    for d in (e for e in entries if e.is_dir()):
        if any(sub.is_dir() and any(_is_recording(f) for f in sub.iterdir()) for sub in d.iterdir()):
            return f"no class folders with recordings in {src}, but {d} has them: pass {d} as SRC"
    return (f"no recognised recordings ({', '.join(SUFFIXES)}) in class folders under {src}: "
            "expected SRC/<class>/<name>.aedat, the CIFAR10-DVS release layout")  # fmt: skip


def split_indices(items: list[tuple[str, int]], split: str) -> tuple[list[int], list[int]]:
    """Train and val indices into ``items`` (scan order), each sorted; see ``SPLIT_RULES``."""
    if split == "random":
        gen = torch.Generator().manual_seed(SPLIT_SEED)
        with warnings.catch_warnings():  # fewer than 10 files: an empty val split is what torch gives
            warnings.simplefilter("ignore", UserWarning)
            tr, va = random_split(range(len(items)), [0.9, 0.1], generator=gen)
        return sorted(tr.indices), sorted(va.indices)
    train: list[int] = []
    val: list[int] = []
    for label in sorted({lab for _, lab in items}):
        idx = sorted((i for i, (_, lab) in enumerate(items) if lab == label), key=lambda i: natural_key(items[i][0]))
        n_val = 0 if len(idx) < 2 else max(1, (len(idx) + 5) // 10)
        val += idx[:n_val]
        train += idx[n_val:]
    return sorted(train), sorted(val)
