"""Models by name, timm-style: ``@register_model("snn", "resnet18")`` and ``create_model``.

Two namespaces share names: ``kind="snn"`` (spiking students, ``[T,B,...] -> [T,B,C]``)
and ``kind="ann"`` (teachers, ``[B,...] -> [B,C]``).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from torch import nn

from snnkd_cli.config import ModelConfig
from snnkd_cli.errors import SnnkdError, option

KINDS = ("snn", "ann")
_REGISTRY: dict[tuple[str, str], Callable[..., nn.Module]] = {}
_INFO: dict[tuple[str, str], dict[str, str]] = {}


def register_model(kind: str, name: str, **info: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers ``fn(num_classes, **kw) -> nn.Module`` under ``(kind, name)``.

    ``info`` holds what ``snnkd models`` prints beside the parameters (``fits``, ``neuron``, ``note``).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[(kind, name)] = fn
        _INFO[(kind, name)] = dict(info)
        return fn

    return deco


@dataclass(frozen=True)
class ArchOptions:
    """The architecture options ``create_model(name, num_classes, **kw)`` hands a registered network.

    A network ignores what it has no use for (an ANN's ``decay``); a key not named here is refused.
    """

    in_channels: int = 3
    width: int = 64
    stem: str = "cifar"  # "cifar": small-image layout (3x3 stride-1 stem); "imagenet": 7x7/2 stem + max-pool
    decay: float = 0.5  # LIF leak
    soft_reset: bool = False
    depth: int | None = None  # transformers: blocks (None: the model's own)

    def __post_init__(self) -> None:
        if self.stem not in ("cifar", "imagenet"):
            raise SnnkdError(f"unknown stem '{self.stem}': choose cifar or imagenet")

    @property
    def cifar(self) -> bool:
        """True for the CIFAR-size layout."""
        return self.stem == "cifar"

    def least_width(self, least: int) -> int:
        """``width``, refused in one line below ``least``."""
        if self.width < least:
            raise SnnkdError(f"{option('width')} must be >= {least} for this model, got {self.width}")
        return self.width

    @classmethod
    def parse(cls, kw: dict, defaults: dict | None = None) -> ArchOptions:
        """``create_model``'s keywords over the network's ``defaults``; an unknown key is refused in one line."""
        extra = set(kw) - {f.name for f in dataclasses.fields(cls)}
        if extra:
            raise SnnkdError(f"unexpected model option(s): {', '.join(sorted(extra))}")
        return cls(**{**(defaults or {}), **kw})


Build = Callable[[int, ArchOptions], nn.Module]


def register_arch(
    kind: str, name: str, defaults: dict | None = None, takes_depth: bool = False, **info: str
) -> Callable[[Build], Build]:
    """:func:`register_model` for ``build(num_classes, o: ArchOptions)``: the keywords are parsed in one place.

    ``defaults`` overrides :class:`ArchOptions`' own for this network (e.g. ``{"stem": "imagenet"}``);
    ``depth`` is refused unless ``takes_depth``.
    """

    def deco(build: Build) -> Build:
        def factory(num_classes: int, **kw) -> nn.Module:
            if not takes_depth and kw.get("depth") is not None:
                raise SnnkdError(f"unexpected model option(s): depth ({name} has a fixed depth)")
            return build(num_classes, ArchOptions.parse(kw, defaults))

        factory.__name__, factory.__qualname__, factory.__doc__ = build.__name__, build.__qualname__, build.__doc__

        register_model(kind, name, **info)(factory)
        return build

    return deco


def model_info(kind: str, name: str) -> dict[str, str]:
    """The ``info`` a registered entry was given (``fits``, ``neuron``, ``note``); empty if none."""
    return dict(_INFO.get((kind, name), {}))


def list_models(kind: str | None = None) -> list[str]:
    """Registered names (of one kind, or all as ``kind/name``), sorted."""
    if kind is None:
        return sorted(f"{k}/{n}" for k, n in _REGISTRY)
    return sorted(n for k, n in _REGISTRY if k == kind)


def _import_factory(path: str) -> Callable[..., nn.Module]:
    """``package.module:factory`` -> the factory (a clear error if it cannot be imported)."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001  (any import failure of user code is the user's to fix)
        raise SnnkdError(
            f"cannot import model module '{module_name}' (from '{path}'): {type(e).__name__}: {e}; "
            "install it or add its folder to PYTHONPATH"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SnnkdError(f"'{path}': module '{module_name}' has no callable '{attr}'")
    return fn


def _entry_point(name: str) -> Callable[..., nn.Module] | None:
    """A factory a package registered under the ``snnkd.models`` entry-point group."""
    for ep in entry_points(group="snnkd.models"):
        if ep.name == name:
            return ep.load()
    return None


SPEC = "snnkd_model"  # the attribute create_model leaves on what it builds


def model_spec(model: nn.Module) -> dict | None:
    """``{"arch", "kind", "num_classes", **options}`` of a network :func:`create_model` built, else None:
    what a checkpoint needs to rebuild it."""
    spec = getattr(model, SPEC, None)
    return dict(spec) if isinstance(spec, dict) else None


def create_model(name: str, num_classes: int, *, kind: str = "snn", **kw) -> nn.Module:
    """Build a model (see :func:`_build`) and tag it with how it was built (:func:`model_spec`)."""
    model = _build(name, num_classes, kind=kind, **kw)
    model.__dict__[SPEC] = {"arch": name, "kind": kind, "num_classes": num_classes, **kw}
    return model


def _build(name: str, num_classes: int, *, kind: str = "snn", **kw) -> nn.Module:
    """Build a model by registered name, by import path, or from an installed package.

    Args:
        name: a registered architecture (``resnet18``...), ``package.module:factory``, or a name
            that a package registers in the ``snnkd.models`` entry-point group. A factory from
            user code is called as ``factory(num_classes=..., in_channels=...)``.
        num_classes: size of the classifier output C.
        kind: ``"snn"`` for a spiking student or ``"ann"`` for a teacher.
        **kw: architecture options (``in_channels``, ``width``, ``stem``; for SNNs ``decay``, ``soft_reset``).

    Raises:
        SnnkdError: unknown name or kind, or user code that cannot be imported.
    """
    if kind not in KINDS:
        raise SnnkdError(f"unknown model kind '{kind}': choose one of {', '.join(KINDS)}")
    if num_classes < 1:
        raise SnnkdError(f"num_classes must be >= 1, got {num_classes}")
    fn = _REGISTRY.get((kind, name))
    if fn is not None:
        return fn(num_classes, **kw)
    user = _import_factory(name) if ":" in name else _entry_point(name)
    if user is None:
        what = "spiking student" if kind == "snn" else "ANN teacher"
        raise SnnkdError(
            f"unknown {what} architecture '{name}': choose one of {', '.join(list_models(kind))}, "
            "or give package.module:factory"
        )
    call = {"num_classes": num_classes, "in_channels": kw.get("in_channels", 3)}
    try:
        inspect.signature(user).bind(**call)
    except TypeError as e:
        raise SnnkdError(
            f"model factory '{name}' cannot be called as factory(num_classes=..., in_channels=...) ({e}): "
            "give it those keyword arguments (or **kwargs)"
        ) from None
    except ValueError:  # no signature (a builtin): just call it
        pass
    try:
        model = user(**call)
    except Exception as e:  # noqa: BLE001  (user code: one line naming it, as for an import failure)
        raise SnnkdError(
            f"model factory '{name}' failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    if not isinstance(model, nn.Module):
        raise SnnkdError(f"model factory '{name}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def build_model(mc: ModelConfig) -> nn.Module:
    """The network a :class:`~snnkd_cli.config.ModelConfig` describes (what a checkpoint's config rebuilds)."""
    return create_model(mc.arch, mc.num_classes, **mc.kwargs())
