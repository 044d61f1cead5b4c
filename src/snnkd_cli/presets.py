"""The paper's recipes, one :class:`Preset` per dataset (METHOD.md, "Training recipe"): every field is a default
of :func:`snnkd_cli.config.from_preset`, which re-exports them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """The paper recipe for one dataset (METHOD.md, "Training recipe"); every field is a default."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: float
    T: int
    decay: float
    tau: float
    soft_reset: bool
    teacher_arch: str
    student_arch: str
    width: int = 64
    stem: str = "cifar"
    sync_bn: bool = False  # BatchNorm over all ranks whenever torchrun starts several processes

    @property
    def teacher_lr(self) -> float:
        """The ANN teacher's peak lr: half the student's. At the student's lr an ANN teacher collapsed on a
        short real-data run (4 epochs of the UCI digits: 54 and 42% top-1 over 3 seeds, the paper's loop and
        snnkd's alike) and converged at half of it (97.2 and 97.3%); docs/results.md."""
        return self.lr / 2


PRESETS: dict[str, Preset] = {
    # The paper's recipes: SGD, cosine to 0, no warm-up (its code has none, for any dataset). Warm-up stays an
    # option (--warmup-epochs), bounded by MAX_WARMUP_SHARE of the run so that a short run still decays.
    "cifar10": Preset(300, 128, 0.1, 5e-4, 0, 6, 0.5, 3.0, False, "resnet34", "resnet18"),
    "cifar100": Preset(300, 128, 0.1, 5e-4, 0, 6, 0.5, 3.0, False, "resnet34", "resnet18"),
    # ImageNet: 8 GPUs in the paper, whose code always converts BatchNorm to SyncBatchNorm (sync_bn).
    "imagenet": Preset(
        100, 512, 0.2, 2e-5, 0, 4, 0.2, 1.0, True, "resnet34", "preact_resnet34", stem="imagenet", sync_bn=True
    ),
    # Any image folder: the paper's small-image recipe (lr 0.1, no warm-up); fewer epochs for small data.
    "imagefolder": Preset(30, 64, 0.1, 5e-4, 0, 4, 0.5, 3.0, False, "resnet34", "resnet18"),
    # Built-in offline data: narrow networks so the quickstart runs in minutes on a CPU.
    "synthetic": Preset(4, 64, 0.1, 5e-4, 0, 4, 0.5, 3.0, False, "resnet18", "resnet18", width=16),
    # CIFAR10-DVS: ResNet-19 / ResNet-19, T=10, batch 32 (paper); frames from 'snnkd preprocess-dvs'.
    "cifar10dvs": Preset(300, 32, 0.1, 5e-4, 0, 10, 0.5, 3.0, False, "resnet19", "resnet19"),
    "synthetic-dvs": Preset(6, 64, 0.1, 5e-4, 0, 8, 0.5, 3.0, False, "resnet18", "resnet18", width=16),
}
