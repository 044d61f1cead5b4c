"""Signs that a run is not learning, checked once a quarter of the way through it.

Two signs, each reported as one ``note:`` line (and kept in the epoch's ``log.jsonl`` record):
the training accuracy so far is still at chance, or a spiking layer fires never or always on the
first 16 samples of the current batch (a layer that passes nothing on, or passes everything).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from spikingjelly.activation_based import neuron
from torch import nn

from snnkd_cli.errors import option
from snnkd_cli.models.contract import evaluating, reset_state

CHECK_SHARE = 0.25  # the check runs once this share of the run's steps is done
ALWAYS = 0.99  # a layer whose neurons spike at this share of their steps or more "fires always"
SAMPLES = 16  # the firing rates are read on at most this many samples of the batch (a forward, not a step)


def chance_threshold(num_classes: int) -> float:
    """Training accuracy (%) below which a run counts as at chance: twice chance, and at most a tenth of the way
    from chance to 100% (10 classes: 19%; 2 classes: 55%; 1000 classes: 0.2%)."""
    chance = 100.0 / num_classes
    return min(2 * chance, chance + 0.1 * (100.0 - chance))


def chance_note(train_acc: float, num_classes: int, share: float, per_epoch: bool = False) -> str | None:
    """The note for a training accuracy (%) still at chance after ``share`` of the run, else None.
    ``per_epoch``: the run's cosine is stepped per epoch (the note then suggests the per-step one)."""
    if num_classes < 2 or train_acc >= chance_threshold(num_classes):
        return None
    schedule = f"the per-step cosine ({option('schedule')} cosine-step), " if per_epoch else ""
    return (
        f"training accuracy is {train_acc:.1f}% after {share:.0%} of the run, at chance for {num_classes} classes "
        f"({100 / num_classes:.1f}%): the run is not learning; try a lower {option('lr')}, {schedule}"
        f"more {option('epochs')}, or check the labels"
    )


def firing_rates(model: nn.Module, run) -> dict[str, float]:
    """Share of spikes (0..1) of every spiking neuron layer of ``model`` over one forward ``run()``.

    ``run`` calls the model (state reset before and after); it runs in eval mode without gradients, so it
    changes no weight, BatchNorm statistic or random state of the training.
    """
    layers = {name: m for name, m in model.named_modules() if isinstance(m, neuron.BaseNode)}
    sums: dict[str, list[float]] = {name: [0.0, 0.0] for name in layers}

    def hook(name: str):
        def count(_module, _inputs, out) -> None:
            sums[name][0] += float(out.detach().float().sum())
            sums[name][1] += out.numel()

        return count

    handles = [m.register_forward_hook(hook(name)) for name, m in layers.items()]
    try:
        with torch.no_grad(), evaluating(model):
            reset_state(model)
            run()
            reset_state(model)
    finally:
        for h in handles:
            h.remove()
    return {name: s / n for name, (s, n) in sums.items() if n}


def firing_notes(rates: dict[str, float]) -> list[str]:
    """One note for the layers that never fired and one for those that always did."""
    never = [n for n, r in rates.items() if r == 0.0]
    always = [n for n, r in rates.items() if r >= ALWAYS]
    notes = []
    if never:
        notes.append(
            f"{_layers(never)} never fired on the samples checked (up to {SAMPLES}), so they pass nothing on: check "
            f"the input scale of the data, or try a lower {option('lr')}"
        )
    if always:
        notes.append(
            f"{_layers(always)} fired in {ALWAYS:.0%} or more of their steps, so they carry no information: "
            f"check the input scale of the data or try a lower {option('lr')}"
        )
    return notes


def _layers(names: list[str]) -> str:
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"spiking layer{'s' if len(names) > 1 else ''} {shown}"


@dataclass
class Watch:
    """Runs the check once, at the first step at or after :data:`CHECK_SHARE` of ``total`` steps.

    ``started``: steps already done when the run began (a resumed run); one that resumes past the check's
    step was checked before it was saved.
    """

    total: int
    started: int = 0
    per_epoch: bool = False  # the run's cosine is stepped per epoch
    notes: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)  # notes not yet in an epoch's log record

    def __post_init__(self) -> None:
        self.at = math.ceil(CHECK_SHARE * self.total)  # the global step (1-based) of the check
        self.done = self.started >= self.at

    def due(self, step: int) -> bool:
        """Whether global step ``step`` (1-based) is the one to check at."""
        return not self.done and step >= self.at

    def check(self, train_acc: float, num_classes: int, rates: dict[str, float] | None) -> list[str]:
        """The notes for this run (remembered in :attr:`notes`); ``rates`` None for an ANN."""
        self.done = True
        share = min(1.0, self.at / self.total)
        found = [n for n in [chance_note(train_acc, num_classes, share, self.per_epoch)] if n]
        self.notes = found + firing_notes(rates or {})
        self.unrecorded = list(self.notes)
        return self.notes

    def check_run(self, model: nn.Module, task, x: torch.Tensor, y: torch.Tensor, acc: float, classes: int) -> list:
        """:meth:`check` with the firing rates of ``task`` (a student's) on the first :data:`SAMPLES` samples of the
        batch ``x [B, ...]``, ``y [B]``."""
        x, y = x[:SAMPLES], y[:SAMPLES]
        rates = firing_rates(model, lambda: task(model, x, y)) if getattr(task, "spiking", False) else None
        return self.check(acc, classes, rates)
