"""``bench/step.py --epoch``: where the wall time of a ``snnkd distill`` run goes, beside the sum of its steps.

One whole run as ``snnkd distill`` runs it (``cli.commands.run_training``: ``train.run.train``, then the best
checkpoint read and its sweep table printed) of the spiking ResNet-18 at T=4 from an ANN ResNet-34 teacher, batch 64,
on the synthetic set in CIFAR-10's sizes (50,000 training and 10,000 validation images of 32x32, through snnkd's
loader, one epoch). The teacher checkpoint (random weights) is written first, outside the timed run.

The training loop tells a timer (``snnkd_cli.progress.timing``) of each part: each wait for a training batch, each
training step (``train_step``), the health check, each epoch's validation, the checkpoint and resume writes. The
rest is measured around them: imports (the process's start to ``main``), start-up (the run's start to the first
batch wait: data, teacher, student, loaders, memopt, optimiser), after training (the last write to the end: the
best checkpoint read, the sweep table printed) and other (the wall time less every part: the loop between parts:
loss reads, progress lines, device copies). So the parts add up to the wall time; none overlaps another.

The issue's target: the wall time within 1.1x of the sum of the training steps.

Usage: ``python bench/step.py --epoch --threads 1 [--train-images 50000 --val-images 10000] [--json F]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from snnkd_cli.checkpoint import save_checkpoint
from snnkd_cli.cli._training import RunOptions
from snnkd_cli.cli.commands import run_training
from snnkd_cli.config import from_preset
from snnkd_cli.models import build_model
from snnkd_cli.precision import default_device
from snnkd_cli.progress import timing

TARGET = 1.1  # the bound on wall time over the sum of the training steps
PARTS = {  # key: label, in the order of a run
    "imports": "imports (process start to main)",
    "start": "start-up: data, teacher, student, loaders, memopt, optimiser",
    "data": "data loader waits",
    "step": "training steps",
    "health": "health check, once a run",
    "validation": "validation, each epoch",
    "checkpoints": "checkpoint and resume writes",
    "after": "after training: best checkpoint read, sweep table",
    "other": "other: the loop between parts",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/step.py --epoch", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--train-images",
        type=int,
        default=1438,
        help="synthetic training images (default: the UCI digits' 1,438; CIFAR-10: 50000)",
    )
    ap.add_argument("--val-images", type=int, default=359, help="synthetic validation images (CIFAR-10: 10000)")
    ap.add_argument("--batch", type=int, default=64, help="batch size")
    ap.add_argument("--T", type=int, default=4, help="student timesteps")
    ap.add_argument("--size", type=int, default=32, help="image height and width (px)")
    ap.add_argument("--width", type=int, default=64, help="student and teacher width (the paper's: 64)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs (each validated)")
    ap.add_argument("--max-steps", type=int, default=None, help="stop each epoch after this many steps")
    ap.add_argument("--precision", default="auto", help="as distill's --precision (default auto)")
    ap.add_argument("--memopt", default="off", help="as distill's --memopt")
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: the synthetic preset's)")
    ap.add_argument("--threads", type=int, default=None, help="as distill's --threads (default: snnkd's)")
    ap.add_argument("--out", help="the run's folder (default: a temporary one, removed)")
    ap.add_argument("--json", help="write the figures here")
    return ap.parse_args(argv)


def process_age() -> float | None:
    """Seconds since this process started (``/proc/self/stat``, 10 ms ticks), None where it cannot be read."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime: ticks since boot
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _teacher(folder: Path, args: argparse.Namespace) -> Path:
    """A ResNet-34 teacher checkpoint with random weights, as ``train-teacher`` would save one for this data."""
    cfg = from_preset("teacher", "synthetic", arch="resnet34", width=args.width, image_size=args.size)
    cfg.model.num_classes = 10
    path = folder / "teacher.safetensors"
    save_checkpoint(path, build_model(cfg.model).state_dict(), "teacher", cfg)
    return path


def _config(args: argparse.Namespace, teacher: Path, out: Path):
    """``snnkd distill --dataset synthetic --arch resnet18 ...`` with the synthetic set's sizes."""
    return from_preset(
        "distill",
        "synthetic",
        arch="resnet18",
        width=args.width,
        T=args.T,
        batch_size=args.batch,
        epochs=args.epochs,
        max_steps=args.max_steps,
        image_size=args.size,
        synthetic_train=args.train_images,
        synthetic_val=args.val_images,
        precision=args.precision,
        memopt=args.memopt,
        workers=args.workers,
        teacher=str(teacher),
        out=str(out),
    )


class Timer:
    """The loop's parts as ``(what, start, end)``; on CUDA the device is waited for before each end is read."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.parts: list[tuple[str, float, float]] = []

    def __call__(self, what: str, start: float) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.parts.append((what, start, time.perf_counter()))

    def total(self, what: str) -> float:
        return sum(end - start for w, start, end in self.parts if w == what)

    def times(self, what: str) -> list[float]:
        return [end - start for w, start, end in self.parts if w == what]


def breakdown(timer: Timer, t0: float, t_end: float, imports: float) -> dict[str, float]:
    """Every part in seconds (:data:`PARTS`), adding up to the wall time ``imports + t_end - t0``."""
    first = timer.parts[0][1] if timer.parts else t_end
    last = timer.parts[-1][2] if timer.parts else t_end
    parts = {"imports": imports, "start": first - t0}
    parts |= {k: timer.total(k) for k in ("data", "step", "health", "validation", "checkpoints")}
    parts["after"] = t_end - last
    parts["other"] = imports + (t_end - t0) - sum(parts.values())
    return parts


def measure(args: argparse.Namespace, imports: float, folder: Path) -> dict:
    """The run, timed: its parts, the step and batch-wait times and the training time of each epoch."""
    t_setup = time.perf_counter()
    teacher = _teacher(folder, args)
    cfg = _config(args, teacher, folder / "student")
    timer = Timer(default_device())  # where run_training trains (CUDA_VISIBLE_DEVICES= keeps it on the CPU)
    t0 = time.perf_counter()
    with timing(timer):
        outcome = run_training(cfg, RunOptions(overwrite=True, threads=args.threads))
    t_end = time.perf_counter()
    parts = breakdown(timer, t0, t_end, imports)
    wall, steps = sum(parts.values()), parts["step"]
    loop = sum(r["time"] for r in outcome.fit.history)  # fit's training time of each epoch
    return {
        "wall_s": wall,
        "steps_s": steps,
        "wall_over_steps": wall / steps if steps else None,
        "epoch_loop_s": loop,
        "loop_over_steps": loop / steps if steps else None,
        "target": TARGET,
        "met": bool(steps) and wall <= TARGET * steps,
        "parts_s": parts,
        "shares": {k: v / wall for k, v in parts.items()},
        "steps": len(timer.times("step")),
        "step_times_s": timer.times("step"),
        "data_times_s": timer.times("data"),
        "epochs": len(outcome.fit.history),
        "setup_s_not_in_wall": t0 - t_setup,
        "threads": torch.get_num_threads(),
        "config": {"precision": outcome.config.train.precision, "memopt": cfg.train.memopt},
    }


def table(report: dict) -> str:
    """The parts as a markdown table (seconds and share of the wall time), then the ratios to the steps."""
    r = report["result"]
    lines = [f"`{' '.join(report['argv'])}`", "", "| part | s | share |", "|---|--:|--:|"]
    counts = {"data": len(r["data_times_s"]), "step": r["steps"], "validation": r["epochs"]}
    for key, label in PARTS.items():
        n = f" ({counts[key]})" if key in counts else ""
        lines.append(f"| {label}{n} | {r['parts_s'][key]:.2f} | {100 * r['shares'][key]:.1f}% |")
    lines.append(f"| **wall** | **{r['wall_s']:.2f}** | 100% |")
    ratio = r["wall_over_steps"]
    met = "met" if r["met"] else "not met"
    lines += [
        "",
        f"wall / sum of training steps: {ratio:.3f}x (target <= {r['target']}x: {met}); "
        f"the epochs' training loops (fit's time) / steps: {r['loop_over_steps']:.3f}x",
        f"{r['steps']} steps, median {_median(r['step_times_s']):.3f} s; {r['epochs']} epoch(s); "
        f"precision {r['config']['precision']}, memopt {r['config']['memopt']}, {r['threads']} thread(s)",
    ]
    return "\n".join(lines)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return (s[len(s) // 2] + s[(len(s) - 1) // 2]) / 2 if s else float("nan")


def main(argv: list[str], imports: float | None = None) -> int:
    """``bench/step.py --epoch ARGV``; ``imports``: the process's age when ``main`` began (else measured now)."""
    import json

    from step import machine  # bench/step.py

    imports = process_age() if imports is None else imports
    args = parse_args(argv)
    report = {"argv": ["bench/step.py", "--epoch", *argv], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    report["options"] = vars(args)
    with tempfile.TemporaryDirectory(prefix="snnkd-epoch-") as tmp:
        folder = Path(args.out) if args.out else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        report["result"] = measure(args, imports or 0.0, folder)
    report["machine"] = machine()
    md = table(report)
    print("\n" + md)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
