"""snnkd on a CUDA device in one run (under 8 minutes on one GPU): kernels, step times, sweep, torchrun.

1. ``lif``: which code spikingjelly's multi-step LIF runs for each student and precision (its ``sj_lif``
   CUDA/Triton kernel, or a Python loop over T); exits 1 if a profile snnkd uses by default (LIF state in
   fp32) loops in Python on CUDA. On a CPU it reports spikingjelly's CPU path and does not fail.
2. ``steps``: one distillation step through the engine's ``train_step`` (as ``bench/step.py``) for the CIFAR
   recipe (spiking ResNet-18, T=6, ANN ResNet-34 teacher, batch 128, 32x32, 10 classes) and the ImageNet
   student (``preact_resnet34``, T=4, batch 64, 224x224, 1000 classes) at ``fp32``, ``bf16`` (autocast, LIF
   state fp32: snnkd's default) and ``bf16-lifbf16`` (LIF state bf16), each eager, channels-last (``-cl``) and
   compiled with channels-last (``-compile-cl``), beside the ANN floor (the same network with ReLU, trained on
   the T*B images, plus the teacher's forward) at the same precision and mode. Images per second, step time,
   peak CUDA memory (``torch.cuda.max_memory_allocated`` of the timed steps; n/a on a CPU).
3. ``sweep``: ``eval-sweep`` T=1..8 in one pass against one evaluation at T=8 (``bench/sweep.py``'s timing).
4. ``torchrun``: ``snnkd train-teacher``, then one ``snnkd distill`` epoch (``--max-steps``) on ``synthetic``
   under ``torchrun`` and ``snnkd eval-sweep`` of its checkpoint, through the CLI: pass/fail and times.
5. ``memory``: ``bench/memory.py``'s table: the CIFAR student's step memory (``max_memory_allocated``) and time at
   T = 2, 4, 8, 16 for each ``--memopt`` setting (level 4 on CUDA), ratios to ``off``, weights vs ``off``, MiB per
   timestep. Left out of a CPU ``--small`` run unless ``--parts`` names it (a process per point there).

Prints one table of the steps and one of the memory (markdown) and writes everything as JSON (``--out``).

Usage: ``python bench/gpu.py [--small] [--device cpu] [--variants 'cifar-*'] [--skip-compile] [--out F]``
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import memory  # bench/memory.py
import torch
from _gpu_parts import MODES, Shape, all_variants, lif_check, select, shapes, time_steps
from step import machine
from sweep import firing, time_sweep

from snnkd_cli.data.loaders import make_loader
from snnkd_cli.data.synthetic import SyntheticImages
from snnkd_cli.fsutil import atomic_write_bytes
from snnkd_cli.models.registry import build_model

PARTS = ("lif", "sweep", "torchrun", "memory", "steps")
# bench/memory.py's options for --small: two T, off and memory, a width-4 student on 8 px
MEMORY_SMALL = [
    *("--T", "1", "2", "--batch", "2", "--size", "8", "--width", "4"),
    *("--steps", "1", "--settings", "off", "memory"),
]
SWEEP_T = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cuda (default when there is one) or cpu",
    )
    ap.add_argument(
        "--small",
        action="store_true",
        help="tiny shapes (width 8, batch 2, 16/32 px, T=2, 2 timed steps): a CPU smoke run in well under a "
        "minute (without compiled variants unless --variants names them)",
    )
    ap.add_argument(
        "--variants",
        nargs="+",
        metavar="PATTERN",
        help="only the step variants matching these shell patterns, e.g. 'cifar-*' 'imagenet-snn-bf16*' (names: "
        "{cifar,imagenet}-{snn,ann}-{fp32,bf16,bf16-lifbf16}[-cl|-compile-cl]; default: all)",
    )
    ap.add_argument("--skip-compile", action="store_true", help="leave out the compiled (-compile-cl) variants")
    ap.add_argument("--steps", type=int, help="timed steps per variant (default 10; --small: 2)")
    ap.add_argument(
        "--warmup", type=int, help="untimed steps first, where a compiled variant compiles (default 3; --small: 1)"
    )
    ap.add_argument(
        "--parts", nargs="+", choices=PARTS, help="what to run (default: all; a CPU --small run: all but memory)"
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=360.0,
        help="seconds from the start after which no further step variant starts (they are listed as skipped)",
    )
    ap.add_argument("--nproc", type=int, default=1, help="torchrun processes for the distill run (default 1)")
    ap.add_argument(
        "--threads", type=int, help="torch threads here and in the snnkd runs (default: torch's and snnkd's own)"
    )
    ap.add_argument("--out", default="runs/gpu/gpu.json", help="where the JSON goes (default runs/gpu/gpu.json)")
    args = ap.parse_args(argv)
    args.steps = args.steps or (2 if args.small else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.small else 3)
    if args.parts is None:
        args.parts = [p for p in PARTS if p != "memory" or not (args.small and args.device == "cpu")]
    return args


def header(device: torch.device, argv: list[str]) -> dict:
    """Date, device name and versions."""
    info = machine()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else info["cpu"]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "argv": argv,
        "device": {"type": device.type, "name": name},
        "versions": {
            "torch": torch.__version__,
            "spikingjelly": importlib.metadata.version("spikingjelly"),
            "cuda": torch.version.cuda,
            "python": info["python"],
        },
        "threads": torch.get_num_threads(),
    }


def sweep_part(shape: Shape, device: torch.device, small: bool) -> dict:
    """``eval-sweep`` 1..8 in one pass vs one evaluation at T=8 (and vs 8 separate ones) on the CIFAR student
    (BN running variance set so that it fires), over synthetic images through snnkd's loader."""
    cfg = shape.config("fp32")
    model = firing(build_model(cfg.model).to(device))
    n, batch = (8, 4) if small else (2048, 256)
    data = SyntheticImages(n, shape.num_classes, size=shape.size, split_seed=1)
    loader = make_loader(data, batch, train=False, workers=0, seed=0, device=device)
    out = time_sweep(model, loader, SWEEP_T, device, repeats=1 if small else 2)
    # equal in exact arithmetic; on a GPU the runs at each T have other shapes, so other kernels and roundings
    diff = max(abs(a - b) for a, b in zip(out["top1_one_pass"], out["top1_separate"], strict=True))
    return {"images": n, "batch": batch, "max_T": SWEEP_T, **out, "max_top1_diff": diff}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_part(device: torch.device, args: argparse.Namespace, work: Path) -> dict:
    """``train-teacher``, ``distill`` under torchrun, ``eval-sweep``: one real run through the CLI (stops at a
    failure). With one process snnkd creates no process group; with more: nccl on CUDA, gloo on a CPU."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if device.type == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # snnkd picks CUDA when it sees one
    snnkd = [sys.executable, "-m", "snnkd_cli"]
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(args.nproc)]
    run += ["--master-port", str(_free_port()), "-m", "snnkd_cli"]
    common = ["--dataset", "synthetic", "--epochs", "1", "--max-steps", "2" if args.small else "20"]
    common += ["--batch-size", str((16 if args.small else 64) * args.nproc)] + (["--width", "8"] if args.small else [])
    common += ["--threads", str(args.threads)] if args.threads else []
    student = work / "student" / "best.safetensors"
    stages = [
        (
            "train-teacher",
            [*snnkd, "train-teacher", *common, "--out", str(work / "teacher")],
            work / "teacher" / "best.safetensors",
        ),
        (
            "distill (torchrun)",
            [*run, "distill", *common, *(["--T", "2"] if args.small else [])]
            + ["--teacher", str(work / "teacher" / "best.safetensors"), "--out", str(work / "student")],
            student,
        ),
        (
            "eval-sweep",
            [*snnkd, "eval-sweep", str(student), "--max-T", str(SWEEP_T), "--json", str(work / "s.json")],
            None,
        ),
    ]
    rows = []
    for name, cmd, made in stages:
        t0 = time.perf_counter()
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        ok = res.returncode == 0 and (made is None or made.exists())
        if ok and name == "eval-sweep":
            ts = [r["T"] for r in json.loads((work / "s.json").read_text())["checkpoints"][0]["results"]]
            ok = ts == list(range(1, SWEEP_T + 1))
        row = {"stage": name, "ok": ok, "seconds": time.perf_counter() - t0, "returncode": res.returncode}
        rows.append(row if ok else row | {"stderr_tail": res.stderr[-2000:]})
        if not ok:
            break
    backend = "one process, no process group" if args.nproc == 1 else "nccl" if device.type == "cuda" else "gloo"
    ok = len(rows) == len(stages) and all(r["ok"] for r in rows)
    return {"ok": ok, "nproc": args.nproc, "backend": backend, "stages": rows}


def memory_part(device: torch.device, args: argparse.Namespace, deadline: float) -> dict:
    """``bench/memory.py`` at its full size (``--small``: :data:`MEMORY_SMALL`), points not started by ``deadline``
    listed as skipped."""
    opts = memory.parse_args([*(MEMORY_SMALL if args.small else []), "--device", device.type])
    opts.threads = args.threads
    return memory.measure_all(opts, device, deadline)


def table(report: dict) -> str:
    """The step variants as one markdown table (ms per step, images/s, peak MiB, time over the ANN floor),
    grouped by shape and precision with each ANN floor beside its students."""
    head = [
        "| variant | T | batch | size | ms/step | images/s | peak MiB | x ANN |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    rows = report.get("steps", {}).get("variants", {})
    order = sorted(rows, key=lambda n: (rows[n]["shape"], rows[n]["precision"][:4], MODES.index(rows[n]["mode"]), n))
    lines = []
    for name in order:
        r = rows[name]
        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "n/a"
        over = "floor" if r["kind"] == "ann" else f"{r['over_ann']:.2f}" if r["over_ann"] is not None else "-"
        ms, ips = 1e3 * r["step_s"], r["images_per_s"]
        lines.append(f"| {name} | {r['T']} | {r['batch']} | {r['size']} | {ms:.1f} | {ips:.1f} | {peak} | {over} |")
    return "\n".join(head + lines)


def summary(report: dict) -> list[str]:
    """One line per check: the LIF code, the sweep ratio, the torchrun run, skipped variants."""
    out = []
    if "lif" in report:
        lif = report["lif"]
        paths = sorted({f"{p['precision']}: {p['implementation']}" for p in lif["profiles"]})
        sel = ", ".join(f"{k} {v}" for k, v in lif["neuron_implementation"].items())
        out.append(f"LIF {'OK' if lif['ok'] else 'FAIL'} (sj_lif selects: {sel}): " + "; ".join(paths))
    if "sweep" in report:
        s = report["sweep"]
        out.append(
            f"sweep T=1..{s['max_T']}: one pass / one T={s['max_T']} evaluation = "
            f"{s['ratio_one_pass_over_single']:.2f}x, {s['max_T']} separate / one pass = "
            f"{s['ratio_separate_over_one_pass']:.2f}x, "
            f"top-1 equal at every T: {s['same_top1_every_T']} (largest difference {s['max_top1_diff']:.2f} points)"
        )
    if "torchrun" in report:
        t = report["torchrun"]
        stages = ", ".join(f"{r['stage']} {'ok' if r['ok'] else 'FAILED'} {r['seconds']:.1f} s" for r in t["stages"])
        out.append(f"torchrun x{t['nproc']} ({t['backend']}): {'PASS' if t['ok'] else 'FAIL'}: {stages}")
    if "memory" in report:
        out += memory.summary(report["memory"])
    for name, why in report.get("steps", {}).get("skipped", {}).items():
        out.append(f"skipped {name}: {why}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device (use --device cpu)", file=sys.stderr)
        return 2
    shape_list = shapes(args.small)
    compiled = not args.skip_compile and not (args.small and device.type == "cpu" and not args.variants)
    try:
        variants = select(all_variants([s.name for s in shape_list]), args.variants, compiled)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = header(device, sys.argv if argv is None else ["bench/gpu.py", *argv])
    report["settings"] = {k: getattr(args, k) for k in ("small", "steps", "warmup", "budget", "nproc", "parts")}
    if not compiled and not args.skip_compile:
        report["settings"]["note"] = "compiled variants left out: --small on a CPU (name them in --variants)"
    if "lif" in args.parts:
        report["lif"] = lif_check(shape_list, device)
    if report.get("lif", {}).get("ok", True):  # a Python LIF loop on CUDA: nothing else is worth timing
        if "sweep" in args.parts:
            report["sweep"] = sweep_part(shape_list[0], device, args.small)
        if "torchrun" in args.parts:
            with tempfile.TemporaryDirectory(prefix="snnkd-gpu-") as work:
                report["torchrun"] = torchrun_part(device, args, Path(work))
        if "memory" in args.parts:
            report["memory"] = memory_part(device, args, start + args.budget)
        if "steps" in args.parts:
            report["steps"] = time_steps(variants, shape_list, device, args, start + args.budget)
    report["ok"] = all(report[p]["ok"] for p in ("lif", "torchrun") if p in report)
    report["seconds"] = time.perf_counter() - start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, json.dumps(report, indent=2).encode())
    print(
        f"\n{report['device']['name']} ({device.type}), torch {torch.__version__}, "
        f"spikingjelly {report['versions']['spikingjelly']}, {report['date']}\n"
    )
    print(table(report))
    if "memory" in report:
        print("\n" + memory.table({**report["memory"], "argv": report["argv"]}))
    print("\n" + "\n".join(summary(report)) + f"\nwrote {out} ({report['seconds']:.0f} s)")
    if not report.get("lif", {}).get("ok", True):
        print(
            "FAIL: spikingjelly's LIF runs a Python loop over T on CUDA for "
            + "; ".join(report["lif"]["problems"])
            + ": its CUDA/Triton kernels did not load (check the triton install and SJ_LIF_CUDA_IMPLEMENTATION)",
            file=sys.stderr,
        )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
