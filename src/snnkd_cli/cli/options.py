"""Typer option declarations, each once (None means "the dataset's paper recipe"): the commands share them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from snnkd_cli.config import DVS_AUGMENT_MIN_EPOCHS

Dataset = Annotated[
    str,
    typer.Option(
        help="Dataset: synthetic (built in, offline), synthetic-dvs (built in, event frames), cifar10, cifar100, "
        "imagefolder, imagenet, cifar10dvs (a preprocess-dvs cache or the raw release)."
    ),
]
ImportArch = Annotated[
    str,
    typer.Option(
        help="snnkd architecture to load it into: resnet18, resnet19, resnet34, preact_resnet34, tv_resnet18, "
        "tv_resnet34, tv_resnet50 ('snnkd models'). Width, stem, input channels and classes come from the weights."
    ),
]
DataDir = Annotated[Path, typer.Option(help="Folder holding the dataset (for imagefolder: train/ and val/).")]
Download = Annotated[bool, typer.Option("--download", help="Download CIFAR with torchvision if it is missing.")]
ImageSize = Annotated[int | None, typer.Option(help="Image size (default: the dataset's; 64 for imagefolder).")]
Width = Annotated[
    int | None, typer.Option(help="Base channel width (paper ResNets: 64; zoo transformers: embedding 6*width).")
]
Epochs = Annotated[int | None, typer.Option(help="Epochs (default: the dataset's recipe, e.g. 300 for CIFAR).")]
BatchSize = Annotated[int | None, typer.Option(help="Batch size (default: the recipe's).")]
Lr = Annotated[float | None, typer.Option(help="Peak learning rate of SGD (momentum 0.9, cosine to 0).")]
WeightDecay = Annotated[
    float | None, typer.Option(help="Weight decay (on conv/linear weights; see --bn-weight-decay).")
]
BNWeightDecay = Annotated[
    bool | None,
    typer.Option(
        "--bn-weight-decay/--no-bn-weight-decay",
        help="Weight decay on BN parameters and biases too, as the paper's teacher loop (default: off, weights "
        "only, as the paper's students).",
    ),
]
DropLast = Annotated[
    bool | None,
    typer.Option(
        "--drop-last/--keep-last",
        help="Drop the last partial training batch each epoch (default; kept anyway where the set holds under "
        "two batches) or train on it as well, as a plain DataLoader does.",
    ),
]
Warmup = Annotated[
    float | None,
    typer.Option(
        help="Linear warm-up epochs before the cosine schedule (default 0, as the paper; at most 25% of the run)."
    ),
]
Schedule = Annotated[
    str | None,
    typer.Option(
        help="Learning-rate schedule after warm-up: cosine-step (cosine to 0 advanced every step; default: it "
        "holds on every real set of bench/parity.py's suite) or cosine-epoch (stepped once per epoch, as the "
        "paper's CosineAnnealingLR; it holds the peak lr for a whole epoch of a short run)."
    ),
]
Resize = Annotated[
    str | None,
    typer.Option(
        help="--dataset cifar10dvs: the frame cache to read, by how frames were resized from 128 px: bilinear "
        "(antialiased, the paper's; default) or area (caches made before --resize existed). See preprocess-dvs."
    ),
]
Augment = Annotated[
    str | None,
    typer.Option(
        help="Training augmentation: auto (the dataset's: cifar for CIFAR, imagenet for ImageNet and folders "
        f">= 128 px, crop for smaller folders; for CIFAR10-DVS dvs on runs of {DVS_AUGMENT_MIN_EPOCHS} epochs or "
        "more and none on shorter ones; none for synthetic), none, crop (random "
        "crop, padding size/8), crop-flip, cifar (crop, flip, AutoAugment, Cutout), imagenet "
        "(RandomResizedCrop, flip), dvs (flip + roll/rotate/cutout, event data)."
    ),
]
NeuronPrecision = Annotated[
    str | None,
    typer.Option(
        help="LIF state under bf16/fp16 autocast: fp32 (default; convolutions still run in the autocast "
        "dtype) or autocast (the state in the autocast dtype, spikingjelly's default)."
    ),
]
Threads = Annotated[
    int | None,
    typer.Option(
        help="CPU threads for torch (default: the cores this process may use, shared among torchrun's processes on "
        "the node). OpenMP waits passively (no spinning on shared cores) unless OMP_WAIT_POLICY is set.",
    ),
]
Decay = Annotated[
    float | None, typer.Option(help="LIF leak: v = decay*v + x (default: the recipe's; paper: 0.5, ImageNet 0.2).")
]
SoftReset = Annotated[
    bool, typer.Option("--soft-reset", help="Reset the membrane by subtracting the threshold (the ImageNet recipe).")
]
HardReset = Annotated[bool, typer.Option("--hard-reset", help="Reset the membrane to 0 (the CIFAR and DVS recipes).")]
Seed = Annotated[int, typer.Option(help="Random seed (paper: 60).")]
Workers = Annotated[int | None, typer.Option(help="DataLoader worker processes (default: 0 for synthetic, else 4).")]
Out = Annotated[
    Path | None, typer.Option(help="Output folder for checkpoints (default: runs/<kind>-<dataset>-<arch>).")
]
Precision = Annotated[
    str,
    typer.Option(
        help="Numeric precision: auto (bf16 where the GPU/CPU computes it natively, else fp32), fp32, bf16 or "
        "fp16 (autocast; GradScaler for fp16)."
    ),
]
ChannelsLast = Annotated[bool, typer.Option("--channels-last", help="Use channels-last memory format.")]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the training forward at its fixed T (inductor; the first step compiles for minutes "
        "on a CPU); evaluation stays eager.",
    ),
]
SdNoneCorrect = Annotated[
    str,
    typer.Option(
        help="Self-distillation target of a sample that no timestep classifies correctly: uniform (the "
        "paper's code: pulled toward a uniform distribution) or skip (no self-distillation term for it)."
    ),
]
ChunkT = Annotated[
    int | None,
    typer.Option(
        "--chunk-T",
        help="Steps per forward of a student's pass (default 16): a longer pass runs in chunks, the neuron state "
        "carried between them (the same numbers, the memory of a pass at this many steps).",
    ),
]
MemOpt = Annotated[
    str,
    typer.Option(
        help="Student activation memory (spikingjelly memopt): off (default), or checkpoint the blocks that hold "
        "neurons (recomputed in the backward pass, spike inputs kept as bits) for speed (about 50% of them), "
        "balanced (75%) or memory (all). Level 1 on a CPU; on CUDA level 4 (also splits, chunks over T and "
        "unwraps, each by the measured peak). Same numbers as off.",
    ),
]
Resume = Annotated[
    str | None,
    typer.Option(
        "--resume",
        metavar="[PATH]",
        help="Continue an interrupted run: --resume (OUT/resume.safetensors) or --resume PATH.",
    ),
]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Start afresh in an --out folder that already holds a run, replacing its checkpoints and log "
        "(without it such a folder is refused; --resume continues it instead).",
    ),
]
SaveEvery = Annotated[int | None, typer.Option(help="Also write the resume file every N steps (default: each epoch).")]
SyncBN = Annotated[
    bool | None,
    typer.Option(
        "--sync-bn/--no-sync-bn",
        help="With torchrun: BatchNorm statistics over the global batch (all ranks). Default: on for "
        "--dataset imagenet under torchrun with more than one process (the paper's recipe), off otherwise.",
        show_default=False,
    ),
]
TensorBoard = Annotated[
    bool, typer.Option("--tensorboard", help="Also write TensorBoard event files to OUT/tensorboard.")
]
MaxSteps = Annotated[int | None, typer.Option(help="Stop each epoch after this many steps (smoke tests).")]
CalibHoldout = Annotated[
    float | None,
    typer.Option(
        help="Leave this share of the training split out of training (fixed seed) so that 'eval-sweep --dynamic' "
        "calibrates its early-exit threshold on data the student never saw (e.g. 0.1; default 0)."
    ),
]

ReplaceOutputs = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace output files that exist (--json, --csv, --out). Never an input of the command or a file "
        "of a training run.",
    ),
]

# eval-sweep: --energy and the early-exit options
Energy = Annotated[
    bool,
    typer.Option(
        "--energy",
        help="Also count SynOps and MACs per sample at every T (spikingjelly's op counters), spike rates "
        "per layer, and energy at 0.9 pJ/AC, 4.6 pJ/MAC (Horowitz, ISSCC 2014, 45 nm).",
    ),
]
EnergySamples = Annotated[
    int | None,
    typer.Option(help="Samples the --energy counters run on (the first of the evaluation set; default 256)."),
]
DynamicFlag = Annotated[
    bool,
    typer.Option(
        "--dynamic",
        help="Also evaluate early exit (students): accuracy and mean T for a grid of thresholds from the same "
        "pass, and the threshold chosen on a calibration slice of the training split.",
    ),
]
EvalExitRule = Annotated[
    str | None,
    typer.Option(
        "--exit-rule",
        help="With --dynamic: confidence (exit when the max softmax probability of the running mean >= "
        "threshold; default) or entropy (exit when its entropy in nats <= threshold).",
    ),
]
Thresholds = Annotated[
    str | None,
    typer.Option(help="With --dynamic: comma-separated thresholds to evaluate (default: a built-in grid)."),
]
MaxDrop = Annotated[
    float | None,
    typer.Option(
        "--max-drop",
        help="With --dynamic: choose the threshold with the lowest mean T whose calibration top-1 is within "
        "this many points of the calibration top-1 at max-T (default 0.5).",
    ),
]
CalibFraction = Annotated[
    float | None,
    typer.Option(
        "--calib-fraction",
        help="With --dynamic: share of the training split used to choose the threshold (evaluation "
        "transforms, fixed seed; never the evaluation set; default: the student's --calib-holdout, else 0.1).",
    ),
]
SeenFloor = Annotated[
    float | None,
    typer.Option(
        "--seen-floor",
        help="With --dynamic: where the calibration slice was seen in training (distilled without "
        "--calib-holdout), choose no confidence threshold below this (entropy rule: none above the entropy of a "
        "prediction this confident): a student is overconfident on data it trained on. 0: off (default 0.9).",
    ),
]
SaveThreshold = Annotated[
    bool,
    typer.Option(
        "--save-threshold",
        help="With --dynamic: store the chosen rule and threshold in each student checkpoint (rewritten "
        "atomically) for 'snnkd predict --dynamic'.",
    ),
]
