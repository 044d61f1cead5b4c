"""Distillation losses: pure functions on tensors (METHOD.md, "Loss"). A stable public API.

Shapes: student per-step logits ``[T, B, C]``, teacher logits ``[B, C]``, targets ``[B]``.
All losses are computed in float32 whatever the autocast dtype of the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from snnkd_cli.config import SD_NONE_CORRECT

__all__ = [
    "combine_full_range_terms",
    "full_range_kd_loss",
    "full_range_kd_terms",
    "kd_divergence",
    "self_distillation_divergence",
    "self_distillation_target",
    "standard_kd_loss",
    "twce_loss",
]


def _check(student_logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor | None = None) -> None:
    if student_logits.dim() != 3:
        raise ValueError(f"student_logits must be [T, B, C], got shape {tuple(student_logits.shape)}")
    T, B, C = student_logits.shape
    if target.shape != (B,):
        raise ValueError(f"target must be [B]=[{B}], got shape {tuple(target.shape)}")
    if teacher_logits is not None and teacher_logits.shape != (B, C):
        raise ValueError(f"teacher_logits must be [B, C]=[{B}, {C}], got shape {tuple(teacher_logits.shape)}")


def kd_divergence(student: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(target/tau) || softmax(student/tau)) * tau^2``, averaged over all leading dims.

    Args:
        student: logits ``[..., C]``.
        target: logits ``[..., C]`` (broadcastable to ``student``), treated as constants.
        temperature: tau.

    Returns:
        Scalar: for ``[T, B, C]`` inputs this is ``mean_t`` of the batch-mean KL at step t.
    """
    return _kl_rows(student, target, temperature).mean() * temperature**2


def _kl_rows(student: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(target/tau) || softmax(student/tau))`` per row: ``[..., C]`` -> ``[...]`` (float32)."""
    log_p = F.log_softmax(student.float() / temperature, dim=-1)
    log_q = F.log_softmax(target.detach().float() / temperature, dim=-1).expand_as(log_p)
    return (log_q.exp() * (log_q - log_p)).sum(-1)


def self_distillation_target(student_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean logits over each sample's correct timesteps (detached); all-zero if none is correct.

    Args:
        student_logits: ``[T, B, C]``.
        target: ``[B]`` class indices.

    Returns:
        ``[B, C]``; a zero row is a uniform target after softmax.
    """
    s = student_logits.detach().float()
    correct = (s.argmax(-1) == target.unsqueeze(0)).float()  # [T, B]
    total = (s * correct.unsqueeze(-1)).sum(0)  # [B, C]
    return total / correct.sum(0).clamp(min=1.0).unsqueeze(-1)


def self_distillation_divergence(
    student_logits: torch.Tensor, target: torch.Tensor, temperature: float, none_correct: str = "uniform"
) -> torch.Tensor:
    """``mean_t KD(s[t], ens)`` (scalar) with ``ens`` from :func:`self_distillation_target`.

    Args:
        student_logits: ``[T, B, C]``.
        target: ``[B]``.
        temperature: tau.
        none_correct: a sample none of whose steps is correct is pulled toward a uniform target
            (``"uniform"``, the paper's code) or adds nothing (``"skip"``; the mean is still over all ``B``).
    """
    if none_correct not in SD_NONE_CORRECT:
        raise ValueError(f"none_correct must be one of {SD_NONE_CORRECT}, got {none_correct!r}")
    ens = self_distillation_target(student_logits, target)  # [B, C]
    if none_correct == "uniform":
        return kd_divergence(student_logits, ens.unsqueeze(0), temperature)
    keep = (student_logits.detach().argmax(-1) == target.unsqueeze(0)).any(0).float()  # [B]
    kl = _kl_rows(student_logits, ens.unsqueeze(0), temperature)  # [T, B]
    return (kl * keep).mean() * temperature**2


def twce_loss(student_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Time-wise cross-entropy (TET-style): ``mean_t CE(student_logits[t], target)``.

    Args:
        student_logits: ``[T, B, C]``.
        target: ``[B]``.
    """
    _check(student_logits, target)
    T = student_logits.shape[0]
    return F.cross_entropy(student_logits.float().flatten(0, 1), target.repeat(T))


def full_range_kd_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    *,
    temperature: float = 3.0,
    none_correct: str = "uniform",
) -> dict[str, torch.Tensor]:
    """The three unweighted terms of the full-range loss: ``{"ce", "td", "sd"}`` (scalars).

    ``ce = mean_t CE_t``, ``td = mean_t KD(s[t], teacher)``, ``sd = mean_t KD(s[t], ens)``
    where ``ens`` is :func:`self_distillation_target` (``none_correct``: see
    :func:`self_distillation_divergence`).
    """
    _check(student_logits, target, teacher_logits)
    return {
        "ce": twce_loss(student_logits, target),
        "td": kd_divergence(student_logits, teacher_logits.unsqueeze(0), temperature),
        "sd": self_distillation_divergence(student_logits, target, temperature, none_correct),
    }


def full_range_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = 0.2,
    beta: float = 0.5,
    temperature: float = 3.0,
    none_correct: str = "uniform",
) -> torch.Tensor:
    """The paper's loss: ``mean_t CE_t + alpha * mean_t TD_t + beta * mean_t SD_t``.

    Args:
        student_logits: per-step student logits ``[T, B, C]``.
        teacher_logits: ANN teacher logits ``[B, C]`` (no gradient flows into them).
        target: class indices ``[B]``.
        alpha: weight of the teacher term.
        beta: weight of the self-distillation term.
        temperature: softmax temperature tau of both KD terms.
        none_correct: the SD term of a sample with no correct step: ``"uniform"`` (the paper) or ``"skip"``.

    Returns:
        Scalar loss.
    """
    t = full_range_kd_terms(student_logits, teacher_logits, target, temperature=temperature,
                            none_correct=none_correct)  # fmt: skip
    return combine_full_range_terms(t, alpha=alpha, beta=beta)


def combine_full_range_terms(terms: dict[str, torch.Tensor], *, alpha: float = 0.2, beta: float = 0.5) -> torch.Tensor:
    """``ce + alpha * td + beta * sd`` from :func:`full_range_kd_terms` (for callers that also log the terms)."""
    return terms["ce"] + alpha * terms["td"] + beta * terms["sd"]


def standard_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = 0.2,
    temperature: float = 3.0,
) -> torch.Tensor:
    """Standard KD on the time-averaged logits: ``CE(mean_t s, y) + alpha * KD(mean_t s, teacher)``.

    Args:
        student_logits: ``[T, B, C]``; teacher_logits: ``[B, C]``; target: ``[B]``.
    """
    _check(student_logits, target, teacher_logits)
    mean = student_logits.float().mean(0)  # [B, C]
    return F.cross_entropy(mean, target) + alpha * kd_divergence(mean, teacher_logits, temperature)
