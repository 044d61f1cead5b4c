"""Small re-implementations of the paper's released networks (Intelli-Chip-Lab/snn_temporal_decoupling_distillation),
written from its source with its module names, so that their ``state_dict()`` keys are the paper's:

- ``model/resnet.py``: spiking ``ResNet`` (resnet18) and ``ResNet19`` (``conv0``, ``layerL.i``, ``classifier``);
- ``model/ResNet_ANN.py``: ANN teachers ``ResNet`` (resnet18/34, DVS: 2 input channels) and ``ResNet19``
  (``conv1``, ``bn1``, ``layerL.i`` with ``downsample``, ``fc``);
- ``model/preact_resnet.py``: ``OnlineSpikingResNet`` (PreAct-ResNet-34; conv biases, no stem neuron).

Independent of snnkd: their own LIF (:class:`LIFLayer`, the paper's spikingjelly formulas), their own blocks.
``width`` scales the channels (the paper's is 64) so that the tests are fast. Spiking networks take the
paper's flattened input ``[T*B, C, H, W]`` and return ``[T, B, classes]`` (``time_step`` set as
``bptt_model_setting`` does).
"""

from __future__ import annotations

import torch
from torch import nn


class LIFLayer(nn.Module):
    """The paper's neuron, multi-step: ``[T*B, ...] -> [T*B, ...]`` spikes. spikingjelly's LIFNode with
    ``decay_input=False``: charge ``v = v - (v - v_reset) / tau + x`` (``v_reset=None``: ``v = v - v / tau + x``),
    ``tau = 1 / (1 - decay)``; fire at ``v >= thresh``; hard reset to ``v_reset`` or soft ``v -= thresh``."""

    def __init__(self, decay: float = 0.5, thresh: float = 1.0, v_reset: float | None = 0.0) -> None:
        super().__init__()
        self.tau, self.thresh, self.v_reset = 1.0 / (1.0 - decay), thresh, v_reset
        self.time_step = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(self.time_step, -1, *x.shape[1:])  # [T, B, ...]
        v = torch.zeros_like(x[0])
        spikes = []
        for t in range(self.time_step):
            v = v - (v if self.v_reset is None else v - self.v_reset) / self.tau + x[t]
            spike = (v >= self.thresh).to(x.dtype)
            spikes.append(spike)
            v = v - spike * self.thresh if self.v_reset is None else spike * self.v_reset + (1 - spike) * v
        return torch.cat(spikes, 0)


def set_time_step(model: nn.Module, T: int) -> nn.Module:
    """``bptt_model_setting(model, time_step=T, step_mode='m')``: every module learns T."""
    for m in model.modules():
        m.time_step = T
    return model.eval()


# --- model/resnet.py: the spiking students ---------------------------------------------------------------


class BasicBlock(nn.Module):
    """conv-BN-LIF-conv-BN + shortcut, LIF (``spike1``, ``spike2``; ``shortcut`` a Sequential)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, **kw) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.spike1 = LIFLayer(**kw)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.spike2 = LIFLayer(**kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.spike1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.spike2(out + self.shortcut(x))


class SpikingResNet(nn.Module):
    """``ResNet`` (resnet18: [2, 2, 2, 2]) and ``ResNet19`` ([3, 3, 2], wider, a hidden LIF layer in the
    classifier) of model/resnet.py: ``[T*B, C, H, W] -> [T, B, classes]``."""

    def __init__(self, layers: list[int], num_classes: int, in_channel: int = 3, width: int = 64, **kw) -> None:
        super().__init__()
        nineteen = len(layers) == 3
        widths = [2 * width, 4 * width, 8 * width] if nineteen else [width, 2 * width, 4 * width, 8 * width]
        self.in_planes = widths[0]
        self.conv0 = nn.Sequential(
            nn.Conv2d(in_channel, self.in_planes, 3, 1, 1, bias=False), nn.BatchNorm2d(self.in_planes), LIFLayer(**kw)
        )
        for i, (n, w) in enumerate(zip(layers, widths, strict=True)):
            setattr(self, f"layer{i + 1}", self._make_layer(w, n, 1 if i == 0 else 2, **kw))
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        if nineteen:
            hidden = 4 * width
            self.classifier = nn.Sequential(
                nn.Linear(widths[-1], hidden), LIFLayer(**kw), nn.Linear(hidden, num_classes)
            )
        else:
            self.classifier = nn.Sequential(nn.Linear(widths[-1], num_classes))
        self.n_layers = len(layers)

    def _make_layer(self, planes: int, num_blocks: int, stride: int, **kw) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (num_blocks - 1):
            blocks.append(BasicBlock(self.in_planes, planes, s, **kw))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv0(x)
        for i in range(self.n_layers):
            out = getattr(self, f"layer{i + 1}")(out)
        out = self.avg_pool(out).view(out.shape[0], -1)
        out = self.classifier(out)
        return out.reshape(self.time_step, -1, out.shape[1])


def resnet18(num_classes: int = 10, in_channel: int = 3, width: int = 64, **kw) -> SpikingResNet:
    return SpikingResNet([2, 2, 2, 2], num_classes, in_channel, width, **kw)


def resnet19(num_classes: int = 10, in_channel: int = 3, width: int = 64, **kw) -> SpikingResNet:
    return SpikingResNet([3, 3, 2], num_classes, in_channel, width, **kw)


# --- model/ResNet_ANN.py: the ANN teachers ---------------------------------------------------------------


class AnnBasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN + identity/downsample, ReLU (``relu1``, ``relu2``, ``downsample``)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + identity)


class AnnResNet(nn.Module):
    """``ResNet`` (resnet18/34; a 3x3 stem for 100 classes or fewer, else 7x7/2 + max-pool) and ``ResNet19``
    ([3, 3, 2], 3x3 stem, ``fc`` = Linear-ReLU-Linear) of model/ResNet_ANN.py: ``[B, C, H, W] -> [B, classes]``."""

    def __init__(self, layers: list[int], num_classes: int, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        nineteen = len(layers) == 3
        widths = [2 * width, 4 * width, 8 * width] if nineteen else [width, 2 * width, 4 * width, 8 * width]
        self.inplanes = widths[0]
        small = num_classes <= 100 or nineteen
        k, s, p = (3, 1, 1) if small else (7, 2, 3)
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, k, s, p, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU()
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)
        for i, (n, w) in enumerate(zip(layers, widths, strict=True)):
            setattr(self, f"layer{i + 1}", self._make_layer(w, n, 1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        if nineteen:
            self.fc = nn.Sequential(nn.Linear(widths[-1], 4 * width), nn.ReLU(), nn.Linear(4 * width, num_classes))
        else:
            self.fc = nn.Linear(widths[-1], num_classes)
        self.n_layers = len(layers)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [AnnBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [AnnBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_layers):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def ann_resnet18(num_classes: int = 10, in_channels: int = 3, width: int = 64) -> AnnResNet:
    return AnnResNet([2, 2, 2, 2], num_classes, in_channels, width)


def ann_resnet34(num_classes: int = 10, in_channels: int = 3, width: int = 64) -> AnnResNet:
    return AnnResNet([3, 4, 6, 3], num_classes, in_channels, width)


def ann_resnet19(num_classes: int = 10, in_channels: int = 3, width: int = 64) -> AnnResNet:
    return AnnResNet([3, 3, 2], num_classes, in_channels, width)


# --- model/preact_resnet.py: the ImageNet student ----------------------------------------------------------


class PreActBlock(nn.Module):
    """``BasicBlock`` of preact_resnet.py: LIF-conv-BN-LIF-conv-BN (``sn1``, ``sn2``; convs with bias) plus
    ``downsample(x)`` or ``x``; no LIF after the sum."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, **kw):
        super().__init__()
        self.sn1 = LIFLayer(**kw)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(planes)
        self.sn2 = LIFLayer(**kw)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(self.sn1(x)))
        out = self.bn2(self.conv2(self.sn2(out)))
        return out + (x if self.downsample is None else self.downsample(x))


class OnlineSpikingResNet(nn.Module):
    """preact_resnet34: conv 7x7/2 (bias) - BN - max-pool, PreAct blocks [3, 4, 6, 3], avg-pool, ``fc``
    (``readout`` has no parameters): ``[T*B, 3, H, W] -> [T, B, classes]``."""

    def __init__(self, num_classes: int, width: int = 64, layers: tuple = (3, 4, 6, 3), **kw) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=True)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, n in enumerate(layers):
            setattr(self, f"layer{i + 1}", self._make_layer(width * 2**i, n, 1 if i == 0 else 2, **kw))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int, **kw) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=True), nn.BatchNorm2d(planes))
        layers = [PreActBlock(self.inplanes, planes, stride, downsample, **kw)]
        self.inplanes = planes
        layers += [PreActBlock(planes, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.maxpool(self.bn1(self.conv1(x)))
        for i in range(4):
            out = getattr(self, f"layer{i + 1}")(out)
        out = self.fc(torch.flatten(self.avgpool(out), 1))
        return out.reshape(self.time_step, -1, out.shape[1])


def preact_resnet34(num_classes: int = 1000, width: int = 64, **kw) -> OnlineSpikingResNet:
    return OnlineSpikingResNet(num_classes, width, **kw)


def randomise_bn(model: nn.Module, seed: int = 0, shift: float = 0.3) -> nn.Module:
    """Trained-looking BatchNorms (random scale, shift and running statistics, so that a mapping that swaps
    two BNs changes the output) and linear biases; ``shift`` raises the biases so that spiking layers fire
    (ResNet-19's hidden classifier layer among them)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.bias.data = 2 * shift + 0.3 * torch.randn(m.out_features, generator=g)
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = shift + 0.2 * torch.randn(n, generator=g)
            m.running_mean = 0.1 * torch.randn(n, generator=g)
            m.running_var = 0.5 + torch.rand(n, generator=g)
            m.num_batches_tracked.fill_(7)
    return model
