"""NIR export through spikingjelly's ``activation_based.nir_exchange`` (``nir`` + ``nirtorch``).

spikingjelly's exporter traces the model with torch.fx and maps only ``Conv1d/2d``, ``Linear``,
``AvgPool2d``, ``Flatten`` and IF/LIF/PLIF/CubaLIF neurons with a hard reset; additions (residual
sums) become two edges into one node (NIR sums a node's inputs). Given a ResNet as it is, it fails:
``ResNet.forward`` branches on the input's shape (torch.fx ``TraceError``), and ``SeqToANNContainer``'s
reshapes are functions other than addition (nirtorch ``ValueError``); it has no BatchNorm, MaxPool or
adaptive pooling. So the BN-folded model is rebuilt from spikingjelly multi-step layers with plain
forwards (:class:`NirBasicBlock`, :class:`NirPreActBlock`), using exact equivalents:

- ``BatchNorm2d`` that follows no convolution -> a 1x1 convolution with a diagonal weight;
- ``AdaptiveAvgPool2d(o)`` on a known ``H x W`` (divisible by o) -> ``AvgPool2d(H/o, W/o)``;
- ``MaxPool2d(k, s, p)`` on spikes (right after a LIF layer) -> ``AvgPool2d(k, s, p)`` + an IF neuron with
  threshold ``0.5/k^2``: on 0/1 inputs the max is "any spike", and that IF never keeps a potential.

A LIF with soft reset (``v -= v_th``) has no NIR equivalent (NIR's LIF resets to ``v_reset``): an error.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from snnkd_cli.errors import SnnkdError
from snnkd_cli.export.fold import fold_bn
from snnkd_cli.export.onnx_step import require
from snnkd_cli.export.verify import check_close, max_diff, reference
from snnkd_cli.fsutil import temp_beside
from snnkd_cli.models.resnet import BasicBlock, PreActBlock, ResNet


class NirBasicBlock(nn.Module):
    """``act2(conv2(act1(conv1(x))) + shortcut(x))`` on ``[T, B, C, H, W]``; traceable by torch.fx."""

    def __init__(
        self, conv1: nn.Module, act1: nn.Module, conv2: nn.Module, shortcut: nn.Module | None, act2: nn.Module
    ):
        super().__init__()
        self.conv1, self.act1, self.conv2, self.shortcut, self.act2 = conv1, act1, conv2, shortcut, act2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x if self.shortcut is None else self.shortcut(x)
        return self.act2(self.conv2(self.act1(self.conv1(x))) + s)


class NirPreActBlock(nn.Module):
    """``conv2(act2(conv1(act1(x)))) + (shortcut(x) or x)`` on the real-valued stream ``x [T, B, C, H, W]``;
    traceable by torch.fx."""

    def __init__(self, act1: nn.Module, conv1: nn.Module, act2: nn.Module, conv2: nn.Module, shortcut):
        super().__init__()
        self.act1, self.conv1, self.act2, self.conv2, self.shortcut = act1, conv1, act2, conv2, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x if self.shortcut is None else self.shortcut(x)
        return self.conv2(self.act2(self.conv1(self.act1(x)))) + s


class _Converter:
    """Rebuilds a BN-folded spiking model from NIR-mappable spikingjelly layers, collecting what cannot be."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int]) -> None:
        self.problems: dict[str, list[str]] = {}  # reason -> layer names
        self.converted: dict[str, int] = {}  # "BatchNorm2d -> diagonal 1x1 conv" -> count
        self.in_shapes: dict[int, tuple[int, ...]] = {}
        hooks = [m.register_forward_pre_hook(self._record) for m in model.modules()]
        try:
            with torch.no_grad():
                functional.reset_net(model)
                model(torch.zeros(1, 1, *input_shape, dtype=next(model.parameters()).dtype))
                functional.reset_net(model)
        finally:
            for h in hooks:
                h.remove()

    def _record(self, mod: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor):
            self.in_shapes[id(mod)] = tuple(args[0].shape)

    def seq(self, mod: nn.Module | None, name: str, after_spikes: bool = False) -> nn.Module | None:
        """A container or layer as one module (``None`` when nothing is left, e.g. an Identity)."""
        mods = self.flat(mod, name, after_spikes) if mod is not None else []
        return None if not mods else mods[0] if len(mods) == 1 else nn.Sequential(*mods)

    def flat(self, mod: nn.Module, name: str, after_spikes: bool = False) -> list[nn.Module]:
        if isinstance(mod, nn.Sequential):  # includes SeqToANNContainer
            out: list[nn.Module] = []
            for cname, child in mod.named_children():
                out += self.flat(child, f"{name}.{cname}", after_spikes)
                after_spikes = isinstance(child, neuron.BaseNode) or (after_spikes and _passes_spikes(child))
            return out
        return self.leaf(mod, name, after_spikes)

    def leaf(self, mod: nn.Module, name: str, after_spikes: bool) -> list[nn.Module]:
        def bad(reason: str) -> list[nn.Module]:
            self.problems.setdefault(f"{type(mod).__name__} with {reason}", []).append(name)
            return []

        if isinstance(mod, (nn.Identity, nn.Dropout)):
            return []
        if isinstance(mod, (neuron.LIFNode, neuron.IFNode)):
            if mod.v_reset is None:
                return bad("soft reset (v -= v_th; NIR's LIF resets to v_reset)")
            node = copy.deepcopy(mod)
            node.step_mode = "m"
            if isinstance(node, neuron.LIFNode):  # snnkd's LIF (fp32 state under autocast): the plain class NIR maps
                node.__class__ = neuron.LIFNode
            return [node]
        if isinstance(mod, nn.Conv2d):
            if mod.groups != 1 or mod.padding_mode != "zeros" or isinstance(mod.padding, str):
                return bad("groups, non-zero or 'same' padding")
            conv = layer.Conv2d(
                mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding, mod.dilation, bias=True
            )
            return [_load(conv, mod.weight, mod.bias)]
        if isinstance(mod, nn.Linear):
            return [_load(layer.Linear(mod.in_features, mod.out_features, bias=True), mod.weight, mod.bias)]
        if isinstance(mod, nn.BatchNorm2d):  # one that follows no convolution: a diagonal 1x1 convolution
            self._note("BatchNorm2d -> diagonal 1x1 conv")
            scale = mod.weight / torch.sqrt(mod.running_var + mod.eps)
            conv = layer.Conv2d(mod.num_features, mod.num_features, 1, bias=True)
            return [_load(conv, torch.diag(scale).view(*conv.weight.shape), mod.bias - mod.running_mean * scale)]
        if isinstance(mod, nn.AvgPool2d):
            if mod.ceil_mode or mod.divisor_override is not None or (_any(mod.padding) and not mod.count_include_pad):
                return bad("ceil_mode, divisor_override or padding without count_include_pad")
            return [layer.AvgPool2d(mod.kernel_size, mod.stride, mod.padding)]
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            h, w = self.in_shapes.get(id(mod), (0, 0))[-2:]
            oh, ow = _pair(mod.output_size)
            oh, ow = oh or h, ow or w
            if not (h and w and h % oh == 0 and w % ow == 0):
                return bad(f"input {h}x{w} not a multiple of the output {oh}x{ow}")
            self._note(f"AdaptiveAvgPool2d -> AvgPool2d({h // oh}x{w // ow})")
            return [layer.AvgPool2d((h // oh, w // ow))]
        if isinstance(mod, nn.MaxPool2d):
            k, s, p = _pair(mod.kernel_size), _pair(mod.stride or mod.kernel_size), _pair(mod.padding)
            if not after_spikes or mod.ceil_mode or _pair(mod.dilation) != (1, 1) or k[0] != k[1]:
                return bad("no NIR equivalent (NIR has no max-pooling; only square pools of 0/1 spikes convert)")
            self._note("MaxPool2d on spikes -> AvgPool2d + IF")
            return [
                layer.AvgPool2d(k, s, p),
                neuron.IFNode(v_threshold=0.5 / (k[0] * k[1]), v_reset=0.0, step_mode="m"),
            ]
        if isinstance(mod, nn.Flatten):
            return [layer.Flatten(mod.start_dim, mod.end_dim)]
        return bad("no NIR equivalent")

    def _note(self, what: str) -> None:
        self.converted[what] = self.converted.get(what, 0) + 1

    def resnet(self, net: ResNet) -> nn.Module:
        mods = self.flat(net.stem, "stem") + self.flat(net.stem_act, "stem_act")
        spikes = not isinstance(net.stem_act, nn.Identity)  # no stem LIF (pre-activation): real values
        mods += self.flat(net.stem_pool, "stem_pool", after_spikes=spikes)
        for i, b in enumerate(net.blocks):
            n = f"blocks.{i}"
            if isinstance(b, BasicBlock):
                mods.append(
                    NirBasicBlock(
                        self.seq(b.conv1, f"{n}.conv1"),
                        self.seq(b.act1, f"{n}.act1"),
                        self.seq(b.conv2, f"{n}.conv2"),
                        self.seq(b.shortcut, f"{n}.shortcut"),
                        self.seq(b.act2, f"{n}.act2"),
                    )
                )
            elif isinstance(b, PreActBlock):
                parts = [self.seq(getattr(b, a), f"{n}.{a}") for a in ("act1", "conv1", "act2", "conv2")]
                mods.append(NirPreActBlock(*parts, self.seq(b.shortcut, f"{n}.shortcut")))
            else:
                self.problems.setdefault(f"{type(b).__name__} (unknown block)", []).append(n)
        for part in ("final", "pool", "head"):
            mods += self.flat(getattr(net, part), part)
        return nn.Sequential(*mods)


def _passes_spikes(mod: nn.Module) -> bool:
    return isinstance(mod, (nn.Identity, nn.Dropout, nn.Flatten))


def _any(p) -> bool:
    return any(_pair(p))


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _load(mod: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    mod = mod.to(weight.dtype)
    with torch.no_grad():
        mod.weight.copy_(weight)
        mod.bias.copy_(bias if bias is not None else torch.zeros_like(mod.bias))
    return mod


def nir_module(folded: nn.Module, input_shape: Sequence[int]) -> nn.Module:
    """A traceable multi-step model (``[T, B, C, H, W] -> [T, B, classes]``) of NIR-mappable layers.

    Args:
        folded: a BN-folded spiking ResNet (see :func:`snnkd_cli.export.fold.fold_bn`) or an ``nn.Sequential``
            spiking net.
        input_shape: ``(C, H, W)``, for adaptive pooling sizes.

    Raises:
        SnnkdError: one line naming the layers that NIR cannot express (first three and a count).
    """
    conv = _Converter(folded, input_shape)
    if isinstance(folded, ResNet):
        out = conv.resnet(folded)
    elif isinstance(folded, nn.Sequential):
        out = nn.Sequential(*conv.flat(folded, "model"))
    else:
        raise SnnkdError(
            f"cannot export {type(folded).__name__} to NIR: only spiking ResNets and nn.Sequential nets; "
            "use --format onnx, which keeps every layer"
        )
    if conv.problems:
        parts = []
        for reason, names in conv.problems.items():
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            parts.append(f"{reason} at {', '.join(names[:3])}{more}")
        raise SnnkdError(f"cannot export to NIR: {'; '.join(parts)}; use --format onnx, which keeps every layer")
    functional.set_step_mode(out, "m")  # spikingjelly layers default to single-step
    out.conversions = [f"{n} x {what}" if n > 1 else what for what, n in conv.converted.items()]
    return out.eval()


def export_nir(
    model: nn.Module, frames: torch.Tensor, verify_T: Sequence[int], out: Path
) -> tuple[nn.Module, float, list[str]]:
    """Fold, convert, write ``out`` (HDF5) through a temp file, read it back and check it; rename when it passes.

    Checks, in float64: the converted model (folded in float64) equals the original, and the graph read
    back equals the converted model.

    Args:
        model: spiking model ``[T, B, C, H, W] -> [T, B, classes]`` (unfolded, eval mode).
        frames: verification input ``[T, B, C, H, W]`` (T is the largest T checked).
        verify_T: the T whose running means are compared.
        out: the ``.nir`` file to write.

    Returns:
        ``(converted_model, max_abs_diff, conversions)``: the diff of the graph read back (float32) vs the
        original model, and the exact conversions made (e.g. ``"AdaptiveAvgPool2d -> AvgPool2d(2x2)"``).
    """
    nir = require("nir", "NIR export")
    require("nirtorch", "NIR export")
    from spikingjelly.activation_based.nir_exchange import export_to_nir, import_from_nir

    shape, f64 = frames.shape[2:], torch.float64
    ref64 = reference(model, frames, f64)
    check_close(
        reference(nir_module(fold_bn(copy.deepcopy(model).double())[0], shape), frames, f64),
        ref64,
        verify_T,
        "the NIR-ready model (float64)",
    )
    converted = nir_module(fold_bn(model)[0], shape)
    tmp = None
    try:
        fd, tmp = temp_beside(out)
        os.close(fd)
        export_to_nir(converted, frames[:1, :1].contiguous(), save_path=tmp)
        graph = nir.read(tmp)
        back = reference(import_from_nir(graph, step_mode="m", dtype=f64), frames, f64)
        check_close(back, reference(converted, frames, f64), verify_T, "the NIR graph read back")
        diff = max_diff(reference(import_from_nir(graph, step_mode="m"), frames), reference(model, frames), verify_T)
        os.replace(tmp, out)
        tmp = None
    except (NotImplementedError, ValueError) as e:
        raise SnnkdError(f"spikingjelly's NIR exporter failed: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise SnnkdError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return converted, diff, converted.conversions
