"""Synaptic operations, spike rates per layer and an energy estimate at every T (``eval-sweep --energy``).

Counting uses spikingjelly's operation counters (``op_counter.SynOpCounter`` for spike-driven
accumulations, ``op_counter.MACCounter`` for multiply-accumulates on real-valued inputs such as
the first convolution and the classifier) under ``DispatchCounterMode``. BatchNorm is not counted:
at inference it folds into the preceding convolution (``snnkd export`` does exactly that).

The model runs one step at a time (``[1, B, ...]`` calls that carry the membrane state), so the
counters can be read after every step: the count at T' is the sum over the first T' steps. A
static image therefore pays its first convolution at every step, the convention of SNN energy
papers. The step-by-step logits are checked against one multi-step call; a model whose steps
depend on later ones (``mixes_time``) is counted with one separate run per T'.

Energy uses the 45 nm figures of Horowitz, "Computing's energy problem (and what we can do
about it)", ISSCC 2014 (32-bit float): 0.9 pJ per accumulate (AC, one SynOp), 4.6 pJ per
multiply-accumulate (MAC). Memory traffic is not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from spikingjelly.activation_based.op_counter import DispatchCounterMode, MACCounter, SynOpCounter
from spikingjelly.activation_based.op_counter.ac import _spike_convolution, _spike_nnz
from torch import nn
from torch.utils.data import DataLoader

from snnkd_cli.errors import SnnkdError
from snnkd_cli.evaluation.sweep import Pass, SpikeCounter
from snnkd_cli.models.contract import evaluating, mixes_time, reset_state, teacher_input, time_major
from snnkd_cli.precision import autocast
from snnkd_cli.progress import track

E_AC_PJ = 0.9  # Horowitz (ISSCC 2014), 45 nm, 32-bit float add
E_MAC_PJ = 4.6  # Horowitz (ISSCC 2014), 45 nm, 32-bit float multiply (3.7) + add (0.9)
SOURCE = "Horowitz, ISSCC 2014, 45 nm: 0.9 pJ/AC, 4.6 pJ/MAC"
_NOT_COUNTED = [nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d]  # folded into the convolution at inference


def energy_pj(synops: float, macs: float) -> float:
    """Energy in pJ of ``synops`` accumulates and ``macs`` multiply-accumulates."""
    return E_AC_PJ * synops + E_MAC_PJ * macs


@dataclass
class EnergyResult:
    """Per-sample costs at every T (``T`` None: one row of an ANN), and spike rates per layer.

    ``rows[i]``: ``{"T", "synops", "macs", "energy_uj"}`` per sample over the first T steps.
    ``step_energy_uj[t]``: energy of step t alone (early exit: expected energy = sum over steps
    of the share of samples still running times this). ``layers``: ``{"name", "neurons",
    "spike_rate"}`` with the firing fraction over all counted steps.
    """

    rows: list[dict] = field(default_factory=list)
    step_energy_uj: list[float] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    num_samples: int = 0
    method: str = "step-by-step"
    source: str = SOURCE

    def at(self, T: int | None) -> dict:
        return next(r for r in self.rows if r["T"] == T)


def conv_synops(args: tuple, kwargs: dict, out: torch.Tensor) -> int:
    """SynOps of a convolution with spike input: sum over outputs of the input spikes each one reads.

    The same count as spikingjelly's rule (a float64 convolution of the spikes with the weights'
    0/1 pattern), computed as (spikes summed over each group's channels) convolved with a
    one-channel kernel of ones, times the output channels per group: exact, and a fraction of a
    full convolution's cost. Other cases (transposed, spike weights) use spikingjelly's rule.
    """
    x, w, _, stride, padding, dilation, transposed, output_padding, groups = args[:9]
    if transposed or _spike_nnz(w) is not None or _spike_nnz(x) is None:
        return _spike_convolution(args, kwargs, out)
    n, c = x.shape[:2]
    per_group = x.float().reshape(n, groups, c // groups, *x.shape[2:]).sum(2)  # [N, g, *spatial]
    ones = torch.ones(groups, 1, *w.shape[2:], dtype=torch.float32, device=x.device)
    with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.Python)):
        fan = torch.ops.aten.convolution.default(
            per_group, ones, None, stride, padding, dilation, False, output_padding, groups
        )  # [N, g, *out_spatial]: input spikes read by each output position
        return int(fan.sum(dtype=torch.float64).item()) * (w.shape[0] // groups)


def _counters() -> tuple[SynOpCounter, MACCounter]:
    syn = SynOpCounter(extra_rules={torch.ops.aten.convolution.default: conv_synops}, extra_ignore_modules=_NOT_COUNTED)
    return syn, MACCounter(extra_ignore_modules=_NOT_COUNTED)


def _count(model: nn.Module, x: torch.Tensor, precision: str, device: torch.device) -> tuple[torch.Tensor, int, int]:
    """One forward under spikingjelly's counters: ``(output, synops, macs)``."""
    syn, mac = _counters()
    with DispatchCounterMode([syn, mac]), autocast(precision, device):
        out = model(x)
    return out, syn.get_total(), mac.get_total()


@torch.no_grad()
def measure_energy(
    model: nn.Module, loader: DataLoader, max_T: int | None, *, max_samples: int | None = 256, **run
) -> EnergyResult:
    """SynOps, MACs and energy per sample at every T in 1..max_T (an ANN: one row, all MACs).

    Args:
        model: a student (``[T,B,...] -> [T,B,C]``) or, with ``spiking=False``, an ANN ``[B,...] -> [B,C]``.
        loader: yields ``(x [B,...], y [B])``; counting stops after ``max_samples`` samples.
        max_T: steps counted (ignored for an ANN).
        max_samples: samples counted (the counters run extra convolutions; None: all).
        **run: the fields of :class:`~snnkd_cli.evaluation.sweep.Pass`: ``temporal``, ``device``, ``precision``
            (spikes stay exactly 0/1 in bf16/fp16), ``spiking``.

    Raises:
        SnnkdError: the model gives other logits when run step by step (state not carried).
    """
    p = Pass(**run).on(model)
    with evaluating(model):
        if not p.spiking:
            return _ann_energy(model, loader, p, max_samples)
        return _student_energy(model, loader, max_T, p, max_samples)


def _student_energy(model: nn.Module, loader: DataLoader, max_T: int, p: Pass, max_samples: int | None) -> EnergyResult:
    """A student's rows at T = 1..max_T, counted step by step (or per T for a model that mixes timesteps)."""
    temporal, device, precision = p.temporal, p.device, p.precision
    n = 0
    per_T = mixes_time(model)
    syn_steps = torch.zeros(max_T, dtype=torch.float64)  # cumulative over T' (per-T runs) or per step
    mac_steps = torch.zeros(max_T, dtype=torch.float64)
    if not per_T:  # before any counting: the hooks must not see the check's forwards
        x, _ = next(iter(loader))
        _check_stepwise(model, time_major(x[:4].to(device), max_T, temporal))
    with SpikeCounter(model) as layers:
        for x, _ in track(loader, f"count energy (T={max_T})", _batches(loader, max_samples)):
            x = x.to(device, non_blocking=True)[: None if max_samples is None else max_samples - n]
            xs = time_major(x, max_T, temporal)  # [T, B, ...]
            for t in range(max_T):
                if per_T:  # one run of T' = t+1 steps (the model's steps depend on later ones)
                    reset_state(model)
                    _, s, m = _count(model, xs[: t + 1], precision, device)
                else:
                    if t == 0:
                        reset_state(model)
                    _, s, m = _count(model, xs[t : t + 1], precision, device)  # state carried
                syn_steps[t] += s
                mac_steps[t] += m
            n += len(x)
            if max_samples is not None and n >= max_samples:
                break
    reset_state(model)
    n = max(n, 1)
    syn_cum = syn_steps if per_T else syn_steps.cumsum(0)
    mac_cum = mac_steps if per_T else mac_steps.cumsum(0)
    rows = [
        {
            "T": t + 1,
            "synops": float(syn_cum[t]) / n,
            "macs": float(mac_cum[t]) / n,
            "energy_uj": energy_pj(float(syn_cum[t]), float(mac_cum[t])) / n / 1e6,
        }
        for t in range(max_T)
    ]
    cum = [0.0] + [r["energy_uj"] for r in rows]
    step_energy = [cum[t + 1] - cum[t] for t in range(max_T)]
    return EnergyResult(rows, step_energy, layers.layers(), n, "per-T" if per_T else "step-by-step")


def _check_stepwise(model: nn.Module, xs: torch.Tensor) -> None:
    """Step-by-step logits must equal one multi-step call on the same input ``[T, B, ...]`` (fp32)."""
    reset_state(model)
    whole = model(xs.float())
    reset_state(model)
    stepwise = torch.cat([model(xs[t : t + 1].float()) for t in range(len(xs))])
    reset_state(model)
    if not torch.allclose(whole, stepwise, rtol=1e-3, atol=1e-3):
        raise SnnkdError(
            "--energy runs the model one step at a time, and this model gives other logits that way: "
            "its state is not carried across calls (set mixes_time = True on it to count per T instead)"
        )


def _ann_energy(model: nn.Module, loader: DataLoader, p: Pass, max_samples: int | None) -> EnergyResult:
    """An ANN's one row: all its operations are MACs."""
    temporal, device, precision = p.temporal, p.device, p.precision
    synops = macs = n = 0
    for x, _ in track(loader, "count energy (ANN)", _batches(loader, max_samples)):
        x = x.to(device, non_blocking=True)[: None if max_samples is None else max_samples - n]
        _, s, m = _count(model, teacher_input(x, temporal), precision, device)
        synops, macs, n = synops + s, macs + m, n + len(x)
        if max_samples is not None and n >= max_samples:
            break
    n = max(n, 1)
    row = {"T": None, "synops": synops / n, "macs": macs / n, "energy_uj": energy_pj(synops, macs) / n / 1e6}
    return EnergyResult([row], [row["energy_uj"]], [], n, "ann")


def _batches(loader, max_samples: int | None) -> int | None:
    """Batches a count over ``max_samples`` reads (for the progress total)."""
    if not hasattr(loader, "__len__"):
        return None
    if max_samples is None or not getattr(loader, "batch_size", None):
        return len(loader)
    return min(len(loader), math.ceil(max_samples / loader.batch_size))
