"""Fit a foreign state dict onto a registered snnkd model: infer its options from the weights, rename the
keys, and load them strictly, or refuse in one line naming the first keys that do not fit."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from snnkd_cli.convert.layouts import Layout, State, detect_layout, head_key, rename, stem_key, target_family
from snnkd_cli.errors import SnnkdError, given
from snnkd_cli.models.registry import create_model

KIND_WORD = {"snn": "a spiking network", "ann": "an ANN"}
FIRST = 3  # keys named in a refusal, per kind of mismatch


@dataclass
class Converted:
    """A registered model holding the foreign weights (eval mode), how it was built and what it came from.

    ``options``: ``create_model`` keyword arguments (``kind``, ``in_channels``, ``width``, ``stem``...) and
    ``num_classes``; ``renamed``: ``{source key: snnkd key}`` for the keys whose name changed.
    """

    model: nn.Module
    arch: str
    options: dict[str, Any]
    layout: Layout
    renamed: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.options["num_classes"])

    @property
    def in_channels(self) -> int:
        return int(self.options.get("in_channels", 3))


def _build(arch: str, num_classes: int, kind: str, kw: dict[str, Any], what: str) -> nn.Module:
    try:
        return create_model(arch, num_classes, kind=kind, **kw)
    except SnnkdError as e:
        raise SnnkdError(f"{what}: {e.message}") from None
    except (TypeError, ValueError, RuntimeError) as e:  # an option the architecture does not take
        raise SnnkdError(f"{what}: {arch} cannot be built with {kw} ({e})") from None


def _probe(arch: str, kind: str, kw: dict[str, Any], what: str) -> tuple[State, int | None]:
    """The state dict of ``arch`` built small and the width it was built at: 8, else 64 (torchvision's fixed
    width), else None (an architecture without a width option)."""
    for width in (8, 64):
        try:
            return create_model(arch, 2, kind=kind, **{**kw, "width": width}).state_dict(), width
        except (SnnkdError, TypeError, ValueError, RuntimeError):
            continue
    return create_model(arch, 2, kind=kind, **kw).state_dict(), None  # an unknown arch: the registry's own error


def source_stem(state: State, layout: Layout) -> dict[str, Any]:
    """``in_channels`` and ``stem`` from the first convolution ``[C, in_channels, k, k]`` of ``state`` (source
    names): a 7x7 kernel is the ImageNet stem (7x7/2 conv + max-pool), anything else the CIFAR one."""
    key = {"snnkd": "stem.0.weight", "paper-snn": "conv0.0.weight"}.get(layout.name, "conv1.weight")
    w = state.get(key, next((v for v in state.values() if v.dim() == 4), None))
    if w is None or w.dim() != 4:
        return {}
    return {"in_channels": int(w.shape[1]), "stem": "imagenet" if w.shape[-1] == 7 else "cifar"}


def infer_width(mapped: State, probe: State, probe_width: int | None, family: str) -> dict[str, Any]:
    """``{"width": w}`` such that ``arch`` at width w has the stem ``mapped`` has (a ResNet-19's stem is twice
    its width): the stem's channels over those of the probe built at ``probe_width``. Empty when unknown."""
    key = stem_key(family)
    if probe_width is None or key not in mapped or key not in probe:
        return {}
    per_unit = probe[key].shape[0] / probe_width  # stem channels per unit of width
    return {"width": max(1, round(mapped[key].shape[0] / per_unit))}


def _mismatch(source: State, names: dict[str, str], target: State) -> list[str]:
    """What keeps ``source`` (renamed by ``names``) from loading into ``target``: phrases naming the first keys."""
    back = {t: s for s, t in names.items()}
    missing = [k for k in target if k not in back and not k.endswith("num_batches_tracked")]
    unexpected = [s for s, t in names.items() if t not in target]
    shapes = [
        f"{s}{'' if s == t else ' -> ' + t}: {tuple(source[s].shape)} in the file vs {tuple(target[t].shape)}"
        for s, t in names.items()
        if t in target and source[s].shape != target[t].shape
    ]
    parts = [_first(f"{what} keys", keys, ", ") for what, keys in (("missing", missing), ("unexpected", unexpected))]
    return [p for p in [*parts, _first("of another shape", shapes, "; ")] if p]


def _first(what: str, items: list[str], sep: str) -> str:
    """``"N what (a, b, c, ...)"`` naming the first :data:`FIRST` items; empty for none."""
    if not items:
        return ""
    more = f"{sep}..." if len(items) > FIRST else ""
    return f"{len(items)} {what} ({sep.join(items[:FIRST])}{more})"


def _hint(state: State, arch: str) -> str:
    """A likelier arch for a source whose blocks are Bottlenecks (torchvision's ResNet-50 and up)."""
    if not arch.startswith("tv_resnet5") and any(re.match(r"^layer\d+\.\d+\.conv3\.", k) for k in state):
        return "; its blocks are Bottlenecks (ResNet-50), which the arch tv_resnet50 has"
    return ""


def check_kind(layout: Layout, kind: str, source: str, kind_hint: bool = True) -> None:
    """Refuse ANN weights for a spiking network and the reverse: that is conversion, not a key mapping."""
    if layout.kind is None or layout.kind == kind:
        return
    fix = f": give {given('kind', layout.kind)}" if kind_hint else ""
    raise SnnkdError(
        f"{source} holds {layout.about}, {KIND_WORD[layout.kind]}, but {KIND_WORD[kind]} is asked for "
        f"(snnkd maps weights between equal networks; it does not convert between ANN and SNN){fix}"
    )


def convert_state(
    state: State,
    arch: str,
    kind: str,
    *,
    source: str = "the state dict",
    label: str | None = None,
    kind_hint: bool = True,
    **model_kw: Any,
) -> Converted:
    """Load a foreign state dict into ``create_model(arch, kind=kind)``.

    Args:
        state: ``{key: tensor}`` in any layout :func:`~snnkd_cli.convert.layouts.detect_layout` knows
            (or already in the target's own names).
        arch, kind: the registered network to load it into (``"snn"``: ``[T,B,...] -> [T,B,C]``;
            ``"ann"``: ``[B,...] -> [B,C]``).
        source, label: names for the messages (the file; the option that chose the arch).
        kind_hint: a refusal for the wrong kind says which kind to give (False where the caller chose it).
        **model_kw: options the weights do not hold (``decay``, ``soft_reset``); they override none inferred.

    Raises:
        SnnkdError: wrong kind, an arch that cannot be built, or keys/shapes that do not fit (one line).
    """
    label = label or given("arch", arch)
    layout = detect_layout(state)
    check_kind(layout, kind, source, kind_hint)
    what = f"{source}, {layout.about}, does not fit {label}"
    opts = {**source_stem(state, layout), **model_kw}
    probe, probe_width = _probe(arch, kind, opts, what)
    family = target_family(set(probe))
    names = rename(state, layout, family)
    mapped = {names[k]: v for k, v in state.items()}
    opts |= infer_width(mapped, probe, probe_width, family)
    if probe_width == 64 and opts.get("width", 64) != 64:  # a fixed width (torchvision's): say it in channels
        key = stem_key(family)
        raise SnnkdError(f"{what}: its first convolution has {mapped[key].shape[0]} channels, {arch}'s has 64")
    head = head_key(mapped, family)
    if head is None:
        raise SnnkdError(f"{what}: no classifier weight found (first keys: {', '.join(list(state)[:FIRST])})")
    num_classes = int(mapped[head].shape[0])
    model = _build(arch, num_classes, kind, opts, what)
    target = model.state_dict()
    parts = _mismatch(state, names, target)
    if parts:
        raise SnnkdError(f"{what}: " + "; ".join(parts) + _hint(state, arch))
    full = {**{k: v for k, v in target.items() if k.endswith("num_batches_tracked")}, **mapped}
    model.load_state_dict(full, strict=True)
    renamed = {s: t for s, t in names.items() if s != t}
    return Converted(model.eval(), arch, {"num_classes": num_classes, "kind": kind, **opts}, layout, renamed)


__all__ = ["Converted", "check_kind", "convert_state", "infer_width", "source_stem"]
