"""Tasks: what one training step computes. Each returns a dict of losses (``"loss"`` is
optimised, the rest are logged) and the logits used for running accuracy.

The loop owns everything else (data, precision, optimiser, state reset), so one loop serves
teacher training and distillation.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from snnkd_cli.config import KDConfig
from snnkd_cli.kd import losses
from snnkd_cli.models.contract import teacher_input, time_major


class Task(Protocol):
    spiking: bool  # a student run over T steps (validated per T), or an ANN
    temporal: bool  # event frames (frame t at step t) instead of a static image

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Losses for one batch ``x`` (``[B, ...]``), ``y`` (``[B]``), and logits ``[B, C]`` for accuracy."""
        ...


class TeacherTask:
    """Cross-entropy training of an ANN teacher."""

    spiking = False

    def __init__(self, temporal: bool = False) -> None:
        self.temporal = temporal

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        logits = model(teacher_input(x, self.temporal))  # [B, C]
        loss = F.cross_entropy(logits.float(), y)
        return {"loss": loss}, logits


class DistillTask:
    """Distil a spiking student at ``T`` steps from a frozen ANN teacher.

    Args:
        teacher: ANN in eval mode (run under no_grad); None is allowed for ``loss="twce"``.
        T: training timesteps.
        kd: the loss (``"full-range"``, ``"standard-kd"`` or ``"twce"``), its weights ``alpha``, ``beta``,
            temperature ``tau`` and ``sd_none_correct`` (METHOD.md); default: the paper's full-range loss.
        temporal: event frames (frame t at step t) instead of a repeated static image.
    """

    spiking = True

    def __init__(self, teacher: nn.Module | None, T: int, kd: KDConfig | None = None, temporal: bool = False) -> None:
        kd = kd or KDConfig()
        if teacher is None and kd.loss != "twce":
            raise ValueError(f"loss '{kd.loss}' needs a teacher")
        self.teacher, self.T, self.loss = teacher, T, kd.loss
        self.alpha, self.beta, self.tau, self.temporal = kd.alpha, kd.beta, kd.tau, temporal
        self.sd_none_correct = kd.sd_none_correct

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        s = model(time_major(x, self.T, self.temporal))  # [T, B, C]
        if self.loss == "twce":
            out = {"loss": losses.twce_loss(s, y)}
        else:
            with torch.no_grad():
                z = self.teacher(teacher_input(x, self.temporal)).float()  # [B, C]
            if self.loss == "standard-kd":
                out = {"loss": losses.standard_kd_loss(s, z, y, alpha=self.alpha, temperature=self.tau)}
            else:
                t = losses.full_range_kd_terms(s, z, y, temperature=self.tau, none_correct=self.sd_none_correct)
                out = {"loss": losses.combine_full_range_terms(t, alpha=self.alpha, beta=self.beta), **t}
        return out, s.detach().mean(0)
