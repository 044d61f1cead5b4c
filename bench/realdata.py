"""Real data that installs offline: the UCI handwritten digits, as an image folder and as DVS recordings.

    python bench/realdata.py images OUT [--size 32] [--val-fraction 0.2] [--seed 0] [--overwrite]
    python bench/realdata.py events OUT [--per-class 60] [--seed 0] [--overwrite]
    python bench/realdata.py glyphs OUT [--chars 0123456789] [--split typeface] [--variants 2] [--size 32]

Why: every other dataset snnkd can measure itself on offline is synthetic. scikit-learn ships the UCI
handwritten digits inside its wheel (``sklearn.datasets.load_digits``: 1,797 scanned 8x8 grey images of
the digits 0-9, values 0..16), so real images can be had from the package index alone.

``images`` writes an ImageFolder ``OUT/{train,val}/<digit>/<index>.png`` (``--dataset imagefolder``):
RGB PNGs upscaled bicubically to ``--size``, ink bright on black (0..16 -> 0..255), split per class with
a fixed seed (``round(val_fraction * n_class)`` images of each class go to val); ``<index>`` is the
image's index in ``load_digits``.

``events`` writes recordings in the original CIFAR10-DVS release layout and format,
``OUT/<digit>/digits_<digit>_<i>.aedat`` (AEDAT 2.0, DVS128 addresses; ``snnkd preprocess-dvs OUT CACHE``
then ``--dataset cifar10dvs --data-dir CACHE``). They emulate how CIFAR10-DVS was recorded (Li et al.
2017: an image on a monitor moved in a small repeated closed-loop smooth movement in front of a DVS128):
a digit is upscaled bicubically by 8 (64x64) onto the 128x128 sensor, bright strokes on a dim
background, and moved along a small ellipse a few times in 1.2 s (amplitude, shape, phase and number of
loops drawn per recording); each pixel compares its log intensity with a reference level and emits an
ON or OFF event each time the change reaches its contrast threshold (0.2, per-pixel mismatch 0.03), at
a time interpolated between render steps (1 kHz); then Poisson background noise, a small timestamp
jitter and a random absolute start time. ``<i>`` takes the first ``--per-class`` images of the per-class
permutation that ``images`` splits by (the first 20% of it is the image val split).

``glyphs`` writes an ImageFolder of printed characters in real typefaces (Debian's font packages; see
``bench/glyphs.py``): ``--split typeface`` holds out whole designs (val typefaces never seen in training,
a domain shift), ``--split random`` splits (font, character) pairs at random.

Every command writes into a temporary folder next to OUT and rename it at the end, and refuse an OUT that
exists and is not empty unless ``--overwrite`` (which replaces only a folder this script wrote: it keeps
its settings in ``OUT/realdata.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

SENSOR = 128  # DVS128: 128x128 pixels
MARKER = "realdata.json"  # written into every OUT: what made it (and what --overwrite may replace)
DIGIT_MAX = 16.0  # load_digits values are 0..16


class Refusal(Exception):
    """A user mistake: one line on stderr and exit status 2."""


# --- the digits ----------------------------------------------------------------------------------------


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The UCI digits shipped with scikit-learn.

    Returns:
        ``(images [1797, 8, 8] float64 in 0..16, labels [1797] int64)``.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:
        raise Refusal("scikit-learn is needed for the digits: pip install scikit-learn") from err
    d = sk_load_digits()
    return d.images.astype(np.float64), d.target.astype(np.int64)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a permutation seeded ``[seed, class]``; its first ``round(val_fraction * n_class)`` go to val.

    Returns:
        ``(train, val)`` index arrays, each sorted.
    """
    train, val = [], []
    for c in np.unique(labels):
        idx = np.random.default_rng([seed, int(c)]).permutation(np.flatnonzero(labels == c))
        n_val = int(round(val_fraction * idx.size))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def digit_image(digit: np.ndarray, size: int) -> Image.Image:
    """An 8x8 digit (0..16) as an RGB ``size x size`` PIL image: ``round(v * 255 / 16)``, bicubic, grey x 3."""
    grey = np.rint(np.clip(digit, 0, DIGIT_MAX) * (255 / DIGIT_MAX)).astype(np.uint8)
    return Image.fromarray(grey, mode="L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB")


def write_images(out: Path, images: np.ndarray, labels: np.ndarray, size: int, val_fraction: float, seed: int) -> dict:
    """Write ``out/{train,val}/<label>/<index>.png``; returns the counts per split."""
    train, val = stratified_split(labels, val_fraction, seed)
    counts = {}
    for split, idx in (("train", train), ("val", val)):
        for c in np.unique(labels):
            (out / split / str(int(c))).mkdir(parents=True)
        for i in idx:
            digit_image(images[i], size).save(out / split / str(int(labels[i])) / f"{int(i)}.png")
        counts[split] = int(idx.size)
    return counts


# --- the DVS emulation ---------------------------------------------------------------------------------


def cubic_kernel(d: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (PIL's and OpenCV's bicubic use a = -0.5); support ``|d| < 2``."""
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d < 1, near, np.where(d < 2, far, 0.0))


def resample_weights(offset: np.ndarray, scale: float, n_src: int, n_out: int = SENSOR) -> np.ndarray:
    """Bicubic weights that place an ``n_src``-pixel axis, magnified ``scale`` times, at ``offset`` on the sensor.

    Args:
        offset: ``[K]`` sensor coordinate of the image's first edge at each render step (pixel ``x`` spans
            ``[x, x + 1)``).
        scale: sensor pixels per image pixel.

    Returns:
        ``[K, n_out, n_src]``: row ``x`` weighs the image pixels for sensor pixel ``x`` (zero outside the image).
    """
    u = ((np.arange(n_out) + 0.5)[None, :] - offset[:, None]) / scale  # [K, n_out] in image pixels
    return cubic_kernel(u[:, :, None] - (np.arange(n_src) + 0.5))


def closed_loop_path(
    times_s: np.ndarray, rng: np.random.Generator, amplitude: float, loops: tuple[int, ...] = (2, 3, 4)
) -> np.ndarray:
    """A small ellipse traversed a whole number of times: ``[K, 2]`` displacement ``(dx, dy)`` in pixels.

    Drawn per recording: semi-axis ``amplitude * U(0.75, 1.25)``, aspect ``U(0.6, 1)``, orientation, phase,
    direction and the number of loops (one of ``loops``) over the recording.
    """
    duration = float(times_s[-1] - times_s[0]) or 1.0
    radius = amplitude * rng.uniform(0.75, 1.25)
    aspect, angle, phase = rng.uniform(0.6, 1.0), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
    n = int(rng.choice(loops)) * rng.choice([-1, 1])
    w = 2 * np.pi * n * (times_s - times_s[0]) / duration + phase
    e = np.stack([radius * np.cos(w), radius * aspect * np.sin(w)], 1)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return e @ rot.T


def dvs_events(
    log_frames: Callable[[int, int], np.ndarray] | np.ndarray,
    times_us: np.ndarray,
    threshold: np.ndarray | float,
    ref_offset: np.ndarray | float = 0.0,
    chunk: int = 200,
) -> dict[str, np.ndarray]:
    """Ideal DVS pixels watching log intensity frames, with crossing times interpolated between frames.

    Each pixel keeps a reference level, ``L[0] + ref_offset * C`` at the start. Whenever ``L - ref``
    reaches ``+C`` (``-C``) the pixel emits an ON (OFF) event and its reference moves by ``+C`` (``-C``),
    as often as the change allows; between frames ``L`` is taken as linear in time, so the ``j``-th
    level crossed between frames ``k-1`` and ``k`` is met at the time where the line reaches it.
    In units of ``C`` the reference index follows ``m_k = clip(m_{k-1}, floor(z_k), ceil(z_k))`` with
    ``z = (L - ref_0) / C`` (a play operator): a step of ``dL`` from rest gives ``floor(|dL| / C)`` events.

    Args:
        log_frames: ``[K, H, W]`` log intensities, or a function ``(start, stop) -> [stop - start, H, W]``.
        times_us: ``[K]`` frame times (microseconds, float).
        threshold: contrast threshold ``C`` (> 0), scalar or per pixel ``[H, W]``.
        ref_offset: start reference minus ``L[0]`` in units of ``C``, in ``(-1, 1)``; scalar or ``[H, W]``.
        chunk: frames computed at once (memory).

    Returns:
        ``{"t" (float µs), "x", "y", "p" (1 = ON)}`` arrays ``[N]`` in the order found (sort by ``t``).
    """
    frames = (lambda a, b: log_frames[a:b]) if isinstance(log_frames, np.ndarray) else log_frames
    k_total = len(times_us)
    first = np.asarray(frames(0, 1)[0], dtype=np.float64)
    h, w = first.shape
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (h, w)).reshape(-1)
    if np.any(thr <= 0):
        raise ValueError("contrast thresholds must be > 0")
    ref0 = first.reshape(-1) + np.broadcast_to(np.asarray(ref_offset, dtype=np.float64), (h, w)).reshape(-1) * thr
    m = np.zeros(h * w)  # reference index: ref = ref0 + m * C
    z_prev = (first.reshape(-1) - ref0) / thr
    found: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for a in range(1, k_total, chunk):
        b = min(k_total, a + chunk)
        z = (np.asarray(frames(a, b), dtype=np.float64).reshape(b - a, -1) - ref0) / thr  # [c, H*W]
        lo, hi = np.floor(z), np.ceil(z)
        for i in range(b - a):
            m_new = np.minimum(np.maximum(m, lo[i]), hi[i])
            pix = np.flatnonzero(m_new != m)
            if pix.size:
                zp = z_prev[pix] if i == 0 else z[i - 1, pix]
                found.append((a + i, pix, m[pix], m_new[pix], zp, z[i, pix]))
            m = m_new
        z_prev = z[-1]
    if not found:
        return {k: np.zeros(0, dtype=np.float64 if k == "t" else np.int64) for k in "txyp"}
    k, pix, m0, m1, zp, zc = (
        np.concatenate([np.full(f[1].size, f[0]) if j == 0 else f[j] for f in found]) for j in range(6)
    )
    n = np.abs(m1 - m0).astype(np.int64)  # events per (frame, pixel) change
    sign = np.sign(m1 - m0)
    rep = np.repeat(np.arange(n.size), n)
    within = np.arange(rep.size) - np.repeat(np.cumsum(n) - n, n)  # 0..n-1 inside each group
    level = m0[rep] + sign[rep] * (within + 1)  # the reference levels crossed, in units of C
    frac = (level - zp[rep]) / (zc[rep] - zp[rep])  # in (0, 1]
    t0, t1 = times_us[k[rep] - 1], times_us[k[rep]]
    return {"t": t0 + frac * (t1 - t0), "x": pix[rep] % w, "y": pix[rep] // w, "p": (sign[rep] > 0).astype(np.int64)}


def digit_recording(
    digit: np.ndarray,
    rng: np.random.Generator,
    *,
    scale: float = 8.0,
    duration_s: float = 1.2,
    render_hz: float = 1000.0,
    amplitude: float = 2.0,
    background: float = 0.1,
    threshold: float = 0.2,
    mismatch: float = 0.03,
    noise_hz: float = 0.2,
    jitter_us: float = 50.0,
    eps: float = 1e-3,
    loops: tuple[int, ...] = (2, 3, 4),
) -> dict[str, np.ndarray]:
    """One emulated DVS128 recording of an 8x8 digit moving on a monitor.

    The digit (0..16) is magnified ``scale`` times with bicubic weights at its sub-pixel position at each
    render step, centred on the sensor; intensity ``I = background + (1 - background) * clip(v / 16, 0, 1)``
    (the stroke brightness is drawn in ``U(0.8, 1)``), ``L = log(I + eps)``. Pixels follow
    :func:`dvs_events` with thresholds ``N(threshold, mismatch)`` (at least ``threshold / 4``) and a start
    reference ``U(-0.5, 0.5)`` thresholds from ``L[0]``. Then noise events (Poisson, ``noise_hz`` per pixel
    and polarity), Gaussian timestamp jitter, and a random absolute start time.

    Args:
        amplitude: semi-axis of the closed path in sensor pixels (0: the image stays still).

    Returns:
        ``{"t", "x", "y", "p"}`` int64 arrays ``[N]``, time-sorted; ``t`` in µs, ``p`` 1 = ON.
    """
    n_steps = max(1, int(round(duration_s * render_hz)))
    times_s = np.linspace(0.0, duration_s, n_steps + 1)
    shift = closed_loop_path(times_s, rng, amplitude, loops) if amplitude > 0 else np.zeros((times_s.size, 2))
    side = digit.shape[0] * scale
    wx = resample_weights(SENSOR / 2 - side / 2 + shift[:, 0], scale, digit.shape[1])  # [K, 128, 8]
    wy = resample_weights(SENSOR / 2 - side / 2 + shift[:, 1], scale, digit.shape[0])
    cols = np.flatnonzero(np.abs(wx).max(axis=(0, 2)) > 0)  # the window the image can ever touch
    rows = np.flatnonzero(np.abs(wy).max(axis=(0, 2)) > 0)
    x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    wx, wy = wx[:, x0:x1], wy[:, y0:y1]
    ink = np.clip(digit, 0, DIGIT_MAX) / DIGIT_MAX * rng.uniform(0.8, 1.0)

    def log_frames(a: int, b: int) -> np.ndarray:  # [b - a, rows, cols]
        v = wy[a:b] @ ink @ wx[a:b].transpose(0, 2, 1)
        return np.log(background + (1 - background) * np.clip(v, 0, 1) + eps)

    shape = (y1 - y0, x1 - x0)
    thr = np.maximum(rng.normal(threshold, mismatch, shape), threshold / 4)
    ev = dvs_events(log_frames, times_s * 1e6, thr, rng.uniform(-0.5, 0.5, shape))
    ev["x"] += x0
    ev["y"] += y0
    duration_us = duration_s * 1e6
    n_noise = int(rng.poisson(noise_hz * duration_s * SENSOR * SENSOR * 2))
    t = np.concatenate([ev["t"], rng.uniform(0, duration_us, n_noise)])
    t = np.clip(np.rint(t + rng.normal(0, jitter_us, t.size)), 0, duration_us).astype(np.int64) if t.size else t
    x = np.concatenate([ev["x"], rng.integers(0, SENSOR, n_noise)])
    y = np.concatenate([ev["y"], rng.integers(0, SENSOR, n_noise)])
    p = np.concatenate([ev["p"], rng.integers(0, 2, n_noise)])
    order = np.argsort(t, kind="stable")
    start = int(rng.integers(0, 2**31))  # recordings carry absolute timestamps
    return {"t": t[order].astype(np.int64) + start, "x": x[order], "y": y[order], "p": p[order]}


def recording_choice(labels: np.ndarray, per_class: int, seed: int) -> dict[int, np.ndarray]:
    """Per class, the first ``per_class`` of a permutation seeded ``[seed, class]`` (indices into the digits).

    It is the permutation of :func:`stratified_split`: recordings ``0 .. round(0.2 * n) - 1`` of a class show
    the images that ``images --val-fraction 0.2`` puts in val (with ``preprocess-dvs --split per-class``,
    the DVS val recordings are all of val images).
    """
    return {
        int(c): np.random.default_rng([seed, int(c)]).permutation(np.flatnonzero(labels == c))[:per_class]
        for c in np.unique(labels)
    }


def write_events(out: Path, images: np.ndarray, labels: np.ndarray, per_class: int, seed: int, **sim) -> dict:
    """Write ``out/<digit>/digits_<digit>_<i>.aedat``; returns ``{relative path: {"index", "events"}}``."""
    from snnkd_cli.testing import write_aedat2

    files = {}
    for c, chosen in recording_choice(labels, per_class, seed).items():
        (out / str(c)).mkdir(parents=True)
        for i, idx in enumerate(chosen):
            ev = digit_recording(images[idx], np.random.default_rng([seed, c, i, 1]), **sim)
            rel = f"{c}/digits_{c}_{i}.aedat"
            write_aedat2(out / rel, ev["x"], ev["y"], ev["p"], ev["t"])
            files[rel] = {"index": int(idx), "events": int(ev["t"].size)}
    return files


# --- writing OUT in one piece --------------------------------------------------------------------------


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an OUT that is a file, or a non-empty folder without ``--overwrite`` or not written here."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise Refusal(f"{out} exists and is not a folder: choose another OUT")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise Refusal(f"{out} exists and is not empty: pass --overwrite to replace it, or choose another OUT")
        if not (out / MARKER).is_file():
            raise Refusal(f"{out} has no {MARKER}, so this script did not write it: --overwrite will not replace it")


def write_atomically(out: Path, overwrite: bool, fill: Callable[[Path], dict]) -> dict:
    """Run ``fill(tmp)`` in a temporary folder next to ``out``, then rename it to ``out``.

    ``fill`` returns the settings kept in ``out/realdata.json``. Nothing is left half-written: on any
    error the temporary folder is removed and ``out`` is untouched.
    """
    out = out.expanduser().absolute()
    check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        info = fill(tmp)
        (tmp / MARKER).write_text(json.dumps(info, indent=1) + "\n")
        if out.exists():  # an empty folder, or (checked) one this script wrote
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            out.rename(old / out.name)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            (old / out.name).rename(out)  # put the previous folder back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return info


# --- command line --------------------------------------------------------------------------------------


def cmd_images(args: argparse.Namespace) -> str:
    if args.size < 1:
        raise Refusal(f"--size must be >= 1, got {args.size}")
    if not 0 < args.val_fraction < 1:
        raise Refusal(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    check_out(args.out.expanduser(), args.overwrite)  # before any work
    start = time.perf_counter()
    images, labels = load_digits()

    def fill(tmp: Path) -> dict:
        counts = write_images(tmp, images, labels, args.size, args.val_fraction, args.seed)
        return {
            "kind": "images",
            "source": "sklearn.datasets.load_digits",
            "size": args.size,
            "val_fraction": args.val_fraction,
            "seed": args.seed,
            "counts": counts,
        }

    info = write_atomically(args.out, args.overwrite, fill)
    c = info["counts"]
    return (
        f"wrote {c['train']} train + {c['val']} val digit images ({args.size}x{args.size} RGB PNG) to "
        f"{args.out} in {time.perf_counter() - start:.1f} s"
    )


def cmd_events(args: argparse.Namespace) -> str:
    check_out(args.out.expanduser(), args.overwrite)  # before any work
    images, labels = load_digits()
    smallest = int(np.bincount(labels).min())
    checks = [
        (1 <= args.per_class <= smallest, f"--per-class must be in 1..{smallest} (images of the rarest digit)"),
        (args.threshold > 0, "--threshold must be > 0"),
        (args.noise_hz >= 0, "--noise-hz must be >= 0"),
        (args.amplitude >= 0, "--amplitude must be >= 0"),
        (args.duration > 0, "--duration must be > 0"),
        (args.render_hz > 0, "--render-hz must be > 0"),
    ]
    for ok, msg in checks:
        if not ok:
            raise Refusal(msg)
    sim = {
        "threshold": args.threshold,
        "noise_hz": args.noise_hz,
        "amplitude": args.amplitude,
        "duration_s": args.duration,
        "render_hz": args.render_hz,
    }
    start = time.perf_counter()

    def fill(tmp: Path) -> dict:
        files = write_events(tmp, images, labels, args.per_class, args.seed, **sim)
        return {
            "kind": "events",
            "source": "sklearn.datasets.load_digits",
            "per_class": args.per_class,
            "seed": args.seed,
            "simulation": sim,
            "files": files,
        }

    info = write_atomically(args.out, args.overwrite, fill)
    seconds = time.perf_counter() - start
    n = np.array([f["events"] for f in info["files"].values()])
    return (
        f"wrote {n.size} recordings to {args.out}: {n.mean():,.0f} events per recording on average "
        f"(min {n.min():,}, max {n.max():,}), {seconds:.1f} s ({seconds / n.size:.2f} s per recording)"
    )


def cmd_glyphs(args: argparse.Namespace) -> str:
    glyphs = _bench_module("glyphs")
    chars = args.chars
    checks = [
        (args.size >= 8, f"--size must be >= 8, got {args.size}"),
        (args.variants >= 1, f"--variants must be >= 1, got {args.variants}"),
        (len(set(chars)) == len(chars) >= 2, "--chars must be at least two different characters"),
        (all(c.isascii() and c.isalnum() and (c.isdigit() or c.isupper()) for c in chars),
         "--chars takes digits and upper-case letters (each is a class folder)"),
        (0 < args.val_fraction < 1, f"--val-fraction must be between 0 and 1, got {args.val_fraction}"),
    ]  # fmt: skip
    for ok, msg in checks:
        if not ok:
            raise Refusal(msg)
    check_out(args.out.expanduser(), args.overwrite)  # before any work
    start = time.perf_counter()
    faces = glyphs.find_faces([Path(d) for d in args.font_dir], chars)
    val_groups = tuple(args.val_groups)
    groups = {f.group for f in faces}
    if args.split == "typeface" and not (groups & set(val_groups) and groups - set(val_groups)):
        raise Refusal(
            f"found {len(faces)} usable fonts in {len(groups)} designs under {', '.join(args.font_dir)}, which "
            f"cannot split into val designs {', '.join(val_groups)} and training ones: install the fonts "
            f"(apt-get install {glyphs.DEBIAN_FONT_PACKAGES}) or give --font-dir / --val-groups"
        )

    def fill(tmp: Path) -> dict:
        made = glyphs.write_glyphs(
            tmp, faces, chars, args.size, args.variants, args.seed, args.split, val_groups, args.val_fraction
        )
        settings = {"chars": chars, "size": args.size, "variants": args.variants, "split": args.split}
        settings |= {"val_groups": list(val_groups) if args.split == "typeface" else None, "seed": args.seed}
        return {"kind": "glyphs", "source": "font files: " + glyphs.DEBIAN_FONT_PACKAGES, **settings, **made}

    info = write_atomically(args.out, args.overwrite, fill)
    c = info["counts"]
    return (
        f"wrote {c['train']} train + {c['val']} val glyph images ({len(chars)} classes, {args.size}x{args.size} "
        f"RGB PNG, {len(faces)} fonts in {len(groups)} designs, split by {args.split}) to {args.out} "
        f"in {time.perf_counter() - start:.1f} s"
    )


def _bench_module(name: str):
    """A sibling module of this script (bench/ is not a package)."""
    import importlib.util

    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="{images,events,glyphs}")

    def common(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("out", type=Path, metavar="OUT", help=f"output folder ({what}); must not exist or be empty")
        p.add_argument("--seed", type=int, default=0, help="seed of the split/choice and of the emulation (default 0)")
        p.add_argument("--overwrite", action="store_true", help=f"replace OUT if this script wrote it ({MARKER})")

    im = sub.add_parser(
        "images",
        help="ImageFolder OUT/{train,val}/<digit>/<index>.png",
        description="Write the digits as an ImageFolder (snnkd --dataset imagefolder).",
    )
    common(im, "OUT/train/<digit>/<index>.png and OUT/val/...")
    im.add_argument("--size", type=int, default=32, help="side of the RGB PNGs in pixels (bicubic; default 32)")
    im.add_argument("--val-fraction", type=float, default=0.2, help="share of each class in val (default 0.2)")
    im.set_defaults(run=cmd_images)

    ev = sub.add_parser(
        "events",
        help="CIFAR10-DVS-layout AEDAT 2.0 recordings OUT/<digit>/digits_<digit>_<i>.aedat",
        description="Write emulated DVS128 recordings of the digits (snnkd preprocess-dvs OUT CACHE).",
    )
    common(ev, "OUT/<digit>/digits_<digit>_<i>.aedat")
    ev.add_argument("--per-class", type=int, default=60, help="recordings per digit, one image each (default 60)")
    ev.add_argument("--threshold", type=float, default=0.2, help="DVS contrast threshold in log units (default 0.2)")
    ev.add_argument("--noise-hz", type=float, default=0.2, help="noise events per pixel, polarity, second (0.2)")
    ev.add_argument("--amplitude", type=float, default=2.0, help="semi-axis of the movement in pixels (default 2)")
    ev.add_argument("--duration", type=float, default=1.2, help="seconds per recording (default 1.2)")
    ev.add_argument("--render-hz", type=float, default=1000.0, help="render steps per second (default 1000)")
    ev.set_defaults(run=cmd_events)

    gl = sub.add_parser(
        "glyphs",
        help="ImageFolder OUT/{train,val}/<char>/<font>-<variant>.png of printed characters",
        description="Write printed characters in real typefaces as an ImageFolder (snnkd --dataset imagefolder).",
    )
    common(gl, "OUT/train/<char>/<font>-<variant>.png and OUT/val/...")
    gl.add_argument("--chars", default="0123456789", help="the classes: digits and capitals (default 0123456789)")
    gl.add_argument("--size", type=int, default=32, help="side of the RGB PNGs in pixels (default 32)")
    gl.add_argument("--variants", type=int, default=2, help="images per (font, character) (default 2)")
    gl.add_argument(
        "--split", choices=("typeface", "random"), default="typeface",
        help="typeface: val designs are never in training (a shift); random: (font, char) pairs at random",
    )  # fmt: skip
    gl.add_argument(
        "--val-groups", nargs="+", default=list(_bench_module("glyphs").VAL_GROUPS), metavar="GROUP",
        help="design groups held out by --split typeface (default: palatino avant-garde cantarell caladea)",
    )  # fmt: skip
    gl.add_argument("--val-fraction", type=float, default=0.2, help="--split random: share of val (default 0.2)")
    gl.add_argument("--font-dir", nargs="+", default=["/usr/share/fonts"], help="where fonts are searched")
    gl.set_defaults(run=cmd_glyphs)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        print(args.run(args))
    except Refusal as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
