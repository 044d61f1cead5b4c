"""CIFAR10-DVS: raw recordings -> a cache of frame tensors, and the dataset that reads it (augmented by
:class:`~snnkd_cli.data.dvs_augment.DVSAugment`).

``preprocess_dvs(SRC, OUT)`` reads ``SRC/<class>/<recording>`` (see :mod:`snnkd_cli.data.aedat` for the
formats), frames each recording with :func:`frame_events` and writes ``OUT/<key>/<class>/<name>.safetensors``
(``[T, 2, size, size]`` float32 under ``"frames"``) plus ``OUT/<key>/manifest.json`` (written last).
``<key>`` names every parameter that changes the content (``frames10-number-size48-random-bilinear``).

Outputs are byte-identical for identical inputs and parameters, whatever the number of workers:
files are sorted, each output depends only on its own recording, and the safetensors metadata is one
JSON string (safetensors 0.8 writes several metadata keys in a random, per-process order).
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save
from torch.utils.data import Dataset

from snnkd_cli.config import check_choice
from snnkd_cli.data.aedat import (
    RESIZE_MODE,
    RESIZE_MODES,
    SENSOR_SIZE,
    SPLIT_BY,
    SPLIT_RULES,
    SPLITS,
    RecordingError,
    frame_events,
    read_events,
    scan_recordings,
    split_indices,
)
from snnkd_cli.data.dvs_augment import DVSAugment
from snnkd_cli.errors import SnnkdError, option
from snnkd_cli.fsutil import atomic_write_bytes

FORMAT = 1  # bump when the content of a cache changes for the same parameters
MANIFEST = "manifest.json"
TENSOR_KEY = "frames"
META_KEY = "snnkd"
# Linux: fork, as torch's DataLoader does (a spawned worker spends ~4 s importing torch/spikingjelly).
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


@dataclass
class PreprocessReport:
    """What :func:`preprocess_dvs` did; ``events``/``files`` count the whole cache, reused files included."""

    cache_dir: Path
    files: int
    events: int
    frames: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    reused: int = 0
    decoded_events: int = 0  # events decoded in this run (reused files excluded)
    train: int = 0  # recordings in the training split
    val: int = 0  # recordings in the validation split

    @property
    def events_per_second(self) -> float:
        """Throughput of this run: events decoded and framed per wall-clock second."""
        return self.decoded_events / self.seconds if self.seconds > 0 else 0.0


def cache_key(frames: int, split_by: str, size: int, split: str, resize: str = "area") -> str:
    """The cache folder name: every parameter that changes the content, e.g. ``frames10-number-size48-random-bilinear``.

    ``resize="area"`` (the only mode before ``--resize`` existed) adds nothing, so older caches keep their name.
    """
    return f"frames{frames}-{split_by}-size{size}-{split}" + ("" if resize == "area" else f"-{resize}")


def _params(frames: int, split_by: str, size: int, split: str, resize: str) -> dict[str, Any]:
    return {"frames": frames, "split_by": split_by, "size": size, "split": split,
            "sensor_size": list(SENSOR_SIZE), "resize": resize}  # fmt: skip


def _param(params: dict[str, Any], key: str) -> Any:
    """A cache parameter; ``resize`` is ``area`` in manifests written before it was recorded."""
    return params.get(key, "area" if key == "resize" else None)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if isinstance(err, RecordingError) else f"{type(err).__name__}: {text}".rstrip(": ")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # gone since the scan: reading it will fail and skip it
        return -1


def _existing_events(target: Path, meta: dict[str, Any]) -> int | None:
    """Event count of a finished output made from the same recording and parameters, else None."""
    try:
        with safe_open(str(target), framework="pt") as f:
            old = json.loads((f.metadata() or {})[META_KEY])
            shape = f.get_slice(TENSOR_KEY).get_shape()
    except Exception:  # missing, truncated, foreign: redo it
        return None
    p = meta["params"]
    same = all(old.get(k) == v for k, v in meta.items() if k != "events")
    return int(old["events"]) if same and shape == [p["frames"], 2, p["size"], p["size"]] else None


def _process(job: tuple[str, str, dict[str, Any]]) -> tuple[str, int, str | None]:
    """Frame one recording and write its output; a bad recording gives ``(source, 0, reason)``."""
    src, target, meta = job
    try:
        ev = read_events(Path(src))
        p = meta["params"]
        x = frame_events(ev, p["frames"], p["split_by"], p["size"], tuple(p["sensor_size"]), p["resize"])
    except Exception as err:  # one bad recording never stops the run
        Path(target).unlink(missing_ok=True)
        return meta["source"], 0, _one_line(err)
    meta = {**meta, "events": int(ev["t"].shape[0])}
    data = st_save({TENSOR_KEY: x}, metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(target), data, fsync=False)  # resume re-verifies every file
    return meta["source"], meta["events"], None


def _init_worker() -> None:
    torch.set_num_threads(1)


def _run(jobs: list[tuple[str, str, dict[str, Any]]], workers: int) -> Iterator[tuple[str, int, str | None]]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_process, jobs)
        return
    ctx = mp.get_context(START_METHOD)
    ex = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx, initializer=_init_worker)
    try:
        for fut in as_completed([ex.submit(_process, job) for job in jobs]):
            yield fut.result()
    except BrokenProcessPool as err:
        raise SnnkdError("a preprocessing worker died (out of memory?): re-run with fewer --workers; "
                         "finished files are kept") from err  # fmt: skip
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _check_args(frames: int, size: int, workers: int, split_by: str, split: str, resize: str) -> None:
    checks = [
        (frames >= 1, f"{option('frames')} must be >= 1, got {frames}"),
        (size >= 8, f"{option('size')} must be >= 8, got {size}"),
        (workers >= 1, f"{option('workers')} must be >= 1, got {workers}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise SnnkdError(msg)
    check_choice(split_by, SPLIT_BY, option("split_by"))
    check_choice(split, SPLITS, option("split"))
    check_choice(resize, RESIZE_MODES, option("resize"))


def _open_cache(cache: Path) -> Path:
    """Create the cache folder and remove the temp files an interrupted run left (one run per cache at a time)."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for stale in cache.glob("**/.*.tmp"):
            stale.unlink()
    except OSError as err:
        raise SnnkdError(f"cannot write the cache at {cache}: {_one_line(err)}") from err
    return cache


def preprocess_dvs(
    src: Path,
    out: Path,
    *,
    frames: int = 10,
    split_by: str = "number",
    size: int = 48,
    split: str = "random",
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    resize: str = RESIZE_MODE,
) -> PreprocessReport:
    """Turn ``src/<class>/<recording>`` into cached frames ``[frames, 2, size, size]`` under ``out/<key>/``.

    Finished outputs of an earlier run with the same parameters are reused; unreadable recordings are
    skipped and listed (``report.skipped``, the manifest). ``progress(done, total)`` is called as files finish.
    ``resize``: how frames are resized from 128 px, one of :data:`~snnkd_cli.data.aedat.RESIZE_MODES`.

    Raises:
        SnnkdError: bad arguments, no recordings or a wrong layout, every recording unreadable, disk errors.
    """
    start = time.perf_counter()
    _check_args(frames, size, workers, split_by, split, resize)
    src, out = Path(src).expanduser(), Path(out).expanduser()
    classes, items = scan_recordings(src)
    if any(rel.lower().endswith(".aedat4") for rel, _ in items):
        if importlib.util.find_spec("aedat") is None:
            raise SnnkdError(f"{src} holds .aedat4 recordings, which tonic reads with the 'aedat' package: "
                             "pip install aedat")  # fmt: skip
    params = _params(frames, split_by, size, split, resize)
    cache = _open_cache(out / cache_key(frames, split_by, size, split, resize))

    done: dict[str, int] = {}
    jobs = []
    for rel, label in items:
        meta = {"format": FORMAT, "source": rel, "label": label, "class": classes[label], "params": params,
                "source_bytes": _size(src / rel)}  # fmt: skip
        target = cache / f"{rel}.safetensors"
        n = _existing_events(target, meta)
        if n is None:
            jobs.append((str(src / rel), str(target), meta))
        else:
            done[rel] = n
    reused, total = len(done), len(items)
    if progress is not None and reused:
        progress(reused, total)
    skipped: dict[str, str] = {}
    decoded = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # parallel over files: a multi-threaded resize of one small tensor is ~20x slower
    try:
        for rel, n, reason in _run(jobs, workers):
            if reason is None:
                done[rel] = n
                decoded += n
            else:
                skipped[rel] = reason
            if progress is not None:
                progress(len(done) + len(skipped), total)
    except OSError as err:
        raise SnnkdError(f"cannot write the cache at {cache}: {_one_line(err)}") from err
    finally:
        torch.set_num_threads(threads)
    if not done:
        rel, reason = next(iter(sorted(skipped.items())))
        raise SnnkdError(f"none of the {total} recordings in {src} could be read (first, {rel}: {reason})")

    train, val = split_indices(items, split)
    entries = lambda idx: [[f"{items[i][0]}.safetensors", items[i][1]] for i in idx if items[i][0] in done]  # noqa: E731
    manifest = {
        "format": FORMAT, "key": cache.name, "params": params, "source": str(src.resolve()),
        "classes": list(classes), "split": {"name": split, "rule": SPLIT_RULES[split]},
        "train": entries(train), "val": entries(val), "skipped": sorted([k, v] for k, v in skipped.items()),
        "files": len(done), "events": sum(done.values()),
    }  # fmt: skip
    atomic_write_bytes(cache / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return PreprocessReport(cache, len(done), sum(done.values()), len(done) * frames, sorted(skipped.items()),
                            time.perf_counter() - start, reused, decoded, len(manifest["train"]),
                            len(manifest["val"]))  # fmt: skip


def read_manifest(cache_dir: Path) -> dict[str, Any]:
    """The manifest of a finished cache; one-line SnnkdError if it is missing, corrupt or from another format."""
    path = Path(cache_dir) / MANIFEST
    try:
        man = json.loads(path.read_text())
        ok = man.get("format") == FORMAT and {"params", "classes", "train", "val"} <= set(man)
    except (OSError, ValueError) as err:
        what = "no" if not path.exists() else "an unreadable"
        raise SnnkdError(f"{what} DVS cache manifest at {path}: run snnkd preprocess-dvs SRC OUT") from err
    if not ok:
        raise SnnkdError(f"DVS cache {cache_dir} was made by another snnkd version: run snnkd preprocess-dvs again")
    return man


def _describe(p: dict[str, Any]) -> str:
    return " ".join(f"{k}={_param(p, k)}" for k in ("frames", "split_by", "size", "split", "resize"))


def _rerun_hint(man: dict[str, Any] | None, out: Path, want: dict[str, Any]) -> str:
    src = man["source"] if man else "SRC"
    base = man["params"] if man else {}
    p = {k: (want[k] if want[k] is not None else _param(base, k)) for k in want}
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in p.items() if v is not None)
    return f"run snnkd preprocess-dvs {src} {out} {flags}".rstrip()


def open_dvs_cache(
    data_dir: Path,
    *,
    frames: int | None = None,
    split_by: str | None = None,
    size: int | None = None,
    split: str | None = None,
    resize: str | None = None,
) -> Path:
    """The cache folder for the asked parameters (None = any): ``data_dir`` itself or one ``<key>`` in it.

    Raises:
        SnnkdError: no cache, a cache made with other parameters, or several matching (one line each).
    """
    data_dir = Path(data_dir).expanduser()
    if resize is not None:
        check_choice(resize, RESIZE_MODES, option("resize"))
    want = {"frames": frames, "split_by": split_by, "size": size, "split": split, "resize": resize}
    asked = {k: v for k, v in want.items() if v is not None}
    if (data_dir / MANIFEST).is_file():
        man = read_manifest(data_dir)
        wrong = {k: v for k, v in asked.items() if _param(man["params"], k) != v}
        if wrong:
            asked_txt = " ".join(f"{k}={v}" for k, v in wrong.items())
            raise SnnkdError(f"cache at {data_dir} was made with {_describe(man['params'])} but {asked_txt} was "
                             f"asked; {_rerun_hint(man, data_dir.parent, want)}")  # fmt: skip
        return data_dir
    subs = sorted(d for d in data_dir.iterdir() if (d / MANIFEST).is_file()) if data_dir.is_dir() else []
    mans = {d: read_manifest(d) for d in subs}
    match = [d for d, m in mans.items() if all(_param(m["params"], k) == v for k, v in asked.items())]
    if len(match) == 1:
        return match[0]
    if len(match) > 1:
        raise SnnkdError(f"several DVS caches in {data_dir} match ({', '.join(d.name for d in match)}): "
                         f"pass --data-dir {data_dir / match[0].name} (or another of them)")  # fmt: skip
    man = next(iter(mans.values()), None)
    if not subs:
        raise SnnkdError(f"no DVS cache in {data_dir} (no {MANIFEST} there or in a subfolder); "
                         f"{_rerun_hint(man, data_dir, want)}")  # fmt: skip
    found = f"found {', '.join(d.name for d in subs)}"
    raise SnnkdError(f"no DVS cache in {data_dir} matches {' '.join(f'{k}={v}' for k, v in asked.items()) or 'any'}"
                     f" ({found}); {_rerun_hint(man, data_dir, want)}")  # fmt: skip


class DVSFrames(Dataset):
    """A finished cache's train or val split: ``(frames [T, 2, size, size] float32, label int)``.

    Args:
        cache_dir: the ``<key>`` folder (see :func:`open_dvs_cache`).
        train: the train split, else val.
        augment: apply :class:`DVSAugment` (training only).
    """

    def __init__(self, cache_dir: Path, train: bool, augment: bool = False) -> None:
        self.root = Path(cache_dir)
        man = read_manifest(self.root)
        entries = man["train" if train else "val"]
        self.files = [str(e[0]) for e in entries]
        self.targets = [int(e[1]) for e in entries]
        self.classes = tuple(man["classes"])
        self.params = man["params"]
        self.frames = int(self.params["frames"])
        self.size = int(self.params["size"])
        self.split = man["split"]["name"]
        self.transform = DVSAugment() if augment else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.root / self.files[i]
        try:
            with safe_open(str(path), framework="pt") as f:
                x = f.get_tensor(TENSOR_KEY)
        except Exception as err:
            raise SnnkdError(f"cannot read cached frames {path} ({_one_line(err)}): delete it and re-run "
                             "snnkd preprocess-dvs with the same options") from err  # fmt: skip
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[i]
