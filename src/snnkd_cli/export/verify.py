"""Checks that an exported spiking graph computes the PyTorch model, robust to float rounding.

A spiking network is discontinuous: a membrane potential within float rounding (~1e-7) of the
threshold can spike in one implementation and not in another (BN folding, another conv kernel).
Such a flip is not an export error, but it changes the logits. So the checks are:

1. structure, in float64 (no flips in practice): the single-step PyTorch module, folded in float64,
   looped over T steps equals the original multi-step model at every checked T;
2. the file, in float32, step by step with the PyTorch states fed to both (teacher forcing): every
   state and the logits match, except spikes flipped at neurons within ``margin`` of the threshold;
3. reported, not judged: the max abs diff of the averaged logits, onnxruntime run free for T steps
   vs the original float32 model.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from spikingjelly.activation_based import functional
from torch import nn

from snnkd_cli.errors import SnnkdError
from snnkd_cli.export.fold import fold_bn
from snnkd_cli.export.onnx_step import LIFStep, SingleStepSNN


def verify_inputs(input_shape: Sequence[int], T: int, temporal: bool, batch: int = 2) -> torch.Tensor:
    """Seeded random inputs ``[T, B, C, H, W]``: one image repeated (static, a stride-0 view) or T frames (events)."""
    g = torch.Generator().manual_seed(0)
    if temporal:
        return torch.randn(T, batch, *input_shape, generator=g)
    x = torch.randn(batch, *input_shape, generator=g)
    return x.unsqueeze(0).expand(T, *x.shape)


def reference(
    model: nn.Module, frames: torch.Tensor, dtype: torch.dtype = torch.float32, spiking: bool = True
) -> torch.Tensor:
    """A model's running mean of the logits ``[T, B, classes]`` from one pass over ``frames [T, B, C, H, W]``.

    For an ANN (``spiking=False``) the logits of ``frames[0]`` as ``[1, B, classes]``.
    """
    net = copy.deepcopy(model).cpu().to(dtype).eval()
    functional.reset_net(net)
    with torch.no_grad():
        if not spiking:
            return net(frames[0].to(dtype))[None]
        out = net(frames.to(dtype))  # [T, B, classes]; an imported NIR graph returns (out, state)
    out = out[0] if isinstance(out, tuple) else out
    return out.cumsum(0) / torch.arange(1, frames.shape[0] + 1, dtype=dtype).view(-1, 1, 1)


def max_diff(got: torch.Tensor, ref: torch.Tensor, verify_T: Sequence[int]) -> float:
    """Max abs diff of ``[T, B, C]`` running means over the rows of the checked T."""
    return max(float((got[T - 1].double() - ref[T - 1].double()).abs().max()) for T in verify_T)


def check_close(got: torch.Tensor, ref: torch.Tensor, verify_T: Sequence[int], what: str, rel: float = 1e-6) -> float:
    """:func:`max_diff`, raising a one-line error when it exceeds ``rel * max(1, max|ref|)``."""
    diff = max_diff(got, ref, verify_T)
    tol = rel * max(1.0, float(ref.abs().max()))
    if not diff <= tol:  # also catches NaN
        raise SnnkdError(f"{what} does not reproduce the model (max abs diff {diff:.3g} > {tol:.3g}); nothing written")
    return diff


def check_structure(model: nn.Module, frames: torch.Tensor, verify_T: Sequence[int]) -> float:
    """Check 1: float64 single-step loop of the folded model vs the original model; raise if they differ."""
    folded, _ = fold_bn(copy.deepcopy(model).double())
    step = SingleStepSNN(folded, frames.shape[2:], dtype=torch.float64)
    return check_close(step.run(frames), reference(model, frames, torch.float64), verify_T, "the single-step model")


def check_steps(sess, step: SingleStepSNN, frames: torch.Tensor, margin: float = 1e-4) -> int:
    """Check 2: onnxruntime vs ``step`` one step at a time from the same states; returns the number of flips.

    At each step the states are compared in the order the layers run. At the first layer that differs,
    every differing neuron must have had its potential within ``margin`` (relative) of the threshold
    (a rounding flip); the layers after it see other spikes, so that step's check stops there.

    Raises:
        SnnkdError: a state or the logits differ where rounding cannot explain it.
    """
    lifs = {m.index: m for m in step.net.modules() if isinstance(m, LIFStep)}
    names = [i.name for i in sess.get_inputs()]
    states = step.zero_states(frames.shape[1])
    flips = 0
    for t, x in enumerate(frames, 1):
        with torch.no_grad():
            want = step(x.float(), *states)
        charged = dict(step.slots.charged)
        got = sess.run(None, dict(zip(names, (v.contiguous().numpy() for v in (x.float(), *states)), strict=True)))
        flipped = False
        for i in step.order:
            new, ref = torch.from_numpy(got[1 + i]), want[1 + i]
            bad = (new - ref).abs() > 1e-5 * max(1.0, float(ref.abs().max()))
            if not bad.any():
                continue
            h, th = charged[i], lifs[i].v_threshold
            near = (h - th).abs() <= margin * max(1.0, float(h.abs().max()))
            if (bad & ~near).any():
                raise SnnkdError(
                    f"ONNX graph disagrees with PyTorch at step {t} in LIF layer {step.state_names[i]} "
                    f"(state v{i}); nothing was written"
                )
            flips += int(bad.sum())
            flipped = True
            break
        if not flipped:
            ref = want[0]
            diff = float((torch.from_numpy(got[0]) - ref).abs().max())
            if not diff <= 1e-4 * max(1.0, float(ref.abs().max())):
                raise SnnkdError(f"ONNX graph logits differ from PyTorch by {diff:.3g} at step {t}; nothing written")
        states = list(want[1:])
    return flips


def check_ann(sess, model: nn.Module, input_shape: Sequence[int]) -> float:
    """An ANN graph vs PyTorch on a seeded batch of 3 (another size than the export's); raise above 1e-4 relative."""
    x = verify_inputs(input_shape, 1, temporal=False, batch=3)[0].contiguous()
    net = copy.deepcopy(model).cpu().float().eval()
    with torch.no_grad():
        ref = net(x)
    got = torch.from_numpy(np.asarray(sess.run(None, {"input": x.numpy()})[0]))
    diff = float((got - ref).abs().max())
    if not diff <= 1e-4 * max(1.0, float(ref.abs().max())):
        raise SnnkdError(f"ONNX graph disagrees with PyTorch: max abs diff {diff:.3g}; nothing was written")
    return diff
