"""Typed run configuration and the paper's recipes as per-dataset presets.

A run is described by one :class:`RunConfig`; it is printed at the start of a run and saved
(as JSON) inside every checkpoint, so a checkpoint can rebuild its own model and data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from snnkd_cli.errors import SnnkdError, given, option
from snnkd_cli.presets import PRESETS as PRESETS
from snnkd_cli.presets import Preset as Preset

DATASETS = ("synthetic", "cifar10", "cifar100", "imagefolder", "imagenet", "cifar10dvs", "synthetic-dvs")
EVENT_DATASETS = ("cifar10dvs", "synthetic-dvs")
LOSSES = ("full-range", "standard-kd", "twce")
SD_NONE_CORRECT = ("uniform", "skip")  # the self-distillation target of a sample with no correct step
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NEURON_PRECISIONS = ("fp32", "autocast")
SCHEDULES = ("cosine-epoch", "cosine-step")
# --memopt: off, or spikingjelly memopt's checkpoint budget (about 50, 75 or 100% of the student's blocks)
MEMOPTS = ("off", "speed", "balanced", "memory")
EXIT_RULES = ("confidence", "entropy")  # early exit: max softmax probability, or entropy in nats
# One idea, three words: a run's task trains a network of a kind, saved as a checkpoint of a kind.
NETWORK_OF_TASK = {"teacher": "ann", "distill": "snn"}  # RunConfig.task -> ModelConfig.kind
CHECKPOINT_OF_NETWORK = {"ann": "teacher", "snn": "student"}  # ModelConfig.kind -> checkpoint "kind"
TASK_OF_NETWORK = {kind: task for task, kind in NETWORK_OF_TASK.items()}  # ModelConfig.kind -> RunConfig.task
RESIZES = ("bilinear", "area")  # how cifar10dvs frames were resized from 128 px (data/aedat.py RESIZE_MODES)
# Training augmentation policies (snnkd_cli.data.transforms); "auto" picks one from the dataset and image size.
IMAGE_AUGMENTS = ("none", "crop", "crop-flip", "cifar", "imagenet")
EVENT_AUGMENTS = ("none", "dvs")
# --augment auto on event data: the paper's dvs policy from this many epochs, none below (docs/results.md, "Event
# data: no augmentation on short runs": at 3-12 epochs its roll/rotation/cutout cost the teachers 30-62 points).
DVS_AUGMENT_MIN_EPOCHS = 100
MAX_WARMUP_SHARE = 0.25  # warm-up never takes more than this share of a run's steps
MAX_TRAIN_T = 256  # backpropagation through time keeps every step's activations: more is refused
HIGH_LR = 1.0  # an SGD lr above this gets a note (recipes use 0.01-0.5)


class Freezable:
    """A config section that :func:`freeze` can make read-only: once a run's config is resolved, setting a
    field raises (``dataclasses.replace`` makes a changed, unfrozen copy)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_frozen_"):
            raise AttributeError(
                f"the run's config is resolved and frozen: {type(self).__name__}.{name} cannot change "
                "(make a changed copy with dataclasses.replace)"
            )
        object.__setattr__(self, name, value)


@dataclass
class DataConfig(Freezable):
    """Where the data comes from and how it is shaped.

    ``num_classes``/``in_channels``/``image_size`` are resolved from the dataset when the
    data is built (0 or None means "not resolved yet").
    """

    dataset: str = "synthetic"
    data_dir: str = "./data"
    download: bool = False
    image_size: int | None = None
    workers: int = 2
    num_classes: int = 0
    in_channels: int = 3
    synthetic_train: int = 2000
    synthetic_val: int = 500
    frames: int | None = None  # event data: frames per sample (cache selection; synthetic-dvs: generated)
    split: str | None = None  # cifar10dvs cache: "random" (paper, 90/10 seed 42) or "per-class" (900/100)
    resize: str = "bilinear"  # cifar10dvs cache: frames resized from 128 px "bilinear" (antialiased, paper) or "area"
    augment: str = "auto"  # IMAGE_AUGMENTS or EVENT_AUGMENTS; "auto": resolved from dataset and size
    calib_holdout: float = 0.0  # share of the training split left out of training, for early-exit calibration


@dataclass
class ModelConfig(Freezable):
    """Everything :func:`snnkd_cli.models.create_model` needs to rebuild a network."""

    arch: str = "resnet18"
    kind: str = "snn"  # "snn" (spiking, [T,B,...] -> [T,B,C]) or "ann" ([B,...] -> [B,C])
    num_classes: int = 10
    in_channels: int = 3
    width: int = 64
    stem: str = "cifar"  # "cifar" (3x3 conv) or "imagenet" (7x7/2 conv + max-pool)
    decay: float = 0.5  # LIF leak: v = decay * v + x
    soft_reset: bool = False

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``create_model`` (everything but arch and num_classes)."""
        kw: dict[str, Any] = dict(kind=self.kind, in_channels=self.in_channels, width=self.width, stem=self.stem)
        if self.kind == "snn":
            kw.update(decay=self.decay, soft_reset=self.soft_reset)
        return kw


@dataclass
class TrainConfig(Freezable):
    """Optimiser, schedule and run settings shared by teacher training and distillation."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    bn_weight_decay: bool = False  # decay BN parameters and biases too (the paper's teacher loop); else weights only
    drop_last: bool = True  # drop the last partial training batch (kept where the set has under two batches)
    warmup_epochs: float = 0.0
    schedule: str = "cosine-step"  # cosine to 0 advanced every step, or once per epoch (the paper's code)
    T: int = 4
    seed: int = 60
    precision: str = "auto"  # bf16 where the device computes it natively, else fp32 (resolved at the start)
    neuron_precision: str = "fp32"  # LIF state and dynamics under autocast: fp32, or the autocast dtype
    channels_last: bool = False
    compile: bool = False  # torch.compile the training forward (fixed T); evaluation stays eager
    memopt: str = "off"  # MEMOPTS: the student's activations checkpointed (spikingjelly memopt), with this budget
    memopt_level: int = 0  # optimize_memory's level, resolved at the start: 0 off, 1 on a CPU, 4 on CUDA
    sync_bn: bool | None = None  # with torchrun: BatchNorm over the global batch; None: the recipe decides
    out: str = "runs/run"
    max_steps: int | None = None  # stop each epoch after this many steps (smoke tests, benchmarks)


@dataclass
class KDConfig(Freezable):
    """The distillation loss and its weights (METHOD.md)."""

    loss: str = "full-range"
    alpha: float = 0.2
    beta: float = 0.5
    tau: float = 3.0
    sd_none_correct: str = "uniform"  # SD target of a sample with no correct step: uniform (paper) or skip
    teacher: str = ""
    teacher_arch: str = ""  # for a .pth/.pt state dict trained elsewhere


@dataclass
class RunConfig(Freezable):
    """One whole run. ``task`` is "teacher" (ANN, cross-entropy) or "distill" (SNN student)."""

    task: str = "teacher"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    kd: KDConfig | None = None
    teacher_model: ModelConfig | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def checkpoint_kind(self) -> str:
        """``"student"`` or ``"teacher"``: the kind of checkpoint this run's network is saved as."""
        return CHECKPOINT_OF_NETWORK[self.model.kind]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Rebuild from :meth:`to_json`'s output; unknown keys (newer versions) are ignored."""

        def build(tp: type, sub: dict[str, Any] | None) -> Any:
            if sub is None:
                return None
            names = {f.name for f in dataclasses.fields(tp)}
            return tp(**{k: v for k, v in sub.items() if k in names})

        data = dict(d.get("data", {}))
        if isinstance(data.get("augment"), bool):  # before 0.2: a switch for the dataset's recipe
            data["augment"] = "auto" if data["augment"] else "none"
        if data.get("dataset") == "cifar10dvs" and "resize" not in data:  # before 0.2: every cache was "area"
            data["resize"] = "area"
        return cls(
            task=d.get("task", "teacher"),
            data=build(DataConfig, data),
            model=build(ModelConfig, d.get("model", {})),
            train=build(TrainConfig, d.get("train", {})),
            kd=build(KDConfig, d.get("kd")),
            teacher_model=build(ModelConfig, d.get("teacher_model")),
        )


def freeze(cfg: RunConfig) -> RunConfig:
    """A deep copy of ``cfg`` whose sections refuse any change (what a run holds once it is resolved)."""
    import copy

    cfg = copy.deepcopy(cfg)
    for section in (cfg, cfg.data, cfg.model, cfg.train, cfg.kd, cfg.teacher_model):
        if section is not None:
            object.__setattr__(section, "_frozen_", True)
    return cfg


def preset_for(dataset: str) -> Preset:
    """The recipe for ``dataset``; a clear error for an unknown name."""
    if dataset not in PRESETS:
        raise SnnkdError(f"unknown dataset '{dataset}': choose one of {', '.join(DATASETS)}")
    return PRESETS[dataset]


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a one-line :class:`SnnkdError`."""
    if value not in choices:
        raise SnnkdError(f"unknown {what} '{value}': choose one of {', '.join(choices)}")
    return value


def check_exit_rule(rule: str) -> str:
    """``rule`` if it is an early-exit rule (:data:`EXIT_RULES`), else a one-line error."""
    return check_choice(rule, EXIT_RULES, "exit rule")


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "kd": KDConfig,
}
_FIELD_SECTION = {f.name: s for s, tp in _SECTIONS.items() for f in dataclasses.fields(tp)}
_FIELD_SECTION.update(dataset="data", arch="model")


_FROM_DATA = ("num_classes", "in_channels")  # in two sections, always resolved from the data


def from_preset(task: str, dataset: str, **overrides: Any) -> RunConfig:
    """A :class:`RunConfig` for ``task`` on ``dataset``: the paper recipe, then ``overrides``.

    Args:
        task: "teacher" or "distill".
        dataset: a name in :data:`DATASETS`.
        **overrides: flat field names (``epochs=3``, ``lr=0.1``, ``arch="resnet34"``...); None means
            "keep the preset".
    """
    p = preset_for(dataset)
    spiking = task == "distill"
    cfg = RunConfig(
        task=task,
        data=DataConfig(dataset=dataset, workers=0 if dataset.startswith("synthetic") else min(4, os.cpu_count() or 1)),
        model=ModelConfig(
            arch=p.student_arch if spiking else p.teacher_arch,
            kind=NETWORK_OF_TASK[task],
            width=p.width,
            stem=p.stem,
            decay=p.decay,
            soft_reset=p.soft_reset,
        ),
        train=TrainConfig(
            epochs=p.epochs,
            batch_size=p.batch_size,
            lr=p.lr if spiking else p.teacher_lr,
            weight_decay=p.weight_decay,
            warmup_epochs=p.warmup_epochs,
            T=p.T,
        ),
        kd=KDConfig(tau=p.tau) if spiking else None,
    )
    for key, value in overrides.items():
        if value is None:
            continue
        if key in _FROM_DATA:
            raise SnnkdError(f"{key} comes from the dataset (resolved when its data is built): it cannot be set")
        section = _FIELD_SECTION.get(key)
        if section is None:
            raise ValueError(f"unknown configuration field {key!r}")
        target = getattr(cfg, section)
        if target is None:
            raise SnnkdError(f"option '{key}' only applies to distillation")
        setattr(target, key, value)
    validate(cfg)
    if not overrides.get("out"):
        cfg.train.out = f"runs/{'student' if spiking else 'teacher'}-{dataset}-{cfg.model.arch}"
    return cfg


def check_augment(dataset: str, augment: str) -> str:
    """``augment`` if it is a policy ``dataset`` can use (images or events), else a one-line error."""
    if dataset.startswith("synthetic"):  # generated with its own variation: no policy applies
        allowed: tuple[str, ...] = ("auto", "none")
    else:
        allowed = ("auto", *(EVENT_AUGMENTS if dataset in EVENT_DATASETS else IMAGE_AUGMENTS))
    if augment not in allowed:
        raise SnnkdError(
            f"{option('augment')} {augment!r} does not apply to {dataset}: choose one of {', '.join(allowed)}"
        )
    return augment


def warmup_steps(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    """Warm-up steps: ``warmup_epochs`` of the run, at most :data:`MAX_WARMUP_SHARE` of its ``total_steps``."""
    return min(round(warmup_epochs * steps_per_epoch), int(MAX_WARMUP_SHARE * total_steps))


def notes(cfg: RunConfig) -> list[str]:
    """Warnings for options that are valid but have no effect in this run (printed when it starts)."""
    out = []
    if cfg.train.lr > HIGH_LR:
        out.append(f"{given('lr', cfg.train.lr)} is above {HIGH_LR:g}, far beyond SGD's usual 0.01-0.5: "
                   "expect the loss to diverge (the dataset's preset lr is the default)")  # fmt: skip
    if cfg.kd is not None and cfg.kd.loss == "twce" and cfg.kd.teacher:
        out.append(
            f"{given('loss', 'twce')} uses no teacher: {option('teacher')} is ignored "
            "(full-range and standard-kd use it)"
        )
    return out


def _first_failed(checks: list[tuple[bool, str]]) -> None:
    for ok, msg in checks:
        if not ok:
            raise SnnkdError(msg)


def check_finite(**values: float) -> None:
    """A one-line error for the first value that is NaN or infinite (by its option name)."""
    _first_failed([(math.isfinite(v), f"{option(k)} must be a finite number, got {v}") for k, v in values.items()])


def validate_train(t: TrainConfig) -> None:
    """One-line errors for training settings no run can use (also what the Python API's ``distill`` checks)."""
    check_finite(lr=t.lr, weight_decay=t.weight_decay, warmup_epochs=t.warmup_epochs)
    _first_failed([
        (t.T >= 1, f"{option('T')} must be >= 1, got {t.T}"),
        (t.T <= MAX_TRAIN_T, f"{option('T')} {t.T} is above {MAX_TRAIN_T}: training keeps every step's activations "
         "for backpropagation through time (the paper trains at 1-10); eval-sweep --max-T runs longer"),
        (t.epochs >= 1, f"{option('epochs')} must be >= 1, got {t.epochs}"),
        (t.batch_size >= 1, f"{option('batch_size')} must be >= 1, got {t.batch_size}"),
        (t.lr > 0, f"{option('lr')} must be > 0, got {t.lr}"),
        (t.weight_decay >= 0, f"{option('weight_decay')} must be >= 0, got {t.weight_decay}"),
        (t.warmup_epochs >= 0, f"{option('warmup_epochs')} must be >= 0, got {t.warmup_epochs}"),
        (t.max_steps is None or t.max_steps >= 1, f"{option('max_steps')} must be >= 1, got {t.max_steps}"),
    ])  # fmt: skip
    check_choice(t.precision, PRECISIONS, "precision")
    check_choice(t.neuron_precision, NEURON_PRECISIONS, "neuron precision")
    check_choice(t.schedule, SCHEDULES, "schedule")
    check_choice(t.memopt, MEMOPTS, option("memopt"))


def validate_kd(kd: KDConfig) -> None:
    """One-line errors for a loss and weights no run can use."""
    check_choice(kd.loss, LOSSES, "loss")
    check_choice(kd.sd_none_correct, SD_NONE_CORRECT, option("sd_none_correct"))
    check_finite(tau=kd.tau, alpha=kd.alpha, beta=kd.beta)
    if kd.tau <= 0:
        raise SnnkdError(f"{option('tau')} must be > 0, got {kd.tau}")
    if kd.alpha < 0 or kd.beta < 0:
        raise SnnkdError(f"{option('alpha')} and {option('beta')} must be >= 0")


def validate(cfg: RunConfig) -> None:
    """One-line errors for values no run can use."""
    validate_train(cfg.train)
    d, m = cfg.data, cfg.model
    _first_failed([
        (d.workers >= 0, f"{option('workers')} must be >= 0, got {d.workers}"),
        (m.width >= 1, f"{option('width')} must be >= 1, got {m.width}"),
        (0.0 <= d.calib_holdout < 1.0, f"{option('calib_holdout')} must be in [0, 1), got {d.calib_holdout}"),
        (0.0 < m.decay < 1.0, f"{option('decay')} must be in (0, 1), got {m.decay}"),
        (d.image_size is None or d.image_size >= 8, f"{option('image_size')} must be >= 8, got {d.image_size}"),
    ])  # fmt: skip
    check_augment(d.dataset, d.augment)
    if cfg.task != "distill" and cfg.train.memopt != "off":
        raise SnnkdError(f"{option('memopt')} applies to distill (a spiking student's activations over T)")
    check_choice(d.resize, RESIZES, "resize")
    if cfg.kd is not None:
        validate_kd(cfg.kd)
