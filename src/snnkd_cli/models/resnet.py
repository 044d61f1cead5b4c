"""ResNets as spiking students and as ANN teachers, from one definition.

A :class:`Ops` object decides what the layers are: for an SNN, convolutions and BN run on
``[T*B, ...]`` inside spikingjelly's ``SeqToANNContainer`` and the activation is the paper's
LIF (multi-step, ``[T,B,...]``); for an ANN, they are plain layers on ``[B,...]`` with ReLU.
The two share structure, so a teacher and a student of the same name have the same shapes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from spikingjelly.activation_based import layer
from torch import nn

from snnkd_cli.errors import SnnkdError, option
from snnkd_cli.models.neurons import make_lif
from snnkd_cli.models.registry import ArchOptions, register_arch


class Ops:
    """Layer factory: spiking (time-first ``[T,B,...]``) or not (``[B,...]``)."""

    def __init__(self, spiking: bool, decay: float = 0.5, soft_reset: bool = False) -> None:
        self.spiking = spiking
        self.decay = decay
        self.soft_reset = soft_reset

    def seq(self, *mods: nn.Module) -> nn.Sequential:
        """Stateless layers; for an SNN they see ``[T*B, ...]`` and return ``[T, B, ...]``."""
        return layer.SeqToANNContainer(*mods) if self.spiking else nn.Sequential(*mods)

    def act(self) -> nn.Module:
        return make_lif(self.decay, self.soft_reset) if self.spiking else nn.ReLU(inplace=True)


def conv3x3(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)


def conv1x1(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride, 0, bias=bias)


def kaiming_init(model: nn.Module) -> nn.Module:
    """The paper's initialisation (torchvision's): every conv weight kaiming-normal (fan_out, relu), every
    BatchNorm/GroupNorm weight 1 and bias 0; conv biases and linear layers keep PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


class BasicBlock(nn.Module):
    """conv-BN-act-conv-BN, plus shortcut, then act (LIF after every BN)."""

    def __init__(self, ops: Ops, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ops.seq(conv3x3(cin, cout, stride), nn.BatchNorm2d(cout))
        self.act1 = ops.act()
        self.conv2 = ops.seq(conv3x3(cout, cout), nn.BatchNorm2d(cout))
        self.shortcut = (
            ops.seq(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else nn.Identity()
        )
        self.act2 = ops.act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.act1(self.conv1(x)))
        return self.act2(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """The paper's spiking pre-activation block (PreAct-ResNet-34): LIF-conv-BN-LIF-conv-BN plus a shortcut.

    ``x [T, B, cin, H, W]`` is the real-valued residual stream; the block adds to it, so no LIF follows
    the sum. Every convolution has a bias. Where the shape changes, the shortcut is conv1x1 + BN applied to
    ``x`` itself (not to its spikes); elsewhere it is the identity.
    """

    def __init__(self, ops: Ops, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.act1 = ops.act()
        self.conv1 = ops.seq(conv3x3(cin, cout, stride, bias=True), nn.BatchNorm2d(cout))
        self.act2 = ops.act()
        self.conv2 = ops.seq(conv3x3(cout, cout, bias=True), nn.BatchNorm2d(cout))
        self.shortcut = (
            ops.seq(conv1x1(cin, cout, stride, bias=True), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, cin, H, W] -> [T, B, cout, H/stride, W/stride]``."""
        out = self.conv2(self.act2(self.conv1(self.act1(x))))
        return out + (x if self.shortcut is None else self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet for ``Ops``: SNN ``[T,B,C,H,W] -> [T,B,classes]``, ANN ``[B,C,H,W] -> [B,classes]``.

    For an SNN fed a static image repeated over time as a stride-0 view
    (``x[None].expand(T, ...)``, see :func:`snnkd_cli.models.contract.time_major`), the stem's
    conv and BN (and its max-pool, when no LIF precedes it) run once on ``[B,...]`` and are broadcast
    over T: the same result, T times cheaper.

    Args:
        stem_act: a LIF (ReLU) after the stem's BN; False: the stem feeds the blocks real values
            (the pre-activation network, whose blocks start with a LIF).
        stem_bias: the stem's convolution has a bias.
    """

    def __init__(
        self,
        ops: Ops,
        block: type[nn.Module],
        layers: list[int],
        widths: list[int],
        strides: list[int],
        num_classes: int,
        in_channels: int = 3,
        stem: str = "cifar",
        stem_width: int | None = None,
        head_hidden: int | None = None,
        final_norm: bool = False,
        stem_act: bool = True,
        stem_bias: bool = False,
    ) -> None:
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise SnnkdError(f"unknown stem '{stem}': choose cifar or imagenet")
        self.spiking = ops.spiking
        c = stem_width or widths[0]
        if stem == "cifar":
            self.stem = ops.seq(nn.Conv2d(in_channels, c, 3, 1, 1, bias=stem_bias), nn.BatchNorm2d(c))
            self.stem_pool = nn.Identity()
        else:
            self.stem = ops.seq(nn.Conv2d(in_channels, c, 7, 2, 3, bias=stem_bias), nn.BatchNorm2d(c))
            self.stem_pool = ops.seq(nn.MaxPool2d(3, 2, 1))
        self.stem_act = ops.act() if stem_act else nn.Identity()
        blocks: list[nn.Module] = []
        for n, w, s in zip(layers, widths, strides, strict=True):
            for i in range(n):
                blocks.append(block(ops, c, w, s if i == 0 else 1))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.final = nn.Sequential(ops.seq(nn.BatchNorm2d(c)), ops.act()) if final_norm else nn.Identity()
        self.pool = ops.seq(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        if head_hidden:
            self.head = nn.Sequential(
                ops.seq(nn.Linear(c, head_hidden)), ops.act(), ops.seq(nn.Linear(head_hidden, num_classes))
            )
        else:
            self.head = ops.seq(nn.Linear(c, num_classes))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.spiking:
            h = self.stem_pool(self.stem_act(self.stem(x)))  # [B, c, H', W']
        elif x.dim() != 5:
            raise ValueError(f"spiking ResNet expects [T, B, C, H, W], got shape {tuple(x.shape)}")
        elif x.stride(0) == 0 and x.shape[0] > 1:  # the same image at every step
            h = self._stem_once(x)
        else:
            h = self.stem_pool(self.stem_act(self.stem(x)))  # [T, B, c, H', W']
        h = self.final(self.blocks(h))
        return self.head(self.pool(h))  # [T, B, classes] or [B, classes]

    def _stem_once(self, x: torch.Tensor) -> torch.Tensor:
        """Stem of a stride-0 repeated image ``[T, B, C, H, W]``: its stateless layers run once on ``[B, ...]``
        and are broadcast over T (the max-pool too when no LIF precedes it) -> ``[T, B, c, H', W']``."""
        T = x.shape[0]
        h = nn.Sequential.forward(self.stem, x[0])  # [B, c, H, W]
        if isinstance(self.stem_act, nn.Identity):
            if not isinstance(self.stem_pool, nn.Identity):
                h = nn.Sequential.forward(self.stem_pool, h)  # [B, c, H', W']
            return h.unsqueeze(0).expand(T, *h.shape)
        return self.stem_pool(self.stem_act(h.unsqueeze(0).expand(T, *h.shape)))


def _ops(kind: str, o: ArchOptions) -> Ops:
    return Ops(kind == "snn", o.decay, o.soft_reset)


def _basic(kind: str, layers: list[int], num_classes: int, o: ArchOptions) -> ResNet:
    w = [o.width, 2 * o.width, 4 * o.width, 8 * o.width][: len(layers)]
    return _init(kind, ResNet(_ops(kind, o), BasicBlock, layers, w, [1, 2, 2, 2], num_classes, o.in_channels, o.stem))


def _resnet19(kind: str, num_classes: int, o: ArchOptions) -> ResNet:
    w = [2 * o.width, 4 * o.width, 8 * o.width]  # 128/256/512 at width 64
    net = ResNet(
        _ops(kind, o), BasicBlock, [3, 3, 2], w, [1, 2, 2], num_classes, o.in_channels, o.stem, head_hidden=4 * o.width
    )
    return _init(kind, net)


def _init(kind: str, net: ResNet) -> ResNet:
    """As the paper's code: its ANN teachers are initialised by :func:`kaiming_init`, its spiking ResNet-18/19
    students keep PyTorch's default initialisation (``model/resnet.py`` has no init code)."""
    return kaiming_init(net) if kind == "ann" else net


def _register_both(name: str, build: Callable[[str, int, ArchOptions], nn.Module]) -> None:
    for kind in ("snn", "ann"):
        register_arch(kind, name)(lambda num_classes, o, _k=kind: build(_k, num_classes, o))


_register_both("resnet18", lambda kind, nc, o: _basic(kind, [2, 2, 2, 2], nc, o))
_register_both("resnet19", _resnet19)


@register_arch("ann", "resnet34")
def ann_resnet34(num_classes: int, o: ArchOptions) -> nn.Module:
    """ANN ResNet-34 teacher: CIFAR stem (3x3 conv), or torchvision's own model for the ImageNet stem."""
    if o.cifar:
        return _basic("ann", [3, 4, 6, 3], num_classes, o)
    if o.width != 64:
        raise SnnkdError(f"the ImageNet-stem resnet34 is torchvision's model: {option('width')} must be 64")
    net = torchvision.models.resnet34(num_classes=num_classes)
    if o.in_channels != 3:  # torchvision initialised the rest the same way
        net.conv1 = kaiming_init(nn.Conv2d(o.in_channels, 64, 7, 2, 3, bias=False))
    return net


@register_arch("snn", "resnet34")
def snn_resnet34(num_classes: int, o: ArchOptions) -> nn.Module:
    """Spiking ResNet-34 with BasicBlocks (post-activation)."""
    return _basic("snn", [3, 4, 6, 3], num_classes, o)


@register_arch("snn", "preact_resnet34", defaults={"stem": "imagenet", "decay": 0.2, "soft_reset": True})
def snn_preact_resnet34(num_classes: int, o: ArchOptions) -> nn.Module:
    """The paper's spiking PreAct-ResNet-34 (ImageNet student), ``[T, B, C, H, W] -> [T, B, classes]``.

    Stem: conv 7x7/2 with bias -> BN -> max-pool 3/2, no LIF (``stem="cifar"``: conv 3x3/1, no pool);
    then :class:`PreActBlock` x [3, 4, 6, 3] at 64/128/256/512 channels (32 LIF layers), average pool
    of the real-valued residual stream (no final BN or LIF), linear head. Convolutions are initialised
    kaiming-normal (fan_out), BN to 1/0. 21,806,184 parameters at 1,000 classes. Defaults: ImageNet stem,
    decay 0.2, soft reset (the paper's ImageNet recipe).
    """
    w = [o.width, 2 * o.width, 4 * o.width, 8 * o.width]
    net = ResNet(
        _ops("snn", o),
        PreActBlock,
        [3, 4, 6, 3],
        w,
        [1, 2, 2, 2],
        num_classes,
        o.in_channels,
        o.stem,
        stem_act=False,
        stem_bias=True,
    )
    return kaiming_init(net)
