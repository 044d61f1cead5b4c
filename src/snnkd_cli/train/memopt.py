"""``--memopt``: spikingjelly's activation-memory optimisation of a student, in one place.

:func:`optimise` applies ``spikingjelly.activation_based.memopt.optimize_memory`` to the student, in place, before
training. Level 1 (a CPU): one probe forward on a training batch, then the outermost modules that hold a spiking
neuron (a ResNet's blocks, a lone LIF), the budget's share of them with the largest inputs first, become
checkpoints whose activations are recomputed in the backward pass; the input of each is kept as bits (8 spikes to
a byte) where the probe saw only 0s and 1s. Level 4 (CUDA) goes on: it splits a checkpoint into its children,
cuts BatchNorm-free ones into chunks over T and unwraps those whose recomputation lowers no peak, each change kept
only if the measured CUDA peak falls (levels 2-4 measure CUDA memory, so a CPU stops at 1).

The numbers are those of an ordinary run: spikingjelly recomputes with the random state of the first forward and
commits neuron state and BatchNorm statistics once; checkpoints keep the state-dict keys. Evaluation and the
firing-rate check run the network as built (:func:`plain`).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import torch
import torch.distributed as dist
from spikingjelly.activation_based import base, functional
from spikingjelly.activation_based.memopt import checkpoint_module, optimize_memory
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper
from torch.utils.data import DataLoader, IterableDataset

from snnkd_cli.config import TrainConfig
from snnkd_cli.errors import SnnkdError, option
from snnkd_cli.models.contract import reset_state, time_major
from snnkd_cli.precision import autocast

LEVEL_CPU = 1  # selective checkpointing and spike compression: the levels that need no CUDA memory profile
LEVEL_CUDA = 4  # also spatial and temporal splits and greedy unwrapping, each by the measured CUDA peak
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def resolve_level(memopt: str, device: torch.device) -> int:
    """The ``optimize_memory`` level of ``--memopt`` on ``device``: 0 for ``off``, 1 on a CPU, 4 on CUDA."""
    if memopt == "off":
        return 0
    return LEVEL_CUDA if device.type == "cuda" else LEVEL_CPU


def targets(model: nn.Module) -> tuple[type, ...]:
    """The module types worth a checkpoint: those holding spikingjelly state (a neuron), other than containers
    and ``model``'s own type (``optimize_memory`` takes the outermost of them)."""
    kinds = {
        type(m)
        for m in model.modules()
        if m is not model
        and not isinstance(m, _CONTAINERS)
        and any(isinstance(s, base.MemoryModule) for s in m.modules())
    }
    kinds.discard(type(model))
    return tuple(sorted(kinds, key=lambda k: k.__qualname__))


def can_chunk(module: nn.Module) -> bool:
    """Whether ``module`` may run in chunks over T with its state carried (the same numbers): no BatchNorm (its
    statistics cover all T steps), no dropout (a mask per chunk) and nothing that mixes timesteps."""
    return not any(
        isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd))
        or getattr(m, "mixes_time", False)
        for m in module.modules()
    )


def _split(module: nn.Module) -> list[nn.Module]:
    """Level 2's parts of a checkpointed module: its children, each checkpointed on its own."""
    return list(module.children())


_MARK = "_snnkd_memopt"  # set on the checkpoints optimise made (a user's own checkpoint_wrapper is left alone)


def _wrappers(model: nn.Module, ours: bool = True) -> list[tuple[str, CheckpointWrapper]]:
    """``(path, checkpoint)`` in ``model``, outermost first: those :func:`optimise` made (``ours``) or all."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, CheckpointWrapper) and (not ours or m.__dict__.get(_MARK, False))
    ]


def _unwrap(model: nn.Module) -> list[tuple[str, CheckpointWrapper]]:
    """Replace every memopt checkpoint of ``model`` by the module it wraps; returns the swaps, outermost first."""
    swaps = []
    while found := next(iter(_wrappers(model)), None):  # outermost first: nested paths stay valid
        path, wrapper = found
        model.set_submodule(path, wrapper._checkpoint_wrapped_module)
        swaps.append(found)
    return swaps


@contextlib.contextmanager
def plain(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` as built inside the block: every memopt checkpoint replaced by the module it wraps (the same
    parameters, buffers and neurons), then put back. A model without checkpoints is left alone.

    Evaluation runs here: forward hooks on a neuron that is a checkpoint of its own do not fire (spikingjelly
    calls its functional form), and layer names stay those of the state dict.
    """
    swaps = _unwrap(model)
    try:
        yield model
    finally:
        for path, wrapper in reversed(swaps):
            model.set_submodule(path, wrapper)


def remove(model: nn.Module) -> None:
    """``model`` as built again, for good (the end of a run: the network given back has no checkpoints)."""
    if _unwrap(model):
        functional.invalidate_reset_cache(model)


@contextlib.contextmanager
def _random_state_kept() -> Iterator[None]:
    """torch (CPU and CUDA), Python and NumPy random states as they were, after the block."""
    py = random.getstate()
    try:
        import numpy as np

        np_state = np.random.get_state()
    except ImportError:  # numpy is optional
        np, np_state = None, None
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            if np is not None:
                np.random.set_state(np_state)


def example_batch(loader: DataLoader) -> torch.Tensor:
    """The inputs ``[B, ...]`` of one training batch of ``loader``'s size, every random state untouched: read from
    the dataset by index (iterating the loader would start its workers with other seeds), or from the loader when
    its dataset has no index."""
    ds, n = loader.dataset, loader.batch_size
    with _random_state_kept():
        if n and not isinstance(ds, IterableDataset) and hasattr(ds, "__getitem__") and hasattr(ds, "__len__"):
            return loader.collate_fn([ds[i] for i in range(min(n, len(ds)))])[0]
        return next(iter(loader))[0]


class _Example:
    """``optimize_memory``'s representative forward: the student on a training batch at the run's T, precision
    and memory format. The probe (the first call, before any module is a checkpoint) only reads the modules'
    inputs, so it runs without autograd, and notes which modules read the network's input itself; later calls
    (levels 2-4) measure a training step's peak, with autograd."""

    def __init__(self, x: torch.Tensor, cfg: TrainConfig, device: torch.device, temporal: bool) -> None:
        x = x.to(device)
        if cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        self.x = time_major(x, cfg.T, temporal)  # [T, B, ...]
        self.precision, self.device = cfg.precision, device
        self.readers: set[nn.Module] = set()  # modules whose input is the network's input (or a view of it)
        self.calls = 0

    def __call__(self, model: nn.Module) -> torch.Tensor:
        probe, self.calls = self.calls == 0, self.calls + 1
        hooks = [m.register_forward_pre_hook(self._note_reader) for m in model.modules()] if probe else []
        try:
            reset_state(model)
            with torch.set_grad_enabled(not probe), autocast(self.precision, self.device):
                return model(self.x)  # [T, B, C]
        finally:
            for h in hooks:
                h.remove()

    def _note_reader(self, module: nn.Module, args: tuple) -> None:
        t = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if t is not None and t.untyped_storage().data_ptr() == self.x.untyped_storage().data_ptr():
            self.readers.add(module)


def _finish(model: nn.Module, before: set[int], readers: set[nn.Module]) -> None:
    """Mark the checkpoints ``optimize_memory`` made (those not in ``before``, by id), without bit-packing for one
    that reads the network's input: event counts that were all 0 or 1 in the probe may be 2 in a later batch,
    which the packing would corrupt (spikes are 0 or 1 by construction)."""
    for path, wrapper in _wrappers(model, ours=False):
        if id(wrapper) in before:
            continue
        inner, options = wrapper._checkpoint_wrapped_module, wrapper.checkpoint_fn.keywords
        if inner in readers and options["compressor"] is not None:
            keep = {k: options[k] for k in ("chunks", "chunked_args", "time_dim")}
            wrapper = checkpoint_module(inner, compressor=None, **keep)
            model.set_submodule(path, wrapper)
        setattr(wrapper, _MARK, True)


def optimise(model: nn.Module, loader: DataLoader, cfg: TrainConfig, device: torch.device, temporal: bool) -> str:
    """Apply memopt at ``cfg.memopt_level`` (budget ``cfg.memopt``) to ``model`` in place, probing on a batch of
    ``loader`` (the random states untouched). Under torchrun every rank calls it and they agree on one structure.
    Returns the line that says what was done.

    Raises:
        SnnkdError: spikingjelly refused the student (one line).
    """
    example = _Example(example_batch(loader), cfg, device, temporal)
    before = {id(w) for _, w in _wrappers(model, ours=False)}
    group = dist.group.WORLD if dist.is_available() and dist.is_initialized() else None
    deep = {"split_fn": _split, "can_chunk": can_chunk} if cfg.memopt_level > 1 else {}
    was_training = model.training
    model.train()
    try:
        optimize_memory(
            model,
            targets(model),
            example,
            level=cfg.memopt_level,
            checkpoint_budget=cfg.memopt,
            compress=True,
            process_group=group,
            **deep,
        )
    except (RuntimeError, ValueError) as e:
        raise SnnkdError(
            f"{option('memopt')} {cfg.memopt}: spikingjelly's optimize_memory refused the student: {e}"
        ) from None
    finally:
        model.train(was_training)
        reset_state(model)
    _finish(model, before, example.readers)
    functional.invalidate_reset_cache(model)  # the structure changed
    wrapped = _wrappers(model)
    packed = sum(w.checkpoint_fn.keywords["compressor"] is not None for _, w in wrapped)
    return (
        f"memopt: level {cfg.memopt_level}, budget {cfg.memopt}: {len(wrapped)} modules of the student "
        f"checkpointed ({packed} keep their spike input as bits)"
    )
