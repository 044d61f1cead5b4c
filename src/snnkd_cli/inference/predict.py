"""``snnkd predict``: classify files with a checkpoint, at a fixed T or with early exit.

A student runs ``T`` steps (default: its training T) and predicts from the mean of the per-step
logits, or, with ``dynamic``, runs the :class:`~snnkd_cli.inference.exit_runtime.EarlyExitClassifier`
with the rule and threshold stored by ``eval-sweep --dynamic --save-threshold`` (or given). A teacher
(ANN) predicts in one step.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from snnkd_cli.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, stored_exit_rule
from snnkd_cli.data import dataset_spec
from snnkd_cli.data.inputs import InputError, expand_inputs, image_transform, is_temporal, load_frames, load_image
from snnkd_cli.errors import SnnkdError, option
from snnkd_cli.evaluation.early_exit import check_rule, running_mean
from snnkd_cli.format import CLASSES_KEY
from snnkd_cli.inference.exit_runtime import EarlyExitClassifier
from snnkd_cli.models.contract import reset_state, teacher_input, time_major
from snnkd_cli.precision import default_device
from snnkd_cli.progress import track


@dataclass
class PredictReport:
    """Predictions in input order (``input, class, class_index, probability, steps``) and per-input errors."""

    checkpoint: str
    mode: str  # "fixed" (a student at T steps), "dynamic" (early exit) or "ann"
    T: int | None = None  # fixed: the steps; dynamic: the most steps (Tmax)
    rule: str | None = None
    threshold: float | None = None
    threshold_source: str | None = None  # "stored" or "given"
    predictions: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        """``predict --json``: the fields in their order (the JSON field names are the attribute names)."""
        return dataclasses.asdict(self)


def class_names(ckpt: Checkpoint) -> list[str]:
    """The checkpoint's class names: stored at training (metadata ``classes``), the names its dataset's spec
    knows (CIFAR-10), read from an image folder's ``val/`` if it is still there, else ``class_<i>``."""
    n, data = ckpt.config.model.num_classes, ckpt.config.data
    try:
        stored = json.loads(ckpt.meta.get(CLASSES_KEY, "[]"))
    except ValueError:
        stored = []
    if isinstance(stored, list) and len(stored) == n:
        return [str(c) for c in stored]
    spec = dataset_spec(data.dataset)
    if len(spec.class_names) == n:
        return list(spec.class_names)
    val = Path(data.data_dir) / "val"
    if spec.folder_classes and val.is_dir():
        names = sorted(e.name for e in val.iterdir() if e.is_dir() and not e.name.startswith("."))
        if len(names) == n:
            return names
    return [f"class_{i}" for i in range(n)]


def _resolve_mode(
    ckpt: Checkpoint, T: int | None, dynamic: bool, threshold: float | None, rule: str | None
) -> PredictReport:
    """Check the options against the checkpoint; the report's mode, T, rule and threshold."""
    report = PredictReport(str(ckpt.path), "ann")
    if T is not None and dynamic:
        raise SnnkdError("--T and --dynamic exclude each other: --dynamic runs up to the stored Tmax")
    if (threshold is not None or rule is not None) and not dynamic:
        raise SnnkdError("--threshold and --exit-rule apply with --dynamic")
    if ckpt.kind == "teacher":
        if T is not None or dynamic:
            raise SnnkdError(f"{ckpt.path} is an ANN teacher: --T and --dynamic apply to spiking students")
        return report
    if T is not None and T < 1:
        raise SnnkdError(f"{option('T')} must be >= 1, got {T}")
    if not dynamic:
        report.mode, report.T = "fixed", T or ckpt.config.train.T
        return report
    stored = stored_exit_rule(ckpt.meta)
    report.mode = "dynamic"
    if threshold is None:
        if stored is None:
            raise SnnkdError(
                f"{ckpt.path} has no stored early-exit threshold: run 'snnkd eval-sweep {ckpt.path} --dynamic "
                "--save-threshold' first, or pass --threshold"
            )
        if rule is not None and rule != stored["rule"]:
            raise SnnkdError(
                f"the stored threshold is for the {stored['rule']} rule; pass --threshold for --exit-rule {rule}"
            )
        report.rule, report.threshold, report.threshold_source = stored["rule"], stored["threshold"], "stored"
        report.T = int(stored["max_T"])
        return report
    report.rule = check_rule(rule or (stored["rule"] if stored else "confidence"))
    if not math.isfinite(threshold) or (report.rule == "confidence" and not 0.0 <= threshold <= 1.0):
        raise SnnkdError(f"--threshold for the confidence rule is a probability in [0, 1], got {threshold}")
    if report.rule == "entropy" and threshold < 0:
        raise SnnkdError(f"--threshold for the entropy rule is in nats (>= 0), got {threshold}")
    report.threshold, report.threshold_source = threshold, "given"
    report.T = int(stored["max_T"]) if stored else ckpt.config.train.T
    return report


class _Classifier:
    """Classifies a batch of loaded inputs the report's way (ANN, fixed T, early exit) into its predictions."""

    def __init__(self, model, report, names: list[str], steps: int, temporal: bool, device: torch.device) -> None:
        self.model, self.report, self.names, self.steps = model, report, names, steps
        self.temporal, self.device = temporal, device
        self.runtime = None
        if report.mode == "dynamic":
            self.runtime = EarlyExitClassifier(model, report.threshold, report.rule, report.T, temporal)

    @torch.no_grad()
    def __call__(self, batch: list[tuple[Path, torch.Tensor]]) -> None:
        x = torch.stack([t for _, t in batch]).to(self.device)  # [B, ...]
        model, report = self.model, self.report
        if self.runtime is not None:
            out = self.runtime(x)
            pred, prob, used = out.pred, out.prob, out.step.tolist()
        else:
            if report.mode == "ann":
                p = torch.softmax(model(teacher_input(x, self.temporal)).float(), -1)  # [B, C]
            else:
                reset_state(model)
                logits = model(time_major(x, self.steps, self.temporal)).float()  # [T, B, C]
                p = torch.softmax(running_mean(logits)[-1], -1)
                reset_state(model)
            prob, pred = (v.cpu() for v in p.max(-1))
            used = [report.T] * len(batch)
        for (path, _), c, pr, s in zip(batch, pred.tolist(), prob.tolist(), used, strict=True):
            report.predictions.append(
                {"input": str(path), "class": self.names[c], "class_index": c, "probability": pr, "steps": s}
            )


@torch.no_grad()
def predict_files(
    checkpoint: str | Path,
    inputs: list[Path],
    *,
    T: int | None = None,
    dynamic: bool = False,
    threshold: float | None = None,
    rule: str | None = None,
    batch_size: int = 64,
    device: torch.device | None = None,
) -> PredictReport:
    """Classify image files or folders (event-frame files for DVS checkpoints) with a checkpoint.

    Args:
        checkpoint: a snnkd checkpoint (student or teacher).
        inputs: files and folders (folders: their files of the right kind, sorted, recursively).
        T: a student's steps (default: its training T). Not with ``dynamic``.
        dynamic: early exit with the stored rule and threshold (or ``threshold``/``rule``).
        batch_size: files classified together.

    Returns:
        A :class:`PredictReport`; a bad input becomes an entry of ``errors`` (one line) and the others
        are still classified.

    Raises:
        SnnkdError: a bad checkpoint or options (nothing is classified).
    """
    if batch_size < 1:
        raise SnnkdError(f"{option('batch_size')} must be >= 1, got {batch_size}")
    ckpt = load_checkpoint(checkpoint)
    report = _resolve_mode(ckpt, T, dynamic, threshold, rule)
    data = ckpt.config.data
    temporal = is_temporal(data)
    steps = report.T or (data.frames or 1)  # a teacher on events: the mean of all the frames
    if temporal and data.frames and report.mode != "ann" and steps > data.frames:
        raise SnnkdError(f"--T {steps} is more than the {data.frames} frames per sample {ckpt.path} was trained on")
    if not data.dataset:
        raise SnnkdError(
            f"{ckpt.path} was trained from the Python API without dataset=NAME: snnkd predict cannot know its "
            "input preprocessing; give distill(..., dataset=NAME)"
        )
    transform = None if temporal else image_transform(data)
    names = class_names(ckpt)
    device = device or default_device()
    model = model_from_checkpoint(ckpt).to(device).eval()
    classify = _Classifier(model, report, names, steps, temporal, device)
    pending: list[tuple[Path, torch.Tensor]] = []
    for path, err in track(list(expand_inputs(inputs, temporal)), "predict (inputs)"):
        try:
            if err is not None:
                raise err
            if temporal:
                x = load_frames(path, data, steps, exact=report.mode == "ann")
            else:
                x = load_image(path, data, transform)
        except InputError as e:
            report.errors.append({"input": str(path), "error": e.message})
            continue
        pending.append((path, x))
        if len(pending) == batch_size:
            classify(pending)
            pending = []
    if pending:
        classify(pending)
    return report
