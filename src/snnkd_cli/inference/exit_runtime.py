"""An early-exit runtime that really stops: a student run step by step on a shrinking batch.

The model is fed one step at a time as ``[1, B', ...]`` (spikingjelly's multi-step mode carries
the membrane potentials from one call to the next until ``reset_net``). After each step the
running mean of the logits is tested with the exit rule of :mod:`snnkd_cli.evaluation.early_exit`;
the samples that pass leave the batch, and so do their rows of every neuron's state, so later
steps run on fewer samples. Its exits and predictions are those of the post-hoc rule on a run at
Tmax (tested), up to float rounding of the smaller batches.

A static image is fed again at every step (the one-pass sweep's "stem once" saving does not
apply to a run of one step at a time).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from spikingjelly.activation_based.base import MemoryModule
from torch import nn

from snnkd_cli.errors import SnnkdError
from snnkd_cli.evaluation.early_exit import at_least_fp32, check_rule, exit_scores, should_exit
from snnkd_cli.models.contract import reset_state


@dataclass
class ExitOutput:
    """What :class:`EarlyExitClassifier` returns for a batch of N samples.

    Attributes:
        pred: predicted class ``[N]``.
        step: the step each sample exited at, 1..max_T ``[N]``.
        prob: softmax probability of ``pred`` at that step ``[N]``.
        logits: the running mean of the logits at that step ``[N, C]``.
        sample_steps: the network's work: samples run, summed over steps (``N * max_T`` without exits).
    """

    pred: torch.Tensor
    step: torch.Tensor
    prob: torch.Tensor
    logits: torch.Tensor
    sample_steps: int


def stateful_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose state has a batch axis: spikingjelly memories, or a ``select_batch(index)`` method.

    Raises:
        SnnkdError: a module keeps state reset by its own ``reset()`` that cannot be narrowed to a
            subset of the batch (define ``select_batch(index)`` on it).
    """
    found = []
    for name, m in model.named_modules():
        if callable(getattr(m, "select_batch", None)) or isinstance(m, MemoryModule):
            found.append(m)
        elif callable(getattr(m, "reset", None)):
            raise SnnkdError(
                f"early exit cannot narrow the state of {type(m).__name__} ({name or 'the model'}): it is reset by "
                "its own reset(); define select_batch(index) on it to keep the rows of the samples still running"
            )
    return found


def select_batch(modules: list[nn.Module], index: torch.Tensor, batch: int) -> None:
    """Keep the rows ``index`` of every state whose first axis is the batch of ``batch`` samples."""
    for m in modules:
        if not isinstance(m, MemoryModule):
            m.select_batch(index)
            continue
        for name, value in list(m.named_memories()):
            if not isinstance(value, torch.Tensor) or value.dim() == 0:
                continue  # not materialised yet (a float reset value): nothing to narrow
            if value.shape[0] != batch:
                raise SnnkdError(
                    f"early exit: state '{name}' of {type(m).__name__} has shape {tuple(value.shape)}, "
                    f"expected the batch of {batch} first"
                )
            setattr(m, name, value[index])


class EarlyExitClassifier:
    """Classify a batch with early exit: each sample stops at the first step its running prediction passes the rule.

    Args:
        model: a student, ``[T, B, ...] -> [T, B, C]``, whose neurons are spikingjelly nodes in
            multi-step mode (or modules with ``select_batch(index)``). Put in eval mode.
        threshold: confidence >= threshold (``rule="confidence"``) or entropy <= threshold (``"entropy"``,
            nats) exits; None never exits early (a fixed run of ``max_T`` steps, one step at a time).
        rule: ``"confidence"`` or ``"entropy"``.
        max_T: the last step; every sample still running exits there.
        temporal: event frames ``[B, T0, C, H, W]`` (frame t at step t) instead of static images ``[B, C, H, W]``.

    Example::

        clf = EarlyExitClassifier(student, threshold=0.9, max_T=8)
        out = clf(images)          # out.pred, out.step, out.prob
    """

    def __init__(
        self,
        model: nn.Module,
        threshold: float | None,
        rule: str = "confidence",
        max_T: int = 4,
        temporal: bool = False,
    ) -> None:
        if max_T < 1:
            raise SnnkdError(f"max_T must be >= 1, got {max_T}")
        self.model = model.eval()
        self.threshold = threshold
        self.rule = check_rule(rule)
        self.max_T = max_T
        self.temporal = temporal
        self._stateful = stateful_modules(model)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> ExitOutput:
        """``x``: static images ``[N, C, H, W]`` or event frames ``[N, T0>=max_T, C, H, W]``."""
        if self.temporal and (x.dim() < 3 or x.shape[1] < self.max_T):
            raise ValueError(f"event batch must be [N, T>={self.max_T}, ...], got shape {tuple(x.shape)}")
        param = next(self.model.parameters(), None)
        device = param.device if param is not None else x.device
        x = x.to(device)
        n = x.shape[0]
        if n == 0:
            empty = torch.zeros(0, dtype=torch.long)
            return ExitOutput(empty, empty.clone(), torch.zeros(0), torch.zeros(0, 0), 0)
        active = torch.arange(n, device=device)  # original index of each row still running
        pred = torch.zeros(n, dtype=torch.long, device=device)
        step = torch.zeros(n, dtype=torch.long, device=device)
        prob: torch.Tensor | None = None
        logits: torch.Tensor | None = None
        total: torch.Tensor | None = None
        work = 0
        reset_state(self.model)
        try:
            for t in range(1, self.max_T + 1):
                inp = x[:, t - 1] if self.temporal else x  # [B', ...] for the samples still running
                s = at_least_fp32(self.model(inp.unsqueeze(0))[0])  # [B', C]
                work += s.shape[0]
                total = s if total is None else total + s
                mean = total / t  # the running mean, as cumsum(0)[t-1] / t
                if logits is None:
                    logits = torch.zeros(n, s.shape[-1], dtype=s.dtype, device=device)
                    prob = torch.zeros(n, dtype=s.dtype, device=device)
                if t == self.max_T:
                    done = torch.ones(len(active), dtype=torch.bool, device=device)
                else:
                    done = should_exit(exit_scores(mean, self.rule), self.threshold, self.rule)
                if done.any():
                    rows = active[done]
                    p = torch.softmax(mean[done], dim=-1)
                    pred[rows] = mean[done].argmax(-1)
                    prob[rows] = p.gather(1, pred[rows].unsqueeze(1)).squeeze(1)
                    step[rows] = t
                    logits[rows] = mean[done]
                    keep = (~done).nonzero().squeeze(1)
                    if keep.numel() == 0:
                        break
                    select_batch(self._stateful, keep, len(active))
                    active, x, total = active[keep], x[keep], total[keep]
        finally:
            reset_state(self.model)
        return ExitOutput(pred.cpu(), step.cpu(), prob.cpu(), logits.cpu(), work)
