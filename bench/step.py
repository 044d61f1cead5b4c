"""Time per distillation step: snnkd's engine vs a paper-style reference vs the ANN floor.

Variants (all: ResNet-18 student, ANN ResNet-34 teacher, CIFAR-size 32x32 input, 10 classes):

* ``snnkd-fp32``, ``snnkd-bf16``, ``snnkd-fp32-cl``, ``snnkd-bf16-cl``: exactly what
  ``snnkd_cli.train.loop.fit`` does per step, through its ``train_step``: ``reset_state(model)``,
  ``DistillTask(teacher, T)(model, x, y)`` (the full-range loss) under ``precision.autocast``,
  backward, SGD step (``-cl``: model and batch in channels-last, as ``--channels-last``).
* ``ref-fp32``: a plain reference in the paper's code style: single-step spikingjelly
  ``LIFNode`` (``step_mode='s'``), conv/BN applied per step in a Python loop over T, the
  stem included, the same full-range loss, fp32, eager.
* ``snnkd-fp32-compile``, ``snnkd-bf16-compile`` (only when named): the same with the model
  through ``train.loop.compile_for_training`` (``--compile``); the warm-up rounds compile.
* ``snnkd-bf16-lifbf16`` (only when named): ``--neuron-precision autocast``, the LIF state in bf16 and
  spikingjelly's bf16 path (the default ``snnkd-bf16`` keeps the neurons in fp32).
* ``ann-fp32``, ``ann-bf16``: the ANN floor: an ANN ResNet-18 of the student's shape trained
  on the T*B images in one forward/backward (cross-entropy), plus the teacher's forward.

Timing: variants are interleaved (round-robin, one step each per round) in one process;
each variant's figure is the median over ``--steps`` timed rounds after ``--warmup`` rounds.
Memory: each variant runs in its own fresh subprocess; the figure is the
peak RSS (``VmHWM``, reset at the child's start via ``/proc/self/clear_refs`` because Linux
carries the parent's peak across fork+exec; ``ru_maxrss`` where that is unavailable)
after setup + 2 steps minus the RSS just before the first step
(models, optimizer and batch already built), i.e. the step's own transient memory; the
total peak RSS is reported too. On CUDA: ``torch.cuda.max_memory_allocated`` instead.

Epoch mode (``--epoch``, ``bench/_epoch.py``): one whole ``snnkd distill`` run (R18 at T=4 from an R34, batch 64,
CIFAR-10-sized synthetic data, one epoch), its wall time beside the sum of its training steps, and where the rest
goes; its own options (``python bench/step.py --epoch --help``).

Usage: ``python bench/step.py [--T 4 6] [--batch 16 32] [--steps 3] [--json out.json]``,
``python bench/step.py --epoch [--train-images 50000 --val-images 10000] [--json epoch.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import neuron, surrogate
from torch import nn

from snnkd_cli.kd.losses import full_range_kd_loss
from snnkd_cli.kd.tasks import DistillTask
from snnkd_cli.models.contract import reset_state
from snnkd_cli.models.neurons import set_neuron_precision
from snnkd_cli.models.registry import create_model
from snnkd_cli.precision import autocast, grad_scaler
from snnkd_cli.train.loop import Optimiser, compile_for_training, param_groups, train_step

VARIANTS = ["snnkd-fp32", "snnkd-bf16", "snnkd-fp32-cl", "snnkd-bf16-cl", "ref-fp32", "ann-fp32", "ann-bf16"]
# --compile (train.loop.compile_for_training): not in the default set, the first step compiles for minutes on a CPU
COMPILED = ["snnkd-fp32-compile", "snnkd-bf16-compile"]
# --neuron-precision autocast (LIF state in bf16; the default keeps it in fp32): named to compare
NEURON_BF16 = ["snnkd-bf16-lifbf16"]
NUM_CLASSES, SIZE = 10, 32


# --------------------------------------------------------------------------- reference
# Paper code style: single-step neurons, each layer applied to [B, ...] at every step.


def _lif() -> neuron.LIFNode:
    return neuron.LIFNode(
        tau=2.0, decay_input=False, v_reset=0.0, surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="s"
    )


class RefBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        # Same attribute names/nesting as snnkd's BasicBlock so the state_dicts match.
        self.conv1 = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))
        self.act1 = _lif()
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))
        else:
            self.shortcut = nn.Identity()
        self.act2 = _lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, ...], one step
        return self.act2(self.conv2(self.act1(self.conv1(x))) + self.shortcut(x))


class RefResNet18(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64))
        self.stem_act = _lif()
        blocks, c = [], 64
        for w, s in zip([64, 128, 256, 512], [1, 2, 2, 2], strict=True):
            for i in range(2):
                blocks.append(RefBlock(c, w, s if i == 0 else 1))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.head = nn.Sequential(nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        out = []
        for _ in range(T):  # the same static image at every step
            h = self.stem_act(self.stem(x))
            out.append(self.head(self.pool(self.blocks(h))))
        return torch.stack(out)  # [T, B, C]


def reset_ref(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, neuron.BaseNode):
            m.reset()


# --------------------------------------------------------------------------- variants


class Bench:
    """One variant's models, optimizer, batch and step function."""

    def __init__(self, variant: str, T: int, B: int, device: torch.device, seed: int = 0) -> None:
        self.variant, self.T, self.B, self.device = variant, T, B, device
        torch.manual_seed(seed)
        self.teacher = create_model("resnet34", NUM_CLASSES, kind="ann").to(device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.x = torch.randn(B, 3, SIZE, SIZE, device=device)
        self.y = torch.randint(0, NUM_CLASSES, (B,), device=device)
        self.precision = "bf16" if "bf16" in variant else "fp32"
        kind = variant.split("-")[0]
        self.kind = kind
        if kind == "snnkd":
            self.model = create_model("resnet18", NUM_CLASSES).to(device)
            if "-lifbf16" in variant:  # --neuron-precision autocast: the LIF state in bf16 (spikingjelly's default)
                set_neuron_precision(self.model, "autocast")
            if variant.endswith("-cl"):
                self.model = self.model.to(memory_format=torch.channels_last)
                self.x = self.x.contiguous(memory_format=torch.channels_last)
            self.task = DistillTask(self.teacher, T)
            self.net = compile_for_training(self.model) if variant.endswith("-compile") else self.model
        elif kind == "ref":
            self.model = RefResNet18(NUM_CLASSES).to(device)
        elif kind == "ann":
            self.model = create_model("resnet18", NUM_CLASSES, kind="ann").to(device)
            self.xa = self.x.unsqueeze(0).expand(T, *self.x.shape).reshape(T * B, 3, SIZE, SIZE).contiguous()
            self.ya = self.y.repeat(T)
        else:
            raise SystemExit(f"unknown variant {variant}")
        self.model.train()
        self.opt = torch.optim.SGD(param_groups(self.model, 5e-4), lr=0.1, momentum=0.9)
        constant = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda _: 1.0)
        self.optim = Optimiser(self.opt, constant, grad_scaler(self.precision, device))

    def step(self) -> float:
        m, opt = self.model, self.opt
        if self.kind == "snnkd":  # the engine's own step (train.loop.train_step), as fit runs it
            loss, _ = train_step(m, self.task, self.x, self.y, self.optim, self.precision, self.device, self.net)
            return float(loss)
        if self.kind == "ref":
            reset_ref(m)
            s = m(self.x, self.T)  # [T, B, C]
            with torch.no_grad():
                z = self.teacher(self.x)
            loss = full_range_kd_loss(s, z, self.y)
        else:
            with autocast(self.precision, self.device):
                logits = m(self.xa)  # [T*B, C]
                with torch.no_grad():
                    self.teacher(self.x)
            loss = F.cross_entropy(logits.float(), self.ya)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def equal_work_check(T: int, B: int, device: torch.device) -> dict:
    """snnkd's loss and the reference's loss on the same weights and batch, fp32.

    BN in eval mode (running statistics): in train mode the reference normalises each step's
    batch of B separately (single-step BN) while snnkd normalises over T*B, which is a
    different statistic, not different work. The train-mode difference is reported too.
    """
    torch.manual_seed(1)
    snn = create_model("resnet18", NUM_CLASSES).to(device)
    ref = RefResNet18(NUM_CLASSES).to(device)
    ref.load_state_dict(snn.state_dict())
    teacher = create_model("resnet34", NUM_CLASSES, kind="ann").to(device).eval()
    # Non-trivial running stats and scaled-up input so that neurons actually fire.
    with torch.no_grad():
        for bn in [mod for mod in snn.modules() if isinstance(mod, nn.BatchNorm2d)]:
            bn.running_var.fill_(0.05)  # ~30% of neurons fire per step
        ref.load_state_dict(snn.state_dict())
    x = 2.0 * torch.randn(B, 3, SIZE, SIZE, device=device)
    y = torch.randint(0, NUM_CLASSES, (B,), device=device)
    out = {}
    for mode in ("eval", "train"):
        snn.train(mode == "train")
        ref.train(mode == "train")
        with torch.no_grad():
            reset_state(snn)
            a = DistillTask(teacher, T)(snn, x, y)[0]["loss"].item()
            reset_ref(ref)
            b = full_range_kd_loss(ref(x, T), teacher(x), y).item()
        out[mode] = {"snnkd": a, "ref": b, "rel_diff": abs(a - b) / max(abs(b), 1e-12)}
    out["ok"] = out["eval"]["rel_diff"] < 1e-4
    return out


def memory_of(variant: str, T: int, B: int, device: torch.device) -> dict:
    """Run one variant in a fresh subprocess; return its peak memory figures (MiB)."""
    cmd = [sys.executable, __file__, "--_mem", variant, "--T", str(T), "--batch", str(B)]
    cmd += ["--threads", str(torch.get_num_threads())]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ})
    return json.loads(res.stdout.strip().splitlines()[-1])


def _peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM (reset at start, see below), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _mem_child(variant: str, T: int, B: int, device: torch.device) -> None:
    # Linux keeps the parent's peak RSS across fork+exec (ru_maxrss, VmHWM): reset it.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    bench = Bench(variant, T, B, device)
    with open("/proc/self/statm") as f:
        before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    for _ in range(2):
        bench.step()
    sync(device)
    peak = _peak_rss_mib()
    out = {"rss_before_mib": before, "peak_rss_mib": peak, "step_rss_mib": peak - before}
    if device.type == "cuda":
        out["cuda_step_mib"] = torch.cuda.max_memory_allocated() / 2**20 - base
    print(json.dumps(out))


def machine() -> dict:
    model = platform.processor()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    info = {
        "cpu": model,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main() -> None:
    if "--epoch" in sys.argv[1:]:  # one whole distill run timed by parts: its own options
        from _epoch import main as epoch_main

        sys.exit(epoch_main([a for a in sys.argv[1:] if a != "--epoch"]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epoch", action="store_true", help="one whole distill run timed by parts (--epoch --help)")
    ap.add_argument("--T", type=int, nargs="+", default=[4])
    ap.add_argument("--batch", type=int, nargs="+", default=[16])
    ap.add_argument("--steps", type=int, default=3, help="timed rounds per configuration (median)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    ap.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS + COMPILED + NEURON_BF16)
    ap.add_argument("--no-memory", action="store_true", help="skip the per-variant subprocess memory runs")
    ap.add_argument("--no-check", action="store_true", help="skip the equal-loss check")
    ap.add_argument("--memory-only", action="store_true", help="only the per-variant subprocess memory runs")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--_mem", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args._mem:
        _mem_child(args._mem, args.T[0], args.batch[0], device)
        return

    report = {"machine": machine(), "argv": sys.argv, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(report["machine"]))
    if not args.no_check:
        chk = equal_work_check(args.T[0], min(args.batch), device)
        report["loss_check"] = chk
        print(
            f"loss check (fp32, same weights and batch, T={args.T[0]}): "
            f"eval-mode BN snnkd={chk['eval']['snnkd']:.6f} ref={chk['eval']['ref']:.6f} "
            f"rel diff={chk['eval']['rel_diff']:.2e} -> {'OK' if chk['ok'] else 'MISMATCH'}; "
            f"train-mode BN rel diff={chk['train']['rel_diff']:.2e} (per-step vs T*B batch statistics)"
        )
    results = []
    for T in args.T:
        for B in args.batch:
            benches = {} if args.memory_only else {v: Bench(v, T, B, device) for v in args.variants}
            times = {v: [] for v in args.variants}
            for r in range(0 if args.memory_only else args.warmup + args.steps):
                for v, b in benches.items():  # interleaved
                    sync(device)
                    t0 = time.perf_counter()
                    b.step()
                    sync(device)
                    if r >= args.warmup:
                        times[v].append(time.perf_counter() - t0)
            del benches
            row = {"T": T, "batch": B, "variants": {}}
            for v in args.variants:
                med = statistics.median(times[v]) if times[v] else float("nan")
                row["variants"][v] = {"median_s": med, "times_s": times[v]}
            if not args.no_memory:
                for v in args.variants:
                    row["variants"][v].update(memory_of(v, T, B, device))
            results.append(row)
            print_row(row)
    report["results"] = results
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")


def print_row(row: dict) -> None:
    v = row["variants"]
    ref = v.get("ref-fp32")
    print(f"\nT={row['T']} batch={row['batch']}")
    print(f"{'variant':<15}{'step s':>9}{'ref/this':>10}{'this/ann':>10}{'step MiB':>10}{'mem/ref':>9}{'peak MiB':>10}")
    for name, r in v.items():
        ann = v.get("ann-bf16" if "bf16" in name else "ann-fp32")
        speed = f"{ref['median_s'] / r['median_s']:.2f}x" if ref else "-"
        floor = f"{r['median_s'] / ann['median_s']:.2f}x" if ann else "-"
        mem = r.get("cuda_step_mib", r.get("step_rss_mib"))
        rmem = ref.get("cuda_step_mib", ref.get("step_rss_mib")) if ref else None
        mems = f"{mem:.0f}" if mem is not None else "-"
        mratio = f"{mem / rmem:.2f}x" if mem is not None and rmem else "-"
        peak = f"{r['peak_rss_mib']:.0f}" if "peak_rss_mib" in r else "-"
        print(f"{name:<15}{r['median_s']:>9.3f}{speed:>10}{floor:>10}{mems:>10}{mratio:>9}{peak:>10}")


if __name__ == "__main__":
    main()
