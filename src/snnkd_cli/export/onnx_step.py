"""ONNX export: a single-step spiking graph with explicit membrane states, and plain ANN graphs.

The spiking graph computes one timestep: inputs ``input [B, C, H, W]`` then ``v0 .. vN-1``
(one ``[B, ...]`` membrane potential per LIF layer, zeros at the start), outputs ``logits [B, classes]``
then ``v0_out .. vN-1_out`` in the same order. A runtime loops it for any T and averages the logits,
which equals the PyTorch model's ``logits[:T].mean(0)``. The batch axis is dynamic.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export, non-strict), torch's default and
supported path; the graph is verified with onnxruntime before the file is written.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from snnkd_cli.errors import SnnkdError

INSTALL_HINT = "pip install 'snnkd[export]'"


def require(module: str, what: str):
    """Import an optional export dependency, or a one-line :class:`SnnkdError` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SnnkdError(f"{what} needs the '{module}' package: {INSTALL_HINT}") from None


class LIFStep(nn.Module):
    """One step of spikingjelly's LIF with the membrane potential read from / written to ``slots``.

    Computes exactly spikingjelly 2.0's CPU formula (``_ops/lif/cpu.py``): charge
    ``h = v - (v - v_reset)/tau + x`` (``decay_input=False``) or ``h = v + (x - (v - v_reset))/tau``,
    spike ``s = (h >= v_th)``, then hard reset ``s*v_reset + (1-s)*h`` or soft reset ``h - s*v_th``.
    Input and output are ``[1, B, ...]`` (multi-step layout with T=1).
    """

    def __init__(self, lif: neuron.LIFNode, index: int, slots: _Slots) -> None:
        super().__init__()
        self.tau = float(lif.tau)
        self.decay_input = bool(lif.decay_input)
        self.v_threshold = float(lif.v_threshold)
        self.v_reset = None if lif.v_reset is None else float(lif.v_reset)
        self.index = index
        self.slots = slots

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[0]  # [B, ...]
        v = self.slots.inputs[self.index]  # [B, ...]
        r = 0.0 if self.v_reset is None else self.v_reset
        h = v + (x - (v - r)) / self.tau if self.decay_input else v - (v - r) / self.tau + x
        s = (h >= self.v_threshold).to(x.dtype)
        v_next = h - s * self.v_threshold if self.v_reset is None else s * self.v_reset + (1 - s) * h
        self.slots.outputs[self.index] = v_next
        self.slots.charged[self.index] = h  # for verification only (not a graph output)
        return s.unsqueeze(0)


class _Slots:
    """The state tensors of one call, shared by the :class:`LIFStep` layers of a model."""

    def __init__(self) -> None:
        self.inputs: list[torch.Tensor] = []
        self.outputs: dict[int, torch.Tensor] = {}
        self.charged: dict[int, torch.Tensor] = {}


class _AtT1(nn.Sequential):
    """A ``SeqToANNContainer`` for T=1: ``[1, B, ...] -> [1, B, ...]`` without reshapes on the batch axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.Sequential.forward(self, x[0]).unsqueeze(0)


class SingleStepSNN(nn.Module):
    """A spiking model as one timestep: ``(x [B, C, H, W], *states) -> (logits [B, classes], *new_states)``.

    Args:
        model: a spiking network ``[T, B, C, H, W] -> [T, B, classes]`` whose neurons are spikingjelly
            ``LIFNode`` s (copied; the original is not changed).
        input_shape: ``(C, H, W)`` of one input, used to record the state shapes with one dummy forward.
        dtype: the precision of the copy (float32 for export, float64 for structural checks).

    Attributes:
        state_names: the LIF module names, in state order (``v0`` is ``state_names[0]``).
        state_shapes: per state, its shape without the batch axis.
        order: state indices in the order the layers run.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int], dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        net = copy.deepcopy(model).cpu().to(dtype).eval()
        self.dtype = dtype
        self.slots = _Slots()
        self.state_names: list[str] = []
        for parent in list(net.modules()):
            for cname, child in list(parent.named_children()):
                if isinstance(child, layer.SeqToANNContainer):
                    setattr(parent, cname, _AtT1(*child))
        for name, parent in list(net.named_modules()):
            for cname, child in list(parent.named_children()):
                if isinstance(child, neuron.LIFNode):
                    setattr(parent, cname, LIFStep(child, len(self.state_names), self.slots))
                    self.state_names.append(f"{name}.{cname}" if name else cname)
                elif isinstance(child, neuron.BaseNode):
                    raise SnnkdError(f"cannot export {type(child).__name__} at {name}.{cname} to ONNX: only LIFNode")
        if not self.state_names:
            raise SnnkdError("the model has no LIF neurons: export an ANN with kind 'teacher'")
        self.net = net
        self.input_shape = tuple(input_shape)
        self.state_shapes, self.order = self._record_shapes(tuple(input_shape))

    def _record_shapes(self, input_shape: tuple[int, ...]) -> tuple[list[tuple[int, ...]], list[int]]:
        shapes: dict[int, tuple[int, ...]] = {}

        def hook(mod: LIFStep, args: tuple[torch.Tensor, ...]) -> None:
            shapes[mod.index] = tuple(args[0].shape[2:])  # [1, B, ...] -> [...]

        hooks = [m.register_forward_pre_hook(hook) for m in self.net.modules() if isinstance(m, LIFStep)]
        self.slots.inputs = [torch.zeros((), dtype=self.dtype)] * len(self.state_names)  # broadcasts
        try:
            with torch.no_grad():
                self.net(torch.zeros(1, 1, *input_shape, dtype=self.dtype))
        finally:
            for h in hooks:
                h.remove()
        missing = [self.state_names[i] for i in range(len(self.state_names)) if i not in shapes]
        if missing:
            raise SnnkdError(f"cannot export to ONNX: LIF layer {missing[0]} is never called in forward")
        return [shapes[i] for i in range(len(self.state_names))], list(shapes)

    def zero_states(self, batch: int) -> list[torch.Tensor]:
        """The initial states: zeros of shape ``[batch, ...]`` for each LIF layer."""
        return [torch.zeros(batch, *s, dtype=self.dtype) for s in self.state_shapes]

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.slots.inputs, self.slots.outputs, self.slots.charged = list(states), {}, {}
        logits = self.net(x.unsqueeze(0))[0]  # [B, classes]
        return (logits, *(self.slots.outputs[i] for i in range(len(states))))

    def run(self, frames: torch.Tensor) -> torch.Tensor:
        """Loop over ``frames [T, B, C, H, W]`` from zero states; the running mean of the logits ``[T, B, classes]``."""
        states = self.zero_states(frames.shape[1])
        total, means = 0.0, []
        with torch.no_grad():
            for t, x in enumerate(frames, 1):
                logits, *states = self(x.to(self.dtype), *states)
                total = total + logits
                means.append(total / t)
        return torch.stack(means)


def export_bytes(
    module: nn.Module, args: tuple[torch.Tensor, ...], in_names: list[str], out_names: list[str], meta: dict[str, str]
) -> bytes:
    """Export with the dynamo exporter (dynamic batch on every input); the serialized model with ``meta`` attached."""
    onnx = require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")
    batch = torch.export.Dim("batch")
    if isinstance(module, SingleStepSNN):  # forward(x, *states)
        dynamic: object = {"x": {0: batch}, "states": tuple({0: batch} for _ in args[1:])}
    else:
        dynamic = ({0: batch},)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            prog = torch.onnx.export(
                module,
                args,
                input_names=in_names,
                output_names=out_names,
                dynamic_shapes=dynamic,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as e:  # any exporter failure becomes one line
            root = e
            while root.__cause__ is not None:
                root = root.__cause__
            first = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
            raise SnnkdError(f"torch.onnx.export failed: {first}") from None
    proto = prog.model_proto
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def snn_to_onnx(step: SingleStepSNN, meta: dict[str, str]) -> bytes:
    """The single-step graph of ``step``: inputs ``input, v0..vN-1``; outputs ``logits, v0_out..vN-1_out``."""
    n = len(step.state_names)
    in_names = ["input"] + [f"v{i}" for i in range(n)]
    out_names = ["logits"] + [f"v{i}_out" for i in range(n)]
    x = torch.zeros(2, *step.input_shape)
    info = {
        "snnkd.graph": "single-step",
        "snnkd.states": json.dumps(dict(zip(in_names[1:], step.state_names, strict=True))),
    }
    return export_bytes(step, (x, *step.zero_states(2)), in_names, out_names, {**meta, **info})


def ann_to_onnx(model: nn.Module, input_shape: Sequence[int], meta: dict[str, str]) -> bytes:
    """The plain graph of an ANN: ``input [B, C, H, W] -> logits [B, classes]``."""
    net = copy.deepcopy(model).cpu().float().eval()
    return export_bytes(net, (torch.zeros(2, *input_shape),), ["input"], ["logits"], {**meta, "snnkd.graph": "ann"})


def session(model: bytes | str):
    """An onnxruntime CPU session for a serialized model or a path."""
    ort = require("onnxruntime", "ONNX verification")
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def run_session(sess, frames: torch.Tensor) -> torch.Tensor:
    """Run a single-step graph over ``frames [T, B, C, H, W]`` from zero states; running mean ``[T, B, classes]``."""
    specs = sess.get_inputs()[1:]
    states = [np.zeros((frames.shape[1], *s.shape[1:]), np.float32) for s in specs]
    total, means = 0.0, []
    for t, x in enumerate(frames, 1):
        feed = dict(zip([s.name for s in specs], states, strict=True))
        logits, *states = sess.run(None, {"input": x.contiguous().numpy(), **feed})
        total = total + logits
        means.append(torch.from_numpy(total / t))
    return torch.stack(means)
