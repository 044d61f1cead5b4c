"""BatchNorm folding: a network's inference structure (what ``snnkd export`` writes and a folded file rebuilds).

:func:`fold_bn` replaces, inside every ``nn.Sequential`` (spikingjelly's ``SeqToANNContainer`` is
one), a ``Conv2d`` + ``BatchNorm2d`` or ``Linear`` + ``BatchNorm1d`` pair by the fused layer and an
``nn.Identity``. A BatchNorm that follows no convolution (after a residual sum, or one kept as a
separate attribute as in torchvision's ResNet) stays and is reported. Every BatchNorm of the spiking
ResNets, ``preact_resnet34``'s shortcut BNs included, follows its convolution and folds.
:func:`build_folded` rebuilds the folded structure from a config (the checkpoint module loads folded files
with it; :mod:`snnkd_cli.export.fold` writes them).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

import torch
from spikingjelly.activation_based import functional
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from snnkd_cli.config import ModelConfig, RunConfig
from snnkd_cli.models.registry import build_model

_PAIRS = ((nn.Conv2d, nn.BatchNorm2d), (nn.Conv1d, nn.BatchNorm1d), (nn.Linear, nn.BatchNorm1d))


@dataclass
class FoldReport:
    """What :func:`fold_bn` did: ``folded`` holds ``"conv_name+bn_name"``, ``not_folded`` BN names."""

    folded: list[str] = field(default_factory=list)
    not_folded: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"folded": self.folded, "not_folded": self.not_folded}, sort_keys=True)

    def summary(self) -> str:
        """One line for people, e.g. ``"17 BN folded, 17 kept"``."""
        return f"{len(self.folded)} BN folded, {len(self.not_folded)} kept"


def fold_bn(model: nn.Module, inplace: bool = False) -> tuple[nn.Module, FoldReport]:
    """Fold every BatchNorm that directly follows a conv/linear layer in an ``nn.Sequential``.

    The model is put in eval mode (folding uses the running statistics). A fused layer always
    has a bias. Module names (so state-dict keys) of the other layers do not change.

    Args:
        model: any network; not modified unless ``inplace``.
        inplace: fold ``model`` itself instead of a deep copy.

    Returns:
        ``(folded_model, report)``; the folded model computes the same function in eval mode.
    """
    net = model if inplace else copy.deepcopy(model)
    net.eval()
    report = FoldReport()
    for prefix, mod in list(net.named_modules()):
        if not isinstance(mod, nn.Sequential):
            continue
        names = list(mod._modules.keys())
        for a, b in zip(names, names[1:], strict=False):
            first, second = mod._modules[a], mod._modules[b]
            if not any(isinstance(first, p) and type(second) is q for p, q in _PAIRS):
                continue
            fuse = fuse_linear_bn_eval if isinstance(first, nn.Linear) else fuse_conv_bn_eval
            with torch.no_grad():
                mod._modules[a] = fuse(first, second)
            mod._modules[b] = nn.Identity()
            report.folded.append(f"{_join(prefix, a)}+{_join(prefix, b)}")
    for name, mod in net.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            report.not_folded.append(name)
    functional.invalidate_reset_cache(net)  # spikingjelly caches the stateful modules (DESIGN.md, traps)
    return net, report


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def build_folded(config: RunConfig | ModelConfig) -> nn.Module:
    """The folded structure of a config's network (eval mode, weights not loaded yet)."""
    mc = config.model if isinstance(config, RunConfig) else config
    net, _ = fold_bn(build_model(mc), inplace=True)
    return net
