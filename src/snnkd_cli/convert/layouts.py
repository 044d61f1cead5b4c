"""Key layouts of ResNet state dicts saved by other code, and their renaming onto snnkd's models.

Pure functions on ``{key: tensor}`` dicts: nothing is built or loaded here. A layout is recognised from
its keys (:func:`detect_layout`); :func:`rename` maps it onto one of two target families:

- ``"snnkd"``: :class:`snnkd_cli.models.resnet.ResNet` (``stem.*``, ``blocks.N.*``, ``head.*``);
- ``"torchvision"``: ``torchvision.models.ResNet`` (``tv_resnet*``, the ImageNet-stem ``resnet34`` teacher),
  whose keys torchvision/timm checkpoints and the paper's ANN teachers already have.

A key no rule maps keeps its name, so the comparison with the target names it as unexpected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Layout:
    """A recognised key layout: ``kind`` is the network it comes from ("snn", "ann"; None: either).

    The keys: snnkd ``stem.*``, ``blocks.N.*``, ``head.*``; the paper's spiking ResNet ``conv0.*``,
    ``layerL.i.{conv1,bn1,conv2,bn2,shortcut}.*``, ``classifier.*``; torchvision, timm and the paper's ANNs
    ``conv1.*``, ``bn1.*``, ``layerL.i.{...,downsample}.*``, ``fc.*``; the PreAct-ResNet the same with conv biases.
    """

    name: str
    kind: str | None
    about: str


SNNKD = Layout("snnkd", None, "snnkd's own layout")
PAPER_SNN = Layout("paper-snn", "snn", "the paper's spiking ResNet (model/resnet.py)")
TORCHVISION = Layout("torchvision", "ann", "a torchvision/timm ResNet or the paper's ANN teacher (model/ResNet_ANN.py)")
PAPER_PREACT = Layout("paper-preact", "snn", "the paper's spiking PreAct-ResNet (model/preact_resnet.py)")
AS_IS = Layout("as-is", None, "an unrecognised layout, compared key by key")

_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.(.*)$")

# Inside one residual block: source prefix -> snnkd prefix (BasicBlock; PreAct's block has the same names).
_TV_BLOCK = {
    "conv1.": "conv1.0.",
    "bn1.": "conv1.1.",
    "conv2.": "conv2.0.",
    "bn2.": "conv2.1.",
    "downsample.0.": "shortcut.0.",
    "downsample.1.": "shortcut.1.",
}
_PAPER_SNN_BLOCK = {
    "conv1.": "conv1.0.",
    "bn1.": "conv1.1.",
    "conv2.": "conv2.0.",
    "bn2.": "conv2.1.",
    "shortcut.0.": "shortcut.0.",
    "shortcut.1.": "shortcut.1.",
}


def detect_layout(state: State) -> Layout:
    """The layout of ``state``'s keys: snnkd's, the paper's spiking ResNet, its PreAct-ResNet, torchvision's
    (timm's and the paper's ANN teachers alike), or :data:`AS_IS`."""
    keys = set(state)
    if "stem.0.weight" in keys or any(k.startswith("blocks.") for k in keys):
        return SNNKD
    if "conv0.0.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return PAPER_SNN
    if "conv1.weight" in keys and any(k.startswith("layer1.0.") for k in keys):
        return PAPER_PREACT if "conv1.bias" in keys or "layer1.0.conv1.bias" in keys else TORCHVISION
    return AS_IS


def _swap(key: str, table: dict[str, str]) -> str | None:
    """``key`` with its prefix replaced by ``table``'s entry (None: no entry matches)."""
    for src, dst in table.items():
        if key.startswith(src):
            return dst + key[len(src) :]
    return None


def _block_index(state: State) -> dict[tuple[int, int], int]:
    """``(layer, block) -> N``: the blocks of ``layer1.0`` ... ``layer4.k`` numbered in order, as snnkd's
    ``blocks.N`` are."""
    found = {(int(m[1]), int(m[2])) for k in state if (m := _BLOCK.match(k))}
    return {lb: n for n, lb in enumerate(sorted(found))}


def _top_table(layout: Layout, state: State) -> dict[str, str]:
    """Stem and head prefixes of ``layout`` -> snnkd's (a head with a hidden layer: ResNet-19)."""
    if layout is PAPER_SNN:
        hidden = "classifier.2.weight" in state
        head = {"classifier.0.": "head.0.0." if hidden else "head.0.", "classifier.2.": "head.2.0."}
        return {"conv0.0.": "stem.0.", "conv0.1.": "stem.1.", **head}
    hidden = "fc.2.weight" in state
    head = {"fc.0.": "head.0.0.", "fc.2.": "head.2.0."} if hidden else {"fc.": "head.0."}
    return {"conv1.": "stem.0.", "bn1.": "stem.1.", **head}


def to_snnkd(state: State, layout: Layout) -> dict[str, str]:
    """``{source key: snnkd key}`` for every key of ``state`` (unmapped keys keep their name)."""
    if layout not in (PAPER_SNN, TORCHVISION, PAPER_PREACT):
        return {k: k for k in state}
    top = _top_table(layout, state)
    inner = _PAPER_SNN_BLOCK if layout is PAPER_SNN else _TV_BLOCK
    index = _block_index(state)
    names = {}
    for key in state:
        m = _BLOCK.match(key)
        if m:
            rest = _swap(m[3], inner)
            names[key] = key if rest is None else f"blocks.{index[int(m[1]), int(m[2])]}.{rest}"
        else:
            names[key] = _swap(key, top) or key
    return names


def target_family(target_keys: set[str]) -> str:
    """``"snnkd"``, ``"torchvision"`` or ``"other"`` (any other network: keys compared as they are)."""
    if "stem.0.weight" in target_keys:
        return "snnkd"
    if {"conv1.weight", "fc.weight"} <= target_keys and any(k.startswith("layer1.0.") for k in target_keys):
        return "torchvision"
    return "other"


def rename(state: State, layout: Layout, family: str) -> dict[str, str]:
    """``{source key: target key}`` for ``state`` in ``layout`` onto a network of ``family``."""
    if family == "snnkd":
        return to_snnkd(state, layout)
    return {k: k for k in state}  # torchvision's names are already torchvision's; others compare as they are


def stem_key(family: str) -> str | None:
    """The first convolution's weight ``[C, in_channels, k, k]`` in a family's names."""
    return {"snnkd": "stem.0.weight", "torchvision": "conv1.weight"}.get(family)


def head_key(state: State, family: str) -> str | None:
    """The last classifier weight ``[classes, features]`` of ``state`` (in target names), or None."""
    prefix = {"snnkd": "head.", "torchvision": "fc."}.get(family, "")  # other networks: any 2-D weight
    heads = [k for k, v in state.items() if k.startswith(prefix) and k.endswith(".weight") and v.dim() == 2]
    if not prefix:
        return heads[-1] if heads else None
    return max(heads, key=lambda k: [int(p) if p.isdigit() else 0 for p in k.split(".")], default=None)
