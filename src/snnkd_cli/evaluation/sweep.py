"""Accuracy at every T from one pass: run at Tmax and read T' from the running mean.

The logits of a run at T' steps equal the first T' per-step logits of a run at Tmax (a
neuron's state at step t depends only on steps <= t), so ``cumsum(logits, 0)[t-1] / t`` is
the prediction at T'=t. A model that mixes timesteps (attention or a mean over T) declares
``mixes_time = True`` and is run once per T'. Spike rates come from forward hooks on
spikingjelly neurons.

A long pass runs in chunks of ``chunk_T`` steps (:data:`SWEEP_CHUNK_T` unless given), the network's state
carried from one chunk to the next (as the early-exit runtime carries it from step to step): the same logits,
and the activation memory of a pass at ``chunk_T`` steps instead of max_T.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn
from torch.utils.data import DataLoader

from snnkd_cli.dist import all_reduce_sum
from snnkd_cli.errors import SnnkdError, option
from snnkd_cli.evaluation.early_exit import DynamicResult, ExitTrace, running_mean
from snnkd_cli.models.contract import evaluating, mixes_time, reset_state, teacher_input, time_major
from snnkd_cli.precision import autocast, resolve_precision
from snnkd_cli.progress import track

# Steps per forward of a longer pass. Without autograd a forward holds a few layers' activations of its steps at
# once, where a training step keeps every layer's of all its steps: 16 fit where a training step at the usual T
# fits (eval-sweep --chunk-T sets another).
SWEEP_CHUNK_T = 16
# On a CPU each batch of a student's pass runs in slices of at most this many samples: the same counts, and
# activations small enough that glibc's malloc reuses freed memory instead of mapping (and faulting in) fresh
# pages for every tensor over its 32 MiB mmap threshold (bench/sweep.py, a ResNet-18 at T=1..8, batch 64, 32 px,
# fp32: 1.86x faster in slices of 16).
SWEEP_SLICE_CPU = 16


@dataclass
class SweepResult:
    """Per-T results of one model on one dataset (accuracies in percent).

    ``T`` is None for the single row of an ANN; ``spike_rate`` is the fraction of neurons
    firing per step, averaged over the first T steps (None for an ANN).
    """

    rows: list[dict] = field(default_factory=list)
    num_samples: int = 0
    # "one-pass"; "per-T": a model that mixes timesteps, one pass per T'; "reframed": event recordings
    # framed into T' frames, one pass per T'
    method: str = "one-pass"
    energy: object | None = None  # an evaluation.energy.EnergyResult when costs were counted (--energy)
    trace: ExitTrace | None = None  # per-sample running-mean statistics (keep_trace=True, early exit)
    dynamic: DynamicResult | None = None  # the early-exit curve and chosen threshold (eval-sweep --dynamic)
    precision: str = "fp32"  # the forward's precision ("auto" resolved)

    def at(self, T: int | None) -> dict:
        return next(r for r in self.rows if r["T"] == T)

    def best(self) -> dict:
        return max(self.rows, key=lambda r: r["top1"])


class SpikeCounter:
    """Counts the spikes of every spikingjelly neuron layer of a model (forward hooks; a context manager).

    After one or more forwards: ``spikes[t]`` (spikes at step t over all layers and calls),
    ``neurons`` (neurons per step, summed over the batch) and :meth:`layers` (the firing rate of
    each layer over everything it emitted).
    """

    def __init__(self, model: nn.Module) -> None:
        self.nodes = {name or "neuron": m for name, m in model.named_modules() if isinstance(m, BaseNode)}
        self.spikes: torch.Tensor | None = None  # [T]
        self.neurons = 0
        self.offset = 0  # the step the next forward starts at (a pass in chunks: the chunk's first step)
        self._layer_spikes: dict[str, torch.Tensor | float] = dict.fromkeys(self.nodes, 0.0)  # summed on device
        self._layer_count = dict.fromkeys(self.nodes, 0)  # elements emitted
        self._layer_neurons = dict.fromkeys(self.nodes, 0)  # neurons per sample
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            if not isinstance(out, torch.Tensor):
                return
            flat = out.detach().float()
            self._layer_spikes[name] = self._layer_spikes[name] + flat.sum()
            self._layer_count[name] += out.numel()
            self._layer_neurons[name] = out[0, 0].numel() if out.dim() > 2 else out.shape[-1]
            if out.dim() < 2:
                return
            per_step = flat.reshape(out.shape[0], -1).sum(1)  # [T'] steps offset.. of this forward
            end = self.offset + len(per_step)
            if self.spikes is None:
                self.spikes = F.pad(per_step, (self.offset, 0))
            else:  # calls of different lengths (runs at several T, chunks of a pass): step t adds to step t
                T = max(len(self.spikes), end)
                self.spikes = F.pad(self.spikes, (0, T - len(self.spikes))) + F.pad(per_step, (self.offset, T - end))
            if self.offset == 0:  # neurons per step, counted once per pass
                self.neurons += out[0].numel()

        return hook

    def layers(self) -> list[dict]:
        """``[{"name", "neurons" (per sample), "spike_rate"}]`` per layer, in the model's order."""
        rows = []
        for n in self.nodes:
            count = self._layer_count[n]
            rate = float(self._layer_spikes[n]) / count if count else 0.0
            rows.append({"name": n, "neurons": self._layer_neurons[n], "spike_rate": rate})
        return rows

    def __enter__(self) -> SpikeCounter:
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in self.nodes.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()


def _topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Correct counts of top-k per leading index: logits ``[T, B, C]`` -> ``[T]``."""
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices  # [T, B, k]
    return (top == y.view(1, -1, 1)).any(-1).sum(1)


@dataclass(frozen=True)
class Pass:
    """How a network is run over a loader: the keywords :func:`sweep` and ``measure_energy`` share.

    Attributes:
        temporal: event frames (frame t at step t) instead of a static image repeated over T.
        device: where to run (None: where the model's parameters are).
        precision: autocast precision of the forward pass (``"auto"``: bf16 where the device computes it).
        spiking: False for an ANN (``[B,...] -> [B,C]``; one row with ``T=None``).
        chunk_T: steps per forward of a student's pass (None: :data:`SWEEP_CHUNK_T`); a pass at more steps runs
            in chunks, the state carried between them (the same logits, the memory of ``chunk_T`` steps).
    """

    temporal: bool = False
    device: torch.device | None = None
    precision: str = "fp32"
    spiking: bool = True
    chunk_T: int | None = None

    def on(self, model: nn.Module) -> Pass:
        """This pass with the device, precision and chunk made concrete for ``model``.

        Raises:
            SnnkdError: ``chunk_T`` below 1.
        """
        if self.chunk_T is not None and self.chunk_T < 1:
            raise SnnkdError(f"{option('chunk_T')} must be >= 1, got {self.chunk_T}")
        device = self.device or next(model.parameters()).device
        chunk = self.chunk_T or SWEEP_CHUNK_T
        return dataclasses.replace(
            self, device=device, precision=resolve_precision(self.precision, device), chunk_T=chunk
        )


def forward_in_chunks(
    model: nn.Module, x: torch.Tensor, chunk_T: int, counter: SpikeCounter | None = None
) -> torch.Tensor:
    """``model(x)`` for a student's input ``x [T, B, ...]`` as forwards of ``chunk_T`` steps (the last one
    shorter), the state carried between them: per-step logits ``[T, B, C]`` in float32, those of one forward
    (a neuron's state at step t depends only on steps <= t). ``counter`` learns each chunk's first step.

    A model that mixes timesteps (:func:`~snnkd_cli.models.contract.mixes_time`) runs in one forward.
    """
    T = len(x)
    if chunk_T >= T or mixes_time(model):
        return model(x).float()
    out = []
    for start in range(0, T, chunk_T):
        if counter is not None:
            counter.offset = start
        out.append(model(x[start : start + chunk_T]).float())  # [chunk, B, C]; no reset: the state carries on
    if counter is not None:
        counter.offset = 0
    return torch.cat(out)


@torch.no_grad()
def sweep(model: nn.Module, loader: DataLoader, max_T: int | None, *, keep_trace: bool = False, **run) -> SweepResult:
    """Top-1, top-5 and spike rate at every T in 1..max_T, from one pass at ``max_T``.

    A model that declares it mixes timesteps (:func:`~snnkd_cli.models.contract.mixes_time`) is run
    once per T instead (``SweepResult.method == "per-T"``).

    Args:
        model: a student (``[T,B,...] -> [T,B,C]``) or, with ``spiking=False``, an ANN.
        loader: yields ``(x [B,...], y [B])``.
        max_T: the number of steps of the pass (ignored for an ANN).
        keep_trace: also keep, per sample and step, the running mean's confidence, entropy and
            prediction (``result.trace``, for early exit; this process's samples only).
        **run: the fields of :class:`Pass`: ``temporal``, ``device``, ``precision``, ``spiking``, ``chunk_T``.

    Returns:
        A :class:`SweepResult` with one row per T (percentages).
    """
    p = Pass(**run).on(model)
    with evaluating(model):
        if not p.spiking:
            return _ann_sweep(model, loader, p)
        traces: list[ExitTrace] | None = [] if keep_trace else None
        if mixes_time(model):  # step t depends on later steps: a run at T' is not a prefix of the run at max_T
            if keep_trace:
                raise SnnkdError(
                    "early exit reads the running mean of one pass, and this model mixes timesteps "
                    "(mixes_time = True): its prefixes are not runs at fewer steps"
                )
            method = "per-T"
            runs = [_counts(model, loader, T, p) for T in range(1, max_T + 1)]
            correct1 = torch.stack([c1[-1] for c1, *_ in runs])  # row T from its own run: the mean over its T steps
            correct5 = torch.stack([c5[-1] for _, c5, *_ in runs])
            spikes = torch.stack([sp.mean() for _, _, sp, *_ in runs])  # mean spikes per step of the run at T
            n, neurons = runs[-1][3], runs[-1][4]
        else:
            method = "one-pass"
            correct1, correct5, per_step, n, neurons = _counts(model, loader, max_T, p, traces)
            spikes = per_step.cumsum(0) / torch.arange(1, max_T + 1)  # mean spikes per step of the first T steps
    # with torchrun each rank saw its shard: sum the counts over ranks (a no-op on one process)
    packed = torch.cat([correct1.double(), correct5.double(), spikes, torch.tensor([n, neurons], dtype=torch.float64)])
    packed = packed.to(p.device)
    all_reduce_sum(packed)
    packed = packed.cpu()
    correct1, correct5 = packed[:max_T].long(), packed[max_T : 2 * max_T].long()
    spikes, n, neurons = packed[2 * max_T : 3 * max_T], int(packed[-2]), float(packed[-1])
    n = max(n, 1)
    rates = [None] * max_T
    if neurons:
        rates = (spikes / neurons).tolist()  # firing fraction per step, averaged over the first T steps
    rows = [
        {"T": t + 1, "top1": 100.0 * int(correct1[t]) / n, "top5": 100.0 * int(correct5[t]) / n, "spike_rate": rates[t]}
        for t in range(max_T)
    ]
    return SweepResult(rows, n, method, trace=ExitTrace.cat(traces) if traces else None, precision=p.precision)


def _ann_sweep(model: nn.Module, loader: DataLoader, p: Pass) -> SweepResult:
    """An ANN's one row (``T`` None): top-1 and top-5 over ``loader``, summed over ranks."""
    temporal, device, precision = p.temporal, p.device, p.precision
    correct = torch.zeros(2, dtype=torch.long, device=device)  # top-1, top-5: summed on the device (no sync)
    n = 0
    for x, y in track(loader, "evaluate (ANN)"):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(precision, device):
            z = model(teacher_input(x, temporal)).float()  # [B, C]
        correct += torch.cat([_topk_correct(z[None], y, 1), _topk_correct(z[None], y, 5)])
        n += len(y)
    packed = torch.cat([correct.double(), torch.tensor([n], dtype=torch.float64, device=device)])
    all_reduce_sum(packed)
    c1, c5, n = (int(v) for v in packed.cpu())
    n = max(n, 1)
    row = {"T": None, "top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "spike_rate": None}
    return SweepResult([row], n, precision=precision)


def _slices(x: torch.Tensor, y: torch.Tensor, device: torch.device):
    """``(x, y)`` of one batch ``[B, ...]``, in slices of :data:`SWEEP_SLICE_CPU` samples on a CPU, whole elsewhere
    (``device``: the pass's, made concrete by :meth:`Pass.on`)."""
    if device.type != "cpu" or len(y) <= SWEEP_SLICE_CPU:
        yield x, y
        return
    yield from zip(x.split(SWEEP_SLICE_CPU), y.split(SWEEP_SLICE_CPU), strict=True)


def _counts(
    model: nn.Module, loader: DataLoader, T: int, p: Pass, traces: list[ExitTrace] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """One pass at T steps over ``loader``: top-1 and top-5 correct counts of the running means ``[T]``,
    spikes per step ``[T]`` (float64), the number of samples and of neurons per step. Appends each
    batch's :class:`ExitTrace` to ``traces`` when given."""
    temporal, device, precision = p.temporal, p.device, p.precision
    correct1 = torch.zeros(T, dtype=torch.long, device=device)  # summed on the device: no sync per batch
    correct5 = torch.zeros(T, dtype=torch.long, device=device)
    n = 0
    with SpikeCounter(model) as counter:
        for batch_x, batch_y in track(loader, f"evaluate (T={T})"):
            for x, y in _slices(batch_x, batch_y, device):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                reset_state(model)
                with autocast(precision, device):
                    s = forward_in_chunks(model, time_major(x, T, temporal), p.chunk_T, counter)  # [T, B, C]
                running = running_mean(s)  # [T, B, C]: prediction at T' = t+1
                correct1 += _topk_correct(running, y, 1)
                correct5 += _topk_correct(running, y, 5)
                if traces is not None:
                    traces.append(ExitTrace.from_running(running, y))
                n += len(y)
    reset_state(model)
    spikes = counter.spikes.double().cpu() if counter.spikes is not None else torch.zeros(T, dtype=torch.float64)
    return correct1.cpu(), correct5.cpu(), spikes, n, counter.neurons
