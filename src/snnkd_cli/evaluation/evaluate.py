"""Evaluate a saved checkpoint: rebuild its model from the file alone, sweep T = 1..max_T in one pass,
and optionally count energy and evaluate early exit (what ``snnkd eval-sweep`` runs)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from torch import nn

from snnkd_cli.checkpoint import Checkpoint, check_rebuildable, load_checkpoint, model_from_checkpoint
from snnkd_cli.config import RunConfig
from snnkd_cli.data import build_datasets, calibration_split
from snnkd_cli.data.loaders import check_T_fits, make_loader
from snnkd_cli.data.static import CIFAR, CIFAR_SIZE
from snnkd_cli.errors import SnnkdError, option
from snnkd_cli.evaluation.early_exit import DynamicOptions, evaluate_dynamic, relative_energy
from snnkd_cli.evaluation.energy import measure_energy
from snnkd_cli.evaluation.sweep import SweepResult, sweep
from snnkd_cli.precision import default_device


def evaluate_checkpoint(
    path: str | Path,
    max_T: int | None = None,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    batch_size: int | None = None,
    device: torch.device | None = None,
    precision: str | None = None,
    reframe: bool = False,
    energy: bool = False,
    energy_samples: int | None = 256,
    dynamic: DynamicOptions | None = None,
    chunk_T: int | None = None,
) -> tuple[Checkpoint, SweepResult]:
    """Rebuild a checkpoint's model from the file alone and sweep T = 1..max_T in one pass.

    Args:
        path: a snnkd checkpoint (teacher or student).
        max_T: steps of the pass (default: the training T); ignored for a teacher.
        dataset, data_dir: evaluate on this data instead of the checkpoint's own (same classes needed;
            the image size stays the one the model was trained at).
        batch_size: evaluation batch (default: the training batch).
        precision: autocast precision (default fp32, whatever the training precision).
        reframe: event data only: for each T' frame the recordings into T' frames (a cache per T',
            made from the recordings the cache was made from) and run T' steps: one pass per T'.
        energy: also count SynOps, MACs, spike rates per layer and energy at every T
            (``SweepResult.energy``) on the first ``energy_samples`` samples (None: all).
        dynamic: also evaluate early exit (students): the curve from the same pass and a threshold chosen
            on a calibration slice of the training split (``result.dynamic``).
        chunk_T: steps per forward of a student's pass (default ``SWEEP_CHUNK_T``): a longer pass runs in chunks,
            the state carried between them (the same numbers, the memory of ``chunk_T`` steps).
    """
    device = device or default_device()
    precision = precision or "fp32"
    ckpt = load_checkpoint(path)
    check_rebuildable(ckpt)
    spiking = ckpt.kind == "student"
    _check_options(max_T, batch_size, energy, energy_samples, reframe, dynamic is not None, chunk_T)
    val, info, data = _evaluation_data(path, ckpt.config, dataset, data_dir)
    ckpt = dataclasses.replace(ckpt, config=dataclasses.replace(ckpt.config, data=data))  # the data evaluated on
    cfg = ckpt.config
    model = model_from_checkpoint(ckpt).to(device)
    loader = make_loader(
        val, batch_size or cfg.train.batch_size, train=False, workers=cfg.data.workers, seed=0, device=device
    )
    T = (max_T or cfg.train.T) if spiking else None
    if reframe:
        if not (spiking and cfg.data.dataset == "cifar10dvs"):
            raise SnnkdError("--reframe applies to spiking students on cifar10dvs (it re-frames the recordings)")
        return ckpt, _reframed_sweep(model, cfg, T, batch_size or cfg.train.batch_size, device, precision, chunk_T)
    if spiking:
        check_T_fits(T, info, option("max_T"))
    calib = None
    if dynamic is not None and spiking:  # built first: a missing training split fails before the long pass
        dynamic = dynamic.resolve(cfg.data.calib_holdout)
        calib = calibration_split(cfg.data, dynamic.calib_fraction)
    kw = {"temporal": info.temporal, "device": device, "precision": precision, "chunk_T": chunk_T}
    res = sweep(model, loader, T, spiking=spiking, keep_trace=calib is not None, **kw)
    if energy:
        res.energy = measure_energy(model, loader, T, spiking=spiking, max_samples=energy_samples, **kw)
    if calib is not None:  # early exit: the curve from this pass, the threshold from the calibration slice
        cal_loader = make_loader(calib, loader.batch_size, train=False, workers=cfg.data.workers, seed=0, device=device)
        res.dynamic = evaluate_dynamic(res.trace, sweep(model, cal_loader, T, keep_trace=True, **kw).trace, dynamic)
        _exit_energy(res, T)
    return ckpt, res


def _check_options(
    max_T: int | None,
    batch_size: int | None,
    energy: bool,
    samples: int | None,
    reframe: bool,
    dynamic: bool,
    chunk_T: int | None = None,
) -> None:
    """The options alone, before any data or model is loaded."""
    if max_T is not None and max_T < 1:
        raise SnnkdError(f"{option('max_T')} must be >= 1, got {max_T}")
    if chunk_T is not None and chunk_T < 1:
        raise SnnkdError(f"{option('chunk_T')} must be >= 1, got {chunk_T}")
    if batch_size is not None and batch_size < 1:
        raise SnnkdError(f"{option('batch_size')} must be >= 1, got {batch_size}")
    if energy and reframe:
        raise SnnkdError("--energy counts the cached frames; run it without --reframe")
    if samples is not None and samples < 1:
        raise SnnkdError(f"{option('energy_samples')} must be >= 1, got {samples}")
    if reframe and dynamic:
        raise SnnkdError("--dynamic reads the running mean of one pass: it cannot be combined with --reframe")


def _evaluation_data(path: str | Path, cfg: RunConfig, dataset: str | None, data_dir: str | None):
    """``(val set, info, data config)``: the checkpoint's own data or the one asked for (a new data config;
    ``cfg`` is not changed), checked against the model's classes, channels and (CIFAR) image size."""
    changes = {k: v for k, v in (("dataset", dataset), ("data_dir", data_dir)) if v is not None}
    own = (cfg.data.dataset, cfg.data.data_dir)
    if (changes.get("dataset", own[0]), changes.get("data_dir", own[1])) != own:
        changes["calib_holdout"] = 0.0  # another dataset's training split: the student may have seen none of it
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **changes))
    if not cfg.data.dataset:
        raise SnnkdError(
            f"{path} was trained from the Python API on loaders of its own: pass --dataset (and --data-dir) to "
            "evaluate it, or give distill(..., dataset=NAME)"
        )
    if cfg.data.dataset in CIFAR and cfg.data.image_size not in (None, CIFAR_SIZE):
        raise SnnkdError(
            f"{path} was trained on {cfg.data.image_size}-px images but {cfg.data.dataset} images are "
            f"{CIFAR_SIZE}x{CIFAR_SIZE}: evaluate it on data of its own size"
        )
    _, val, info = build_datasets(cfg.data, train=False)
    if info.num_classes != cfg.model.num_classes:
        raise SnnkdError(f"{path} predicts {cfg.model.num_classes} classes but {info.name} has {info.num_classes}")
    if info.in_channels != cfg.model.in_channels:
        raise SnnkdError(
            f"{path} takes {cfg.model.in_channels}-channel input but {info.name} has {info.in_channels} channels: "
            f"evaluate it on data like its own ({own[0]})"
        )
    return val, info, cfg.data


def _exit_energy(res: SweepResult, T: int) -> None:
    """With ``--energy``: each early-exit point's energy relative to a fixed run of ``T`` steps, and in µJ."""
    if res.energy is None:
        return
    full = res.energy.at(T)["energy_uj"]
    for point in [*res.dynamic.curve, res.dynamic.chosen]:
        point["energy_rel"] = relative_energy(point["exit_share"], res.energy.step_energy_uj)
        point["energy_uj"] = point["energy_rel"] * full


def _reframed_sweep(
    model: nn.Module,
    cfg: RunConfig,
    max_T: int,
    batch_size: int,
    device: torch.device,
    precision: str,
    chunk_T: int | None = None,
) -> SweepResult:
    """Row T' from a run of T' steps over the recordings framed into T' frames (one pass per T')."""
    from snnkd_cli.data.dvs import DVSFrames, open_dvs_cache, preprocess_dvs, read_manifest

    d = cfg.data
    cache = open_dvs_cache(Path(d.data_dir), frames=d.frames, size=d.image_size, split=d.split, resize=d.resize)
    man = read_manifest(cache)
    p = man["params"]
    rows, n = [], 0
    for t in range(1, max_T + 1):
        rep = preprocess_dvs(
            Path(man["source"]),
            cache.parent,
            frames=t,
            split_by=p["split_by"],
            size=p["size"],
            split=p["split"],
            workers=max(1, min(4, os.cpu_count() or 1)),
            resize=p.get("resize", "area"),  # the training cache's (older manifests: area, the only mode then)
        )
        val = DVSFrames(rep.cache_dir, train=False)
        loader = make_loader(val, batch_size, train=False, workers=cfg.data.workers, seed=0, device=device)
        res = sweep(model, loader, t, temporal=True, device=device, precision=precision, chunk_T=chunk_T)
        rows.append(res.at(t))
        n = res.num_samples
    return SweepResult(rows, n, method="reframed", precision=res.precision)
