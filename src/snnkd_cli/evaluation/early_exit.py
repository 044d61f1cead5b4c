"""Early exit: stop a sample's run as soon as its running prediction is confident.

A full-range student is good at every prefix t of its run, so the prediction after t steps,
``logits[:t].mean(0)``, can be used as soon as it is confident. The rule, for every sample:

* ``confidence``: exit at the first step t whose running-mean softmax has a maximum >= threshold;
* ``entropy``: exit at the first step t whose running-mean softmax has an entropy (nats) <= threshold;
* at ``Tmax`` every remaining sample exits. The prediction is the argmax of the running mean at
  the exit step.

Everything here is post hoc, on per-step logits that a one-pass sweep already computed
(:class:`ExitTrace` keeps the few numbers per sample and step the rule needs), so a whole grid of
thresholds is evaluated without another forward pass. :mod:`snnkd_cli.inference.exit_runtime` runs the
same rule while the network runs and really stops.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from snnkd_cli.config import EXIT_RULES, check_exit_rule
from snnkd_cli.errors import SnnkdError, option

RULES = EXIT_RULES
# Built-in threshold grids, from "exits early" to "runs long". Confidence: max softmax probability.
# Entropy: nats (log C is the entropy of the uniform distribution; 2.30 for 10 classes).
DEFAULT_THRESHOLDS = {
    "confidence": (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.993, 0.995,
                   0.997, 0.998, 0.999, 0.9995, 0.9999),
    "entropy": (1.5, 1.2, 1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01, 0.005,
                0.002, 0.001, 0.0005),
}  # fmt: skip


check_rule = check_exit_rule  # the name the evaluation and inference code use

# A student is overconfident on data it trained on: on a calibration slice seen in training (distilled without
# --calib-holdout) every threshold keeps its top-1, so the search picks the earliest exit and the evaluation set
# loses more than --max-drop. There the search starts at this confidence (entropy: at the entropy of a prediction
# this confident). Measured on the suite of real sets (bench/exit_rules.py, docs/results.md).
SEEN_FLOOR = 0.9


def binary_entropy(p: float) -> float:
    """Entropy (nats) of ``[p, 1 - p]``: for ``p >= 0.5``, a softmax whose entropy is at most this has a max
    probability of at least ``p`` (the least entropy a max of ``p`` allows is the rest on one class)."""
    if not 0.0 < p < 1.0:
        return 0.0
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """float32, or float64 where it already is (half precision logits are widened)."""
    return x if x.dtype == torch.float64 else x.float()


def running_mean(logits: torch.Tensor) -> torch.Tensor:
    """Per-step logits ``[T, N, C]`` -> the prediction after each step, ``cumsum / t`` ``[T, N, C]``."""
    steps = torch.arange(1, logits.shape[0] + 1, dtype=logits.dtype, device=logits.device)
    return logits.cumsum(0) / steps.view(-1, 1, 1)


def exit_scores(running: torch.Tensor, rule: str) -> torch.Tensor:
    """The score the rule compares with the threshold: ``[..., C]`` running means -> ``[...]``.

    ``confidence``: the max softmax probability; ``entropy``: the softmax entropy in nats.
    """
    logp = torch.log_softmax(at_least_fp32(running), dim=-1)
    if check_rule(rule) == "confidence":
        return logp.max(-1).values.exp()
    return -(logp.exp() * logp).sum(-1)


def should_exit(score: torch.Tensor, threshold: float | None, rule: str) -> torch.Tensor:
    """True where a score passes the rule (``threshold`` None: never, i.e. run to Tmax)."""
    if threshold is None:
        return torch.zeros_like(score, dtype=torch.bool)
    return score >= threshold if rule == "confidence" else score <= threshold


def first_exit(passes: torch.Tensor) -> torch.Tensor:
    """``passes [T, N]`` (bool) -> the 1-based step of the first True per sample; T where none is."""
    passes = passes.clone()
    passes[-1] = True  # at Tmax every remaining sample exits
    return passes.to(torch.uint8).argmax(0) + 1  # argmax returns the first maximum


@dataclass
class ExitTrace:
    """What the exit rules need of a one-pass run, per step and sample (all on the CPU).

    ``confidence``, ``entropy`` and ``pred`` are ``[T, N]`` (of the running mean after each step),
    ``target`` is ``[N]``. :func:`snnkd_cli.evaluation.sweep.sweep` fills one with ``keep_trace=True``.
    """

    confidence: torch.Tensor
    entropy: torch.Tensor
    pred: torch.Tensor
    target: torch.Tensor

    @classmethod
    def from_running(cls, running: torch.Tensor, target: torch.Tensor) -> ExitTrace:
        """From running means ``[T, N, C]`` and labels ``[N]``."""
        return cls(
            exit_scores(running, "confidence").cpu(),
            exit_scores(running, "entropy").cpu(),
            running.argmax(-1).cpu(),
            target.detach().cpu().long(),
        )

    @classmethod
    def cat(cls, traces: Sequence[ExitTrace]) -> ExitTrace:
        """Join the traces of several batches along the sample axis."""
        per_step = (torch.cat([getattr(t, k) for t in traces], dim=1) for k in ("confidence", "entropy", "pred"))
        return cls(*per_step, torch.cat([t.target for t in traces]))

    @property
    def max_T(self) -> int:
        return self.pred.shape[0]

    def __len__(self) -> int:
        return self.pred.shape[1]

    def decide(self, threshold: float | None, rule: str = "confidence") -> tuple[torch.Tensor, torch.Tensor]:
        """``(exit step [N] in 1..T, prediction [N])`` under ``rule`` at ``threshold``."""
        score = self.confidence if check_rule(rule) == "confidence" else self.entropy
        step = first_exit(should_exit(score, threshold, rule))
        return step, self.pred.gather(0, (step - 1).unsqueeze(0)).squeeze(0)

    def evaluate(self, threshold: float | None, rule: str = "confidence") -> dict:
        """One point of the curve: top-1 (%), mean T and the share of samples exiting at each step."""
        step, pred = self.decide(threshold, rule)
        n = max(len(self), 1)
        share = torch.bincount(step - 1, minlength=self.max_T).double() / n
        return {
            "threshold": threshold,
            "top1": 100.0 * int((pred == self.target).sum()) / n,
            "mean_T": float(step.double().mean()) if len(self) else 0.0,
            "exit_share": share.tolist(),
        }

    def fixed_top1(self, T: int) -> float:
        """Top-1 (%) of a fixed run of T steps (the prediction after step T)."""
        return 100.0 * int((self.pred[T - 1] == self.target).sum()) / max(len(self), 1)


def early_exit(
    logits: torch.Tensor, threshold: float | None, rule: str = "confidence"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exit rule on per-step logits: ``logits [Tmax, N, C]`` -> ``(exit step [N] in 1..Tmax, prediction [N])``.

    Args:
        logits: per-step logits of a run at Tmax steps.
        threshold: confidence >= threshold (``rule="confidence"``) or entropy <= threshold (``"entropy"``)
            exits; None never exits early.
        rule: ``"confidence"`` (max softmax probability of the running mean) or ``"entropy"`` (nats).
    """
    running = running_mean(at_least_fp32(logits))
    score = exit_scores(running, rule)
    step = first_exit(should_exit(score, threshold, rule))
    pred = running.argmax(-1).gather(0, (step - 1).unsqueeze(0)).squeeze(0)
    return step, pred


def running_share(exit_share: Sequence[float]) -> list[float]:
    """The share of samples still running at each step (1 at step 1): ``sum(exit_share[t:])``."""
    tail, out = 0.0, []
    for s in reversed(exit_share):
        tail += s
        out.append(tail)
    return out[::-1]


def relative_energy(exit_share: Sequence[float], step_energy: Sequence[float] | None = None) -> float:
    """Energy of an early-exit run relative to a fixed run at Tmax (the hook for ``eval-sweep --energy``).

    ``sum_t running_share[t] * E_t / sum_t E_t``, where ``E_t`` is the energy of step t of one sample
    (e.g. from spikingjelly's op counter, per step); with equal ``E_t`` (the default) this is
    ``mean_T / Tmax``.
    """
    run = running_share(exit_share)
    e = list(step_energy) if step_energy is not None else [1.0] * len(run)
    if len(e) != len(run):
        raise ValueError(f"step_energy has {len(e)} entries, exit_share {len(run)}")
    total = sum(e)
    return sum(r * x for r, x in zip(run, e, strict=True)) / total if total else 0.0


@dataclass
class DynamicOptions:
    """``eval-sweep --dynamic``: the rule, the threshold grid and how the threshold is chosen."""

    rule: str = "confidence"
    thresholds: tuple[float, ...] | None = None  # None: DEFAULT_THRESHOLDS[rule]
    max_drop: float = 0.5  # points of calibration top-1 below its Tmax top-1 that may be given up
    calib_fraction: float | None = None  # of the training split; None: the student's held-out share, else 0.1
    calib_held_out: bool = False  # set by resolve(): the student never trained on the slice
    seen_floor: float = SEEN_FLOOR  # a slice seen in training: no confidence threshold below this (0: off)

    def __post_init__(self) -> None:
        check_rule(self.rule)
        if not 0.0 <= self.seen_floor < 1.0:
            raise SnnkdError(f"{option('seen_floor')} must be in [0, 1) (a confidence), got {self.seen_floor}")
        if self.calib_fraction is not None and not 0.0 < self.calib_fraction <= 1.0:
            raise SnnkdError(f"{option('calib_fraction')} must be in (0, 1], got {self.calib_fraction}")
        if not (self.max_drop >= 0 and math.isfinite(self.max_drop)):
            raise SnnkdError(f"{option('max_drop')} must be >= 0 (points), got {self.max_drop}")
        if self.thresholds is not None:
            if not self.thresholds or not all(math.isfinite(t) for t in self.thresholds):
                raise SnnkdError(f"{option('thresholds')} must be finite numbers, e.g. 0.8,0.9,0.95")
            if self.rule == "confidence" and not all(0.0 <= t <= 1.0 for t in self.thresholds):
                raise SnnkdError(
                    f"confidence thresholds are probabilities: every {option('thresholds')} value must be in [0, 1]"
                )
            if self.rule == "entropy" and not all(t >= 0.0 for t in self.thresholds):
                raise SnnkdError(f"entropy thresholds are in nats: every {option('thresholds')} value must be >= 0")

    def resolve(self, holdout: float) -> DynamicOptions:
        """The options for a student trained with ``calib_holdout=holdout``: the calibration fraction
        (default: that held-out share, else 0.1) and whether the slice was left out of its training."""
        fraction = self.calib_fraction or holdout or 0.1
        return replace(self, calib_fraction=fraction, calib_held_out=0.0 < fraction <= holdout)

    def floor(self) -> float | None:
        """The least cautious threshold the search may choose: on a slice seen in training, ``seen_floor`` as a
        confidence (entropy: :func:`binary_entropy` of it); None where the slice was held out or the floor is 0."""
        if self.calib_held_out or self.seen_floor <= 0:
            return None
        return self.seen_floor if self.rule == "confidence" else round(binary_entropy(self.seen_floor), 4)

    def grid(self) -> list[float]:
        """The thresholds in the order of the curve: from exiting earliest to running longest (with the floor,
        where one applies)."""
        grid = set(self.thresholds or DEFAULT_THRESHOLDS[self.rule])
        if (floor := self.floor()) is not None:
            grid.add(floor)
        return sorted(grid) if self.rule == "confidence" else sorted(grid, reverse=True)

    def searched(self) -> list[float]:
        """The thresholds the choice is made among: the grid from the floor on (all of it without one)."""
        floor = self.floor()
        if floor is None:
            return self.grid()
        return [t for t in self.grid() if (t >= floor if self.rule == "confidence" else t <= floor)]


@dataclass
class DynamicResult:
    """Early exit of one checkpoint: the curve on the evaluation set and the threshold chosen on calibration data.

    ``chosen["threshold"]`` is None when no threshold of the grid kept the calibration top-1 within
    ``max_drop`` of its Tmax top-1 (then the model runs Tmax steps: no early exit). ``seen_floor`` is the
    least cautious threshold the search could choose (a slice seen in training), None where none applied.
    """

    rule: str
    max_T: int
    max_drop: float
    calib_fraction: float
    calib_held_out: bool
    calib_samples: int
    calib_top1_max_T: float
    curve: list[dict] = field(default_factory=list)
    chosen: dict = field(default_factory=dict)
    seen_floor: float | None = None

    def to_json(self) -> dict:
        """The ``"dynamic"`` entry of ``eval-sweep --json`` (accuracies in percent): the fields in their order."""
        return dataclasses.asdict(self)


def choose_threshold(points: list[dict], reference_top1: float, max_drop: float) -> dict | None:
    """The point with the lowest mean T whose top-1 is within ``max_drop`` points of ``reference_top1``.

    Ties go to the higher top-1, then to the later point of the grid (the more cautious threshold).
    None when no point qualifies.
    """
    ok = [(i, p) for i, p in enumerate(points) if p["top1"] >= reference_top1 - max_drop - 1e-9]
    if not ok:
        return None
    return min(ok, key=lambda ip: (ip[1]["mean_T"], -ip[1]["top1"], -ip[0]))[1]


def evaluate_dynamic(evaluation: ExitTrace, calibration: ExitTrace, opts: DynamicOptions) -> DynamicResult:
    """The curve on ``evaluation`` and the threshold chosen on ``calibration`` (both from one pass at Tmax)."""
    if evaluation.max_T != calibration.max_T:
        raise ValueError(f"traces of {evaluation.max_T} and {calibration.max_T} steps")
    T = evaluation.max_T
    grid = opts.grid()
    calib_points = [calibration.evaluate(t, opts.rule) for t in opts.searched()]
    reference = calibration.fixed_top1(T)
    pick = choose_threshold(calib_points, reference, opts.max_drop)
    threshold = None if pick is None else pick["threshold"]
    at = evaluation.evaluate(threshold, opts.rule)
    cal = pick or calibration.evaluate(None, opts.rule)
    chosen = {
        "threshold": threshold,
        "top1": at["top1"],
        "mean_T": at["mean_T"],
        "calib_top1": cal["top1"],
        "calib_mean_T": cal["mean_T"],
        "exit_share": at["exit_share"],
    }
    return DynamicResult(
        rule=opts.rule,
        max_T=T,
        max_drop=opts.max_drop,
        calib_fraction=opts.calib_fraction or 0.1,
        calib_held_out=opts.calib_held_out,
        calib_samples=len(calibration),
        calib_top1_max_T=reference,
        curve=[evaluation.evaluate(t, opts.rule) for t in grid],
        chosen=chosen,
        seen_floor=opts.floor(),
    )


# --- what a checkpoint stores (snnkd_cli.checkpoint writes and reads it) ------------------------------


def exit_rule_record(result: DynamicResult) -> dict:
    """The chosen rule and threshold, with how they were chosen: what ``eval-sweep --save-threshold`` stores."""
    return {
        "rule": result.rule,
        "threshold": result.chosen["threshold"],
        "max_T": result.max_T,
        "max_drop": result.max_drop,
        "calib_fraction": result.calib_fraction,
        "calib_held_out": result.calib_held_out,
        "calib_samples": result.calib_samples,
        "calib_top1": result.chosen["calib_top1"],
        "calib_mean_T": result.chosen["calib_mean_T"],
        "seen_floor": result.seen_floor,
    }
