"""Peak memory and step time of the CIFAR student over T for each ``--memopt`` setting, side by side in one run.

The CIFAR recipe's student (spiking ResNet-18 distilled from an ANN ResNet-34, the full-range loss) on a batch of
32 images of 32x32 (fp32 unless ``--precision``) at T = 2, 4, 8, 16, for each of ``--memopt off speed balanced
memory``. Each (T, setting) point is built as ``snnkd distill`` builds a run: the preset's student and teacher
(``bench/_gpu_parts.Shape``), ``train.run.make_task``, ``train.loop.build_optimiser``, then
``train.memopt.optimise`` (level 1 on a CPU, 4 on CUDA) on a loader of the batch; ``--warmup`` untimed steps and
``--steps`` timed ones of ``train.loop.train_step`` follow (median step time). Every point starts from the same
weights and trains on the same batch.

Memory. On a CPU each point runs in a fresh process. After the warm-up the child hands freed heap memory back
(glibc ``malloc_trim``), resets its peak RSS (``/proc/self/clear_refs``) and reads its RSS: "step MiB" is its peak
RSS (``VmHWM``) over the timed steps minus that RSS, what a training step adds to the models, optimiser state and
batch; "peak MiB" is the process's peak RSS over the timed steps. (Where /proc cannot be written the peak is the
whole child's ``ru_maxrss``.) On CUDA the points run in this process: ``torch.cuda.max_memory_allocated`` over the
timed steps, minus ``torch.cuda.memory_allocated`` before them.

Live bytes. A CPU's peak RSS also counts heap that glibc's allocator keeps after torch frees it (freed chunks
between live ones are not handed back, and its mmap threshold rises as large tensors are freed), so on a CPU each
point also runs one more step under ``torch.profiler`` (``profile_memory``) and reports "live MiB": the most bytes
torch's CPU allocator held at once during that step beyond what it held at the step's start, the CPU's counterpart
of CUDA's ``max_memory_allocated``. On CUDA the step MiB is that figure already.

Equality. Each point's weights and BatchNorm buffers after all its steps are compared with those of ``off`` at the
same T: the largest ``max|w - w_off| / max|w_off|`` over the floating-point tensors of the state dict.

Output: the JSON (``--json``), the markdown table (printed, and written beside the JSON as ``.md``): step MiB and
its ratio to ``off`` at the same T, ms per step and its ratio to ``off``, the weight difference; the slope of step
MiB against T per setting (least squares over the T points); a PNG (step MiB against T, one line per setting)
beside the JSON when matplotlib is installed.

Usage: ``python bench/memory.py --threads 1 [--T 2 4 8 16] [--settings off memory] [--precision bf16]``
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _gpu_parts import Shape
from safetensors.torch import load_file, save_file
from step import _peak_rss_mib, machine, sync
from torch.utils.data import DataLoader, TensorDataset

from snnkd_cli.models.neurons import set_neuron_precision
from snnkd_cli.models.registry import build_model
from snnkd_cli.train import memopt
from snnkd_cli.train.loop import build_optimiser, train_step
from snnkd_cli.train.report import Reporter
from snnkd_cli.train.run import make_task

SETTINGS = ("off", "speed", "balanced", "memory")
T_VALUES = (2, 4, 8, 16)


def add_options(ap: argparse.ArgumentParser) -> None:
    """The point's shape and schedule (also what a child process is given)."""
    ap.add_argument("--T", type=int, nargs="+", default=list(T_VALUES), help="timesteps (default 2 4 8 16)")
    ap.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS), help="--memopt settings")
    ap.add_argument("--batch", type=int, default=32, help="images per training step")
    ap.add_argument("--size", type=int, default=32, help="image height and width (px)")
    ap.add_argument("--width", type=int, default=None, help="network width (default: the preset's 64)")
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="training precision")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per point (median)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (at least 1)")
    ap.add_argument("--seed", type=int, default=0, help="the weights and batch of every point")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_options(ap)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--json", default="runs/memory/memory.json", help="the JSON; the .md and .png go beside it")
    ap.add_argument("--no-plot", action="store_true", help="write no PNG")
    ap.add_argument(
        "--preload",
        metavar="LIB",
        help="run each CPU point with LD_PRELOAD=LIB, another malloc (say libtcmalloc_minimal.so.4); its cache "
        "survives the warm-up, so compare the peak and live MiB, not the step MiB",
    )
    ap.add_argument("--weights-dir", help="keep each point's weights here (T<T>-<setting>.safetensors)")
    ap.add_argument("--_point", nargs=2, metavar=("T", "SETTING"), help=argparse.SUPPRESS)
    ap.add_argument("--_weights", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.preload and not Path(args.preload).is_file():
        ap.error(f"--preload {args.preload}: no such file (Debian: apt-get install libtcmalloc-minimal4)")
    if args.warmup < 1 or args.steps < 1:
        ap.error("--warmup and --steps must be >= 1 (the baseline is read after the warm-up)")
    return args


@dataclasses.dataclass
class Point:
    """One (T, setting): the student (memopt applied), its task and optimiser, the batch, what memopt did."""

    model: torch.nn.Module
    task: object
    optim: object
    x: torch.Tensor  # [B, 3, size, size]
    y: torch.Tensor  # [B]
    precision: str
    level: int
    note: str


def build(T: int, setting: str, args: argparse.Namespace, device: torch.device) -> Point:
    """The point as ``snnkd distill`` builds its run: the same weights and batch for every point (``args.seed``)."""
    shape = Shape("cifar", "cifar10", 10, args.size, args.batch, T=T, width=args.width)
    cfg = shape.config(args.precision)
    cfg.train.memopt, cfg.train.memopt_level = setting, memopt.resolve_level(setting, device)
    torch.manual_seed(args.seed)
    teacher = shape.teacher(device)
    model = build_model(cfg.model).to(device)
    set_neuron_precision(model, cfg.train.neuron_precision)
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g)
    y = torch.randint(0, shape.num_classes, (args.batch,), generator=g)
    note = "memopt off"
    if cfg.train.memopt_level:
        loader = DataLoader(TensorDataset(x, y), batch_size=args.batch)
        note = memopt.optimise(model, loader, cfg.train, device, temporal=False)
    model.train()
    optim = build_optimiser(model, cfg.train, args.warmup + args.steps, device, Reporter(), quiet=True)
    task = make_task(cfg, teacher, temporal=False)
    return Point(model, task, optim, x.to(device), y.to(device), args.precision, cfg.train.memopt_level, note)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_baseline() -> float | None:
    """Freed heap memory handed back, the peak RSS reset to the RSS now; that RSS (None where /proc refuses)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _rss_mib()
    except OSError:
        return None


def live_peak_mib(fn) -> float:
    """The most MiB torch's CPU allocator held at once while ``fn()`` ran, beyond what it held when ``fn`` began
    (the profiler's allocation and free events in time order, summed)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, n in events:
        live += n
        peak = max(peak, live)
    return peak / 2**20


def measure(T: int, setting: str, args: argparse.Namespace, device: torch.device, weights: Path) -> dict:
    """Build the point, run its steps, write its weights to ``weights``; its figures (MiB, seconds)."""
    p = build(T, setting, args, device)
    step = (p.model, p.task, p.x, p.y, p.optim, p.precision, device)
    for _ in range(args.warmup):
        train_step(*step)
    sync(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) / 2**20
    else:
        base = _cpu_baseline()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        train_step(*step)
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _peak_rss_mib()
    live = None if cuda else live_peak_mib(lambda: train_step(*step))  # one more step, after the RSS is read
    memopt.remove(p.model)
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in p.model.state_dict().items()}, str(weights))
    kind = "cuda max_memory_allocated" if cuda else "peak RSS (VmHWM)" if base is not None else "ru_maxrss"
    return {
        "T": T,
        "setting": setting,
        "level": p.level,
        "note": p.note,
        "memory_mib": peak - (base or 0.0),
        "peak_mib": peak,
        "base_mib": base,
        "memory_kind": kind,
        "live_mib": live,
        "step_s": statistics.median(times),
        "times_s": times,
    }


def _child(T: int, setting: str, args: argparse.Namespace, weights: Path) -> dict:
    """:func:`measure` in a fresh process (a CPU's peak RSS is per process); ``{"error": ...}`` if it fails."""
    cmd = [sys.executable, __file__, "--_point", str(T), setting, "--_weights", str(weights), "--device", "cpu"]
    for key in ("batch", "size", "width", "precision", "steps", "warmup", "seed"):
        if getattr(args, key) is not None:
            cmd += [f"--{key}", str(getattr(args, key))]
    cmd += ["--threads", str(args.threads or torch.get_num_threads())]
    env = os.environ | ({"LD_PRELOAD": args.preload} if getattr(args, "preload", None) else {})
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return {"T": T, "setting": setting, "error": f"exit {res.returncode}: {res.stderr.strip()[-800:]}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def weight_diff(a: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> float:
    """The largest ``max|a - ref| / max|ref|`` over the floating-point tensors (0 where ``ref`` is all zeros and
    ``a`` equals it)."""
    worst = 0.0
    for key, r in ref.items():
        if not r.is_floating_point():
            continue
        d = (a[key].double() - r.double()).abs().max().item()
        scale = r.double().abs().max().item()
        worst = max(worst, d / scale if scale > 0 else (0.0 if d == 0 else float("inf")))
    return worst


def run_points(args: argparse.Namespace, device: torch.device, deadline: float | None = None) -> list[dict]:
    """Every (T, setting) point (``off`` first at each T), fresh processes on a CPU, in this one on CUDA; a point
    not started by ``deadline`` (``time.perf_counter()``) is listed with an ``error``."""
    points = []
    order = sorted(args.settings, key=SETTINGS.index)
    keep = getattr(args, "weights_dir", None)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
    folder = contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="snnkd-memory-")
    with folder as work:
        for T in args.T:
            for setting in order:
                path = Path(work) / f"T{T}-{setting}.safetensors"
                if deadline is not None and time.perf_counter() > deadline:
                    points.append({"T": T, "setting": setting, "error": "time budget spent"})
                    continue
                if device.type == "cuda":
                    try:
                        points.append(measure(T, setting, args, device, path))
                    except torch.OutOfMemoryError as e:
                        points.append({"T": T, "setting": setting, "error": str(e).splitlines()[0]})
                    gc.collect()
                    torch.cuda.empty_cache()
                else:
                    points.append(_child(T, setting, args, path))
                print(_progress_line(points[-1]), flush=True)
            _compare_weights([p for p in points if p["T"] == T], Path(work), T)
    return summarise(points)


def _progress_line(p: dict) -> str:
    if "error" in p:
        return f"T={p['T']} {p['setting']}: {p['error'].splitlines()[-1]}"
    return f"T={p['T']} {p['setting']}: {p['memory_mib']:.0f} MiB, {1e3 * p['step_s']:.0f} ms/step"


def _compare_weights(points: list[dict], work: Path, T: int) -> None:
    off = work / f"T{T}-off.safetensors"
    ref = load_file(str(off)) if off.exists() else None
    for p in points:
        if "error" not in p:
            path = work / f"T{T}-{p['setting']}.safetensors"
            p["weight_diff"] = weight_diff(load_file(str(path)), ref) if ref is not None else None


def slope(xs: list[float], ys: list[float]) -> float | None:
    """The least-squares slope of ``ys`` against ``xs`` (None with fewer than two distinct ``xs``)."""
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def summarise(points: list[dict]) -> list[dict]:
    """Each point's memory and step time over ``off``'s at the same T (None without an ``off`` figure)."""
    off = {p["T"]: p for p in points if p["setting"] == "off" and "error" not in p}
    for p in points:
        base = off.get(p["T"])
        ok = "error" not in p and base is not None
        p["mem_ratio"] = p["memory_mib"] / base["memory_mib"] if ok and base["memory_mib"] > 0 else None
        p["time_ratio"] = p["step_s"] / base["step_s"] if ok else None
        live = ok and p.get("live_mib") is not None and (base.get("live_mib") or 0) > 0
        p["live_ratio"] = p["live_mib"] / base["live_mib"] if live else None
    return points


def slopes(points: list[dict], key: str = "memory_mib") -> dict[str, float | None]:
    """MiB per timestep of each setting: the least-squares slope of its ``key`` (step memory) against T; None
    where a point lacks the figure."""
    out = {}
    for s in dict.fromkeys(p["setting"] for p in points):
        good = [p for p in points if p["setting"] == s and "error" not in p]
        ys = [p.get(key) for p in good]
        out[s] = None if None in ys else slope([p["T"] for p in good], ys)
    return out


def summary(result: dict) -> list[str]:
    """Lines for ``bench/gpu.py``: each setting's step memory over ``off``'s at the largest T measured, the largest
    weight difference from ``off``, then each point that failed."""
    good = [p for p in result["points"] if "error" not in p]
    out = []
    if good:
        top = max(p["T"] for p in good)
        at = [f"{p['setting']} {_fmt(p['mem_ratio'], '.2f', 'x')}" for p in good if p["T"] == top]
        worst = max((p["weight_diff"] for p in good if p.get("weight_diff") is not None), default=None)
        per_T = ", ".join(f"{s} {_fmt(v, '.1f')}" for s, v in result["slopes"].items())
        out.append(f"memory at T={top} over off's: {', '.join(at)}; MiB per timestep: {per_T}; "
                   f"largest weight difference from off: {_fmt(worst, '.1e')}")  # fmt: skip
    out += [f"memory T={p['T']} {p['setting']} failed: {p['error'].splitlines()[-1]}" for p in result["points"]
            if "error" in p]  # fmt: skip
    return out


def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def table(report: dict) -> str:
    """The points as one markdown table (grouped by T, ratios to ``off`` at the same T), then the slopes; the
    command line first where ``report`` has one."""
    lines = [f"`{' '.join(report['argv'])}`", ""] if report.get("argv") else []
    lines += [
        f"memory: {report['memory']}",
        "",
        "| T | memopt | level | step MiB | x off | ms/step | x off | weight diff | live MiB | x off |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for p in report["points"]:
        if "error" in p:
            lines.append(f"| {p['T']} | {p['setting']} | - | failed: {p['error'].splitlines()[-1][:80]} |||||||")
            continue
        mem, ms = _fmt(p["memory_mib"], ".0f"), _fmt(1e3 * p["step_s"], ".0f")
        mr, tr = _fmt(p["mem_ratio"], ".2f", "x"), _fmt(p["time_ratio"], ".2f", "x")
        lines.append(f"| {p['T']} | {p['setting']} | {p['level']} | {mem} | {mr} | {ms} | {tr} | "
                     f"{_fmt(p.get('weight_diff'), '.1e')} | {_fmt(p.get('live_mib'), '.0f')} | "
                     f"{_fmt(p.get('live_ratio'), '.2f', 'x')} |")  # fmt: skip
    live = report.get("live_slopes") or {}
    lines += ["", "| memopt | step MiB per timestep (least squares over T) | live MiB per timestep |", "|---|--:|--:|"]
    lines += [f"| {s} | {_fmt(v, '.1f')} | {_fmt(live.get(s), '.1f')} |" for s, v in report["slopes"].items()]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> Path | None:
    """Step MiB against T, one line per setting, dashed the live MiB where measured (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[plot]')")
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for s in report["slopes"]:
        good = [p for p in report["points"] if p["setting"] == s and "error" not in p]
        (line,) = ax.plot([p["T"] for p in good], [p["memory_mib"] for p in good], marker="o", label=f"--memopt {s}")
        if good and all(p.get("live_mib") is not None for p in good):
            xs, ys = [p["T"] for p in good], [p["live_mib"] for p in good]
            ax.plot(xs, ys, ls="--", marker=".", color=line.get_color(), label=f"{s}: live (torch's allocator)")
    ax.set(xlabel="timesteps T", ylabel="step memory (MiB)", title="ResNet-18 student, one training step")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def measure_all(args: argparse.Namespace, device: torch.device, deadline: float | None = None) -> dict:
    """The options, what the memory figure is, the points and the slopes (``bench/gpu.py``'s ``memory`` part)."""
    keys = ("T", "settings", "batch", "size", "width", "precision", "steps", "warmup", "seed")
    options = {k: getattr(args, k) for k in keys} | {"preload": getattr(args, "preload", None)}  # gpu.py has none
    report: dict = {"options": options | {"device": device.type}}
    report["memory"] = (
        "torch.cuda.max_memory_allocated over the timed steps minus the allocation before them"
        if device.type == "cuda"
        else "peak RSS over the timed steps minus the RSS before them, each point in a fresh process"
    )
    report["points"] = run_points(args, device, deadline)
    report["slopes"] = slopes(report["points"])
    report["live_slopes"] = slopes(report["points"], "live_mib")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args._point:
        T, setting = int(args._point[0]), args._point[1]
        print(json.dumps(measure(T, setting, args, device, Path(args._weights))))
        return 0
    argv = sys.argv if argv is None else ["bench/memory.py", *argv]
    report = {"argv": argv, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine()}
    report |= measure_all(args, device)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    md = table(report)
    out.with_suffix(".md").write_text(md + "\n")
    print("\n" + md)
    png = None if args.no_plot else plot(report, out.with_suffix(".png"))
    print(f"\nwrote {out}, {out.with_suffix('.md')}" + (f", {png}" if png else ""))
    return 0 if all("error" not in p for p in report["points"]) else 1


if __name__ == "__main__":
    sys.exit(main())
