"""Spiking students from spikingjelly's model zoo (``spikingjelly.activation_based.model``), in the contract.

Every entry maps ``[T, B, C_in, H, W]`` to per-step logits ``[T, B, classes]`` (multi-step mode). Where the
zoo averages over T before its head (Spike-driven Transformer, MS-ResNet), the head is applied at every
step instead: the mean over T of the per-step logits is the zoo's output, and each prefix is a model.
No zoo model here mixes timesteps in evaluation (attention is over the tokens of one step, BN uses its
running statistics), so the one-pass sweep is exact for them (tested).

Sizes: ``stem="cifar"`` picks the CIFAR-size layout (small patches, stride-1 stems), ``"imagenet"`` the
ImageNet one; ``width`` scales the channels (64 gives the zoo's sizes). Neurons: the zoo's LIF layers are
replaced by the paper's LIF (:func:`~snnkd_cli.models.neurons.make_lif`, ``--decay``, ``--soft-reset``),
keeping each layer's threshold (attention LIFs fire at 0.5); MS-ResNet keeps its own neuron.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.model import ms_resnet, sew_resnet, spike_driven_transformer, spikformer
from torch import nn

from snnkd_cli.models.neurons import make_lif
from snnkd_cli.models.registry import ArchOptions, register_arch

PAPER_LIF = "LIF hard reset, decay 0.5 (--decay)"
ATTENTION = PAPER_LIF + ", attention threshold 0.5"


def use_paper_lif(model: nn.Module, decay: float, soft_reset: bool) -> nn.Module:
    """Replace every spikingjelly ``LIFNode`` of ``model`` by the paper's LIF, keeping its threshold (in place)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is neuron.LIFNode:
                lif = make_lif(decay, soft_reset)
                lif.v_threshold = child.v_threshold
                setattr(parent, name, lif)
    functional.invalidate_reset_cache(model)  # DESIGN.md, traps: reset_net caches the stateful modules
    return model


def _check_input(x: torch.Tensor, name: str) -> None:
    if x.dim() != 5:
        raise ValueError(f"{name} expects [T, B, C, H, W], got shape {tuple(x.shape)}")


def _heads(dim: int, want: int) -> int:
    """The largest head count <= ``want`` that divides ``dim`` (attention needs ``dim % heads == 0``)."""
    return max(h for h in range(1, max(1, min(want, dim)) + 1) if dim % h == 0)


class ZooSpikformer(spikformer.Spikformer):
    """Spikformer (Zhou et al. 2023): ``[T, B, C, H, W] -> [T, B, classes]``; the zoo's head is already per step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, "Spikformer")
        return self.head(self.forward_features(x))  # [T, B, D] -> [T, B, classes]


class ZooSDT(spike_driven_transformer.SpikeDrivenTransformer):
    """Spike-driven Transformer (Yao et al. 2023) with the head at every step: ``[T,B,C,H,W] -> [T,B,classes]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, "Spike-driven Transformer")
        x = self.patch_embed(x)  # [T, B, D, h, w]
        for block in self.blocks:
            x = block(x)
        x = self.head_lif(x.flatten(3).mean(-1))  # [T, B, D]
        return self.head(x)  # [T, B, classes]; the zoo returns head(x.mean(0))


class ZooMSResNet(ms_resnet.MSResNet):
    """MS-ResNet (membrane shortcut, Hu et al. 2024) with the head at every step: ``[T,B,C,H,W] -> [T,B,classes]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, "MS-ResNet")
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        if self.layer4 is not None:
            x = self.layer4(x)
        x = self.avgpool(self.head_lif(x)).flatten(2)  # [T, B, D]
        return self.head(x)  # [T, B, classes]; the zoo returns head(x).mean(0)


class ZooMSResNetCifar(ZooMSResNet):
    """The CIFAR-size MS-ResNet: stride-1 first stage after a stride-1 3x3 stem."""

    _first_stage_stride = 1


class ZooSEWResNet(sew_resnet.SEWResNet):
    """SEW ResNet (Fang et al. 2021) built from the zoo's blocks at any width, stem and input channels.

    ``[T, B, C, H, W] -> [T, B, classes]``. The zoo's constructor fixes 3 input channels, the 7x7/2 stem
    and widths 64..512, so the layers are assembled here with its ``_make_layer`` and ``BasicBlock``.
    """

    def __init__(self, layers: list[int], num_classes: int, o: ArchOptions, cnf: str) -> None:
        nn.Module.__init__(self)
        self._norm_layer, self.dilation, self.groups, self.base_width = layer.BatchNorm2d, 1, 1, 64
        self.inplanes = width = o.least_width(1)
        if o.cifar:
            self.conv1 = layer.Conv2d(o.in_channels, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = layer.Conv2d(o.in_channels, width, 7, 2, 3, bias=False)
            self.maxpool = layer.MaxPool2d(3, 2, 1)
        self.bn1 = layer.BatchNorm2d(width)
        self.sn1 = make_lif(o.decay, o.soft_reset)
        lif = {"cnf": cnf, "spiking_neuron": lambda: make_lif(o.decay, o.soft_reset)}
        block = sew_resnet.BasicBlock
        self.layer1 = self._make_layer(block, width, layers[0], **lif)
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2, **lif)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2, **lif)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2, **lif)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1))
        self.fc = layer.Linear(8 * width, num_classes)
        for m in self.modules():  # the zoo's initialisation
            if isinstance(m, layer.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, layer.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        functional.set_step_mode(self, "m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, "SEW ResNet")
        return self._forward_impl(x)  # multi-step: [T, B, classes]


@register_arch(
    "snn", "spikformer", takes_depth=True, neuron=ATTENTION, note="zoo: Spikformer-4-384 (6-384 on ImageNet-size)"
)
def zoo_spikformer(num_classes: int, o: ArchOptions) -> nn.Module:
    """Spikformer from the zoo: CIFAR-size 4-384 with 4x4 patches, ImageNet-size 6-384 with 16x16 (``width=64``)."""
    dim = 6 * o.least_width(2)  # 384 at width 64; the patch stem starts at dim // 8 channels
    net = ZooSpikformer(
        in_channels=o.in_channels,
        patch_size=4 if o.cifar else 16,
        num_classes=num_classes,
        embed_dims=dim,
        num_heads=_heads(dim, 12),
        mlp_ratio=4.0,
        depths=o.depth or (4 if o.cifar else 6),
    )
    return use_paper_lif(net, o.decay, o.soft_reset)


@register_arch(
    "snn",
    "spike_driven_transformer",
    takes_depth=True,
    neuron=ATTENTION,
    note="zoo: Spike-driven Transformer-2-512 (8-384 on ImageNet-size)",
)
def zoo_spike_driven_transformer(num_classes: int, o: ArchOptions) -> nn.Module:
    """Spike-driven Transformer: CIFAR-size 2-512 (pooling ``0011``), ImageNet-size 8-384 (``1111``) at width 64."""
    dim = (8 if o.cifar else 6) * o.least_width(2)
    net = ZooSDT(
        in_channels=o.in_channels,
        num_classes=num_classes,
        embed_dims=dim,
        num_heads=_heads(dim, 8),
        depths=o.depth or (2 if o.cifar else 8),
        pooling_stat="0011" if o.cifar else "1111",
    )
    return use_paper_lif(net, o.decay, o.soft_reset)


@register_arch("snn", "sew_resnet18", neuron=PAPER_LIF, note="zoo: SEW ResNet-18 (ADD)")
def zoo_sew_resnet18(num_classes: int, o: ArchOptions) -> nn.Module:
    """SEW ResNet-18 with ADD connections; CIFAR-size: 3x3 stride-1 stem, no max-pool."""
    return ZooSEWResNet([2, 2, 2, 2], num_classes, o, "ADD")


@register_arch(
    "snn",
    "ms_resnet18",
    neuron="the zoo's own LIF: tau 4/3, threshold 0.5 (--decay unused)",
    note="zoo: MS-ResNet-18",
)
def zoo_ms_resnet18(num_classes: int, o: ArchOptions) -> nn.Module:
    """MS-ResNet-18; keeps the zoo's neuron (its BN init and shortcut design are tuned to it), so ``decay`` and
    ``soft_reset`` are accepted and not used. CIFAR-size: 3x3 stride-1 stem and stride-1 first stage."""
    net = dict(in_channels=o.in_channels, num_classes=num_classes, base_channels=o.least_width(1))
    if o.cifar:
        return ZooMSResNetCifar(**net, stem_kernel_size=3, stem_stride=1)
    return ZooMSResNet(**net)
