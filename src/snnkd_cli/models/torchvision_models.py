"""torchvision's own ResNets as ANN teachers: ``tv_resnet18``, ``tv_resnet34``, ``tv_resnet50``.

``torchvision.models.resnetNN`` itself (its keys: ``conv1``, ``bn1``, ``layer1..4``, ``fc``), so a
torchvision or timm checkpoint loads with no renaming. ``stem="imagenet"`` is torchvision's 7x7/2 conv
and 3x3/2 max-pool, for any image size; ``stem="cifar"`` swaps in a 3x3/1 conv and no max-pool, which is
the paper's ``model/ResNet_ANN.py`` for 100 classes or fewer (its CIFAR and DVS teachers, ResNet-50 too).
Maps ``[B, in_channels, H, W] -> [B, num_classes]``.
"""

from __future__ import annotations

import torchvision
from torch import nn

from snnkd_cli.errors import SnnkdError, given
from snnkd_cli.models.registry import ArchOptions, register_arch

DEPTHS = (18, 34, 50)


def tv_resnet(depth: int, num_classes: int, o: ArchOptions) -> torchvision.models.ResNet:
    """torchvision's ResNet-``depth`` with ``in_channels`` inputs and the given stem.

    Args:
        depth: 18, 34 or 50.
        num_classes: size of ``fc``'s output.
        o: ``in_channels`` (3 for images, 2 for event frames; ``conv1`` is rebuilt when not 3); ``width``
            (must be 64: torchvision's models have fixed widths); ``stem``, ``"imagenet"`` (7x7/2 conv +
            max-pool, torchvision's; the default here) or ``"cifar"`` (3x3/1 conv, no max-pool).
    """
    if o.width != 64:
        raise SnnkdError(f"tv_resnet{depth} is torchvision's model: its width is 64 (got {given('width', o.width)})")
    net = getattr(torchvision.models, f"resnet{depth}")(num_classes=num_classes)
    if o.cifar:
        net.conv1 = nn.Conv2d(o.in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif o.in_channels != 3:
        net.conv1 = nn.Conv2d(o.in_channels, 64, 7, 2, 3, bias=False)
    if o.cifar or o.in_channels != 3:
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision does
    return net


def _register(depth: int) -> None:
    block = "Bottleneck" if depth >= 50 else "BasicBlock"
    register_arch(
        "ann",
        f"tv_resnet{depth}",
        defaults={"stem": "imagenet"},
        fits="any image size (torchvision's 7x7/2 stem; 3x3 on CIFAR-size data) or events (2 ch)",
        note=f"torchvision.models.resnet{depth} ({block}); loads torchvision/timm checkpoints as they are",
    )(lambda num_classes, o, _d=depth: tv_resnet(_d, num_classes, o))


for _depth in DEPTHS:
    _register(_depth)
