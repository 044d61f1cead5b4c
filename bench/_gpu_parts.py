"""The shapes, variants and timed steps of ``bench/gpu.py``, and its check of which LIF code runs.

Each timed step is the engine's own ``train.loop.train_step`` (as ``bench/step.py`` times it): reset, the
task under ``precision.autocast``, backward, SGD and schedule (``train.loop.build_optimiser``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fnmatch
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer
from spikingjelly.activation_based.neuron import BaseNode
from step import sync  # bench/step.py
from torch import nn

from snnkd_cli.config import RunConfig, from_preset
from snnkd_cli.kd.tasks import DistillTask
from snnkd_cli.models.contract import reset_state, time_major
from snnkd_cli.models.neurons import set_neuron_precision
from snnkd_cli.models.registry import build_model, list_models
from snnkd_cli.precision import autocast
from snnkd_cli.train.loop import build_optimiser, compile_for_training, cudnn_autotune, train_step
from snnkd_cli.train.report import Reporter


@dataclass(frozen=True)
class Shape:
    """One recipe's step: the student and teacher of ``preset`` (``snnkd_cli.config.PRESETS``) on a batch of
    ``[batch, 3, size, size]`` images of ``num_classes`` classes, at ``T`` steps (None: the preset's)."""

    name: str
    preset: str
    num_classes: int
    size: int
    batch: int
    T: int | None = None
    width: int | None = None  # None: the preset's (64, the paper's ResNets)

    def config(self, precision: str) -> RunConfig:
        """The preset's distillation config at this shape (``num_classes`` set as the data would set it)."""
        cfg = from_preset(
            "distill", self.preset, T=self.T, width=self.width, batch_size=self.batch, precision=precision
        )
        cfg.model.num_classes = self.num_classes
        return cfg

    def teacher(self, device: torch.device) -> nn.Module:
        """The preset's frozen ANN teacher (the ImageNet stem's is torchvision's ResNet-34: its own width)."""
        t = from_preset("teacher", self.preset).model
        t.num_classes = self.num_classes
        if t.stem == "cifar" and self.width is not None:
            t.width = self.width
        return build_model(t).to(device).eval().requires_grad_(False)


def shapes(small: bool) -> list[Shape]:
    """The paper's CIFAR recipe (its preset: ResNet-18 at T=6 from a ResNet-34, batch 128, 32x32, 10 classes) and
    its ImageNet student (PreAct-ResNet-34 at T=4, 224x224, 1000 classes, batch 64 a GPU: the preset's 512 is the
    global batch of 8 GPUs); ``small``: width 8, batch 2, 16 and 32 px, T=2."""
    if small:
        return [Shape("cifar", "cifar10", 10, 16, 2, T=2, width=8), Shape("imagenet", "imagenet", 1000, 32, 2, 2, 8)]
    cifar = from_preset("distill", "cifar10").train.batch_size
    return [Shape("cifar", "cifar10", 10, 32, cifar), Shape("imagenet", "imagenet", 1000, 224, 64)]


# (kind, precision) in the order they run (the most used first, for when --budget runs out);
# "bf16": autocast with the LIF state in fp32 (snnkd's default), "bf16-lifbf16": the state in bf16
PRECISIONS = [("snn", "bf16"), ("ann", "bf16"), ("snn", "fp32"), ("ann", "fp32"), ("snn", "bf16-lifbf16")]
MODES = ["eager", "cl", "compile-cl"]  # cl: channels-last (--channels-last); compile-cl: and --compile


@dataclass(frozen=True)
class Variant:
    """One timed configuration: ``{shape}-{kind}-{precision}[-{mode}]`` (no suffix for eager)."""

    shape: str
    kind: str
    precision: str
    mode: str

    @property
    def name(self) -> str:
        return f"{self.shape}-{self.kind}-{self.precision}" + ("" if self.mode == "eager" else f"-{self.mode}")

    @property
    def amp(self) -> str:
        """The autocast precision (``train_step``'s)."""
        return "bf16" if self.precision.startswith("bf16") else "fp32"

    @property
    def floor(self) -> str:
        """The ANN floor beside it: the same shape, autocast precision and mode."""
        return Variant(self.shape, "ann", self.amp, self.mode).name


def all_variants(shape_names: list[str]) -> list[Variant]:
    """Every variant, eager ones first and compiled ones last (they compile for a minute or more each)."""
    return [Variant(s, k, p, m) for m in MODES for k, p in PRECISIONS for s in shape_names]


def select(variants: list[Variant], patterns: list[str] | None, compile_: bool) -> list[Variant]:
    """The variants matching any of ``patterns`` (shell patterns on the names; None: all), without compiled
    ones unless ``compile_``. Raises ValueError naming a pattern that matches nothing."""
    if patterns:
        for p in patterns:
            if not any(fnmatch.fnmatchcase(v.name, p) for v in variants):
                raise ValueError(f"--variants {p} matches none of: {' '.join(v.name for v in variants)}")
        variants = [v for v in variants if any(fnmatch.fnmatchcase(v.name, p) for p in patterns)]
    return [v for v in variants if compile_ or not v.mode.startswith("compile")]


class AnnFloorTask:
    """The ANN floor's step: the ANN on the ``T*B`` images in one forward/backward (cross-entropy), plus the
    teacher's forward on the ``B``: ``x [B, C, H, W]``, ``y [B]`` -> ({"loss"}, logits ``[B, classes]``)."""

    spiking = False

    def __init__(self, teacher: nn.Module, T: int, fmt: torch.memory_format = torch.contiguous_format) -> None:
        self.teacher, self.T, self.fmt = teacher, T, fmt

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, torch.Tensor]:
        with torch.no_grad():
            self.teacher(x)
        xa = x.unsqueeze(0).expand(self.T, *x.shape).flatten(0, 1).contiguous(memory_format=self.fmt)  # [T*B, C, H, W]
        logits = model(xa)  # [T*B, classes]
        return {"loss": F.cross_entropy(logits.float(), y.repeat(self.T))}, logits[: len(y)]


def as_ann(snn: nn.Module) -> nn.Module:
    """The same network with ReLU for every spiking neuron and plain layers for the time containers:
    ``[B, C, H, W] -> [B, classes]`` (for a student with no ANN registration, e.g. ``preact_resnet34``)."""
    net = copy.deepcopy(snn)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BaseNode):
                setattr(parent, name, nn.ReLU())
            elif isinstance(child, layer.SeqToANNContainer):
                setattr(parent, name, nn.Sequential(*child))
        if hasattr(parent, "spiking"):
            parent.spiking = False
    return net


def build_net(v: Variant, cfg: RunConfig) -> tuple[nn.Module, str]:
    """The variant's network and where it came from: the student, or the ANN of its architecture."""
    if v.kind == "snn":
        model = build_model(cfg.model)
        set_neuron_precision(model, "autocast" if v.precision == "bf16-lifbf16" else "fp32")
        return model, "registry"
    if cfg.model.arch in list_models("ann"):
        return build_model(dataclasses.replace(cfg.model, kind="ann")), "registry"
    return as_ann(build_model(cfg.model)), "converted from the student (ReLU for LIF)"


class StepBench:
    """One variant on the device: its network, task, optimiser (``build_optimiser``) and a random batch."""

    def __init__(self, v: Variant, shape: Shape, teacher: nn.Module, device: torch.device, steps: int) -> None:
        self.v, self.device = v, device
        cfg = shape.config(v.amp)
        self.T = cfg.train.T
        model, self.source = build_net(v, cfg)
        self.model = model.to(device)
        fmt = torch.channels_last if v.mode != "eager" else torch.contiguous_format
        self.model = self.model.to(memory_format=fmt)
        self.model.train()
        if v.kind == "snn":
            self.task = DistillTask(teacher, self.T, cfg.kd)
        else:
            self.task = AnnFloorTask(teacher, self.T, fmt)
        self.net = compile_for_training(self.model) if v.mode.startswith("compile") else self.model
        self.optim = build_optimiser(self.model, cfg.train, steps, device, Reporter(), quiet=True)
        self.x = torch.randn(shape.batch, 3, shape.size, shape.size, device=device).contiguous(memory_format=fmt)
        self.y = torch.randint(0, shape.num_classes, (shape.batch,), device=device)

    def step(self) -> torch.Tensor:
        """One training step as ``fit`` runs it (on CUDA the loss is checked later, as the engine does)."""
        args = (self.model, self.task, self.x, self.y, self.optim, self.v.amp, self.device, self.net)
        return train_step(*args, check_finite=self.device.type != "cuda")[0]


def time_variant(b: StepBench, warmup: int, steps: int) -> dict:
    """``warmup`` untimed steps (a compiled variant compiles here), then ``steps`` timed together (one sync at
    each end, as training runs): seconds per step, images per second, peak CUDA memory of the timed steps."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        b.step()
    sync(b.device)
    warm_s = time.perf_counter() - t0
    cuda = b.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(b.device)
    losses = []
    t0 = time.perf_counter()
    for _ in range(steps):
        losses.append(b.step())
    sync(b.device)
    step_s = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated(b.device) / 2**20 if cuda else None
    finite = bool(torch.isfinite(torch.stack(losses)).all())
    return {"step_s": step_s, "images_per_s": len(b.y) / step_s, "peak_mib": peak, "warmup_s": warm_s, "finite": finite}


def time_steps(variants: list[Variant], shape_list: list[Shape], device: torch.device, args, deadline: float) -> dict:
    """Each variant in turn (built, timed, freed), after cuDNN autotuning is on as in ``fit``; a variant not
    started by ``deadline`` (``time.perf_counter()``) is listed as skipped. Returns ``{"variants", "skipped"}``."""
    by_name = {s.name: s for s in shape_list}
    teachers: dict[str, nn.Module] = {}
    rows, skipped = {}, {}
    with cudnn_autotune(device):
        for v in variants:
            if time.perf_counter() > deadline:
                skipped[v.name] = "time budget (--budget) spent: run it alone with --variants"
                continue
            shape = by_name[v.shape]
            if v.shape not in teachers:
                teachers[v.shape] = shape.teacher(device)
            if v.mode.startswith("compile"):
                torch._dynamo.reset()  # one class's forward compiled for many networks: stay under dynamo's limit
            try:
                rows[v.name] = _timed(v, shape, teachers[v.shape], device, args)
                print(f"{v.name}: {1e3 * rows[v.name]['step_s']:.1f} ms/step", flush=True)
            except torch.OutOfMemoryError as e:  # the others still run
                skipped[v.name] = f"out of memory: {str(e).splitlines()[0]}"
            _free(device)
    for row in rows.values():
        floor = rows.get(Variant(row["shape"], row["kind"], row["precision"], row["mode"]).floor)
        row["over_ann"] = row["step_s"] / floor["step_s"] if floor else None
    return {"variants": rows, "skipped": skipped}


def _timed(v: Variant, shape: Shape, teacher: nn.Module, device: torch.device, args) -> dict:
    """One variant's row: what it is, and :func:`time_variant`'s figures (the network freed after)."""
    bench = StepBench(v, shape, teacher, device, args.warmup + args.steps)
    row = {"shape": v.shape, "kind": v.kind, "precision": v.precision, "mode": v.mode, "T": bench.T}
    row |= {"batch": shape.batch, "size": shape.size, "classes": shape.num_classes, "network": bench.source}
    return row | time_variant(bench, args.warmup, args.steps)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- which LIF code runs


@contextlib.contextmanager
def lif_spies() -> Iterator[dict[str, int]]:
    """Count the calls of each code path of spikingjelly's multi-step LIF (``functional.lif_multi_step``):
    ``op`` (its registered ``sj_lif`` operator: a CUDA/Triton kernel on a GPU, the torch loop on a CPU),
    ``reference`` (its Python reference loop, the fallback for a state that is not fp32 or an unsupported
    surrogate) and ``triton-precision`` (explicit neuron precision). Patches module attributes that
    ``lif_multi_step`` imports at each call, and restores them."""
    import importlib

    targets = [
        ("op", "spikingjelly._ops.lif", "_forward"),
        ("reference", "spikingjelly._ops.lif.reference", "multi_step"),
    ]
    targets.append(("triton-precision", "spikingjelly._ops.lif.triton_precision", "_multistep_lif_mp"))
    calls: dict[str, int] = {}
    patched = []
    for key, module_name, attr in targets:
        try:
            module = importlib.import_module(module_name)
            fn = getattr(module, attr)
        except (ImportError, AttributeError):  # another spikingjelly: that path is not there to count
            continue

        def spy(*a, _key=key, _fn=fn, **kw):
            calls[_key] = calls.get(_key, 0) + 1
            return _fn(*a, **kw)

        setattr(module, attr, spy)
        patched.append((module, attr, fn))
    try:
        yield calls
    finally:
        for module, attr, fn in patched:
            setattr(module, attr, fn)


def _selected(device: torch.device, execution: str = "eager") -> str:
    """The implementation spikingjelly binds its ``sj_lif`` operator to on ``device`` (or why there is none)."""
    try:
        return functional.neuron_implementation("lif", device, execution=execution)["implementation"]
    except RuntimeError as e:  # no CUDA implementation could load
        return f"error: {str(e).splitlines()[0]}"


def lif_profile(shape: Shape, precision: str, device: torch.device) -> dict:
    """The LIF code paths one training forward of ``shape``'s student takes at ``precision`` (``bf16``: LIF state
    fp32; ``bf16-lifbf16``: state bf16) on ``device``: calls per path, the implementation, whether it is a Python
    loop over T, and whether snnkd's defaults use it (``required``: the fp32 state)."""
    v = Variant(shape.name, "snn", precision, "eager")
    cfg = shape.config(v.amp)
    model = build_net(v, cfg)[0].to(device).train()
    x = torch.randn(2, 3, shape.size, shape.size, device=device)  # [B, 3, H, W]
    op_impl = _selected(device)
    with lif_spies() as calls:
        reset_state(model)
        try:
            with autocast(v.amp, device):
                model(time_major(x, cfg.train.T, False))  # [T, B, classes]
        except RuntimeError as e:  # a kernel that does not load or run: named in the report
            op_impl = f"error: {str(e).splitlines()[0]}"
        reset_state(model)
    if op_impl.startswith("error"):
        impl = op_impl
    elif calls.get("reference"):
        impl = "torch-reference (lif_multi_step's Python fallback)"
    elif calls.get("triton-precision"):
        impl = "triton (explicit neuron precision)"
    elif calls.get("op"):
        impl = f"sj_lif {op_impl}" + (" (spikingjelly's CPU kernel)" if device.type == "cpu" else "")
    else:
        impl = "unknown (no LIF path counted)"
    loop = bool(calls.get("reference")) or (bool(calls.get("op")) and op_impl in ("torch", "torch-reference"))
    row = {"shape": shape.name, "precision": precision, "calls": dict(calls), "implementation": impl}
    return row | {"python_loop": loop, "required": precision != "bf16-lifbf16"}


def lif_check(shape_list: list[Shape], device: torch.device) -> dict:
    """Which LIF code runs for each student and precision. ``ok`` is False on CUDA when a profile snnkd uses by
    default (fp32 state) runs a Python loop over T, fails, or could not be told; on a CPU it is always True."""
    profiles, problems = [], []
    for shape in shape_list:
        for precision in ("fp32", "bf16", "bf16-lifbf16"):
            row = lif_profile(shape, precision, device)
            profiles.append(row)
            unclear = row["implementation"].startswith(("unknown", "error"))
            if device.type == "cuda" and row["required"] and (row["python_loop"] or unclear):
                problems.append(f"{shape.name} {precision}: {row['implementation']}")
    out = {"ok": not problems, "profiles": profiles, "problems": problems}
    out["neuron_implementation"] = {e: _selected(device, e) for e in ("eager", "compile")}
    _free(device)
    return out
