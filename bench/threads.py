"""Training steps per second under thread settings: alone, and beside a second training process.

Each figure is one fresh subprocess (``--worker``) that trains an ANN ResNet-18 for ``--steps`` timed
steps (after 3 untimed ones) through snnkd's DataLoader (``make_loader``) with ``--workers`` loader
workers. "Competing" runs it beside a second copy of the same worker with the same setting, training
until the first is done (two jobs of one user on one machine); with ``--rival SETTING`` the second job has
that setting instead (``--rival torch``: another user's job with torch's defaults, which snnkd cannot
change; ``--rival matmul``: a plain torch matmul loop with torch's defaults). Settings:

* ``torch``: torch's defaults (one thread per core, OpenMP's active wait), what snnkd did before;
* ``snnkd``: what snnkd does now (``train.threads.set_threads(None)``: the usable cores, and OpenMP's
  passive wait, ``OMP_WAIT_POLICY=PASSIVE``, which the console script sets before torch loads);
* ``1-thread``: one thread, active wait; ``minus-workers``: passive wait and a core left per loader worker;
* ``snnkd-1-thread``: passive wait and one thread (``--threads 1``).

Usage: ``python bench/threads.py [--steps 20] [--workers 0 2] [--settings ...] [--rival torch] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {  # name: (threads for the worker: "torch", "snnkd", "minus" or a number; OMP_WAIT_POLICY or None)
    "torch": ("torch", None),
    "snnkd": ("snnkd", "PASSIVE"),
    "1-thread": (1, None),
    "minus-workers": ("minus", "PASSIVE"),
    "snnkd-1-thread": (1, "PASSIVE"),
}


def worker(args: argparse.Namespace) -> None:
    """Train and print ``{"steps_per_s", "threads"}`` (``--forever``: until killed, nothing printed)."""
    import torch

    from snnkd_cli.config import DataConfig
    from snnkd_cli.data import build_datasets
    from snnkd_cli.data.loaders import make_loader
    from snnkd_cli.models.registry import create_model
    from snnkd_cli.train.threads import set_threads, usable_cores

    if args.threads == "snnkd":
        set_threads(None)
    elif args.threads == "minus":  # a core left to each loader worker (not snnkd's default: measured)
        set_threads(max(1, usable_cores() - args.workers))
    elif args.threads != "torch":
        torch.set_num_threads(int(args.threads))
    torch.manual_seed(0)
    data = DataConfig(dataset="synthetic", synthetic_train=4096, synthetic_val=64, image_size=32)
    tr, _, info = build_datasets(data)
    loader = make_loader(tr, 32, train=True, workers=args.workers, seed=0, device=torch.device("cpu"))
    model = create_model("resnet18", info.num_classes, kind="ann", width=32)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def steps():
        while True:
            yield from loader

    it = steps()

    def step() -> None:
        x, y = next(it)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    if args.forever:
        while True:
            step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - t0
    print(json.dumps({"steps_per_s": args.steps / seconds, "threads": torch.get_num_threads()}))


MATMUL = "import torch\na = torch.randn(512, 512)\nwhile True:\n    a = torch.tanh(a @ a)"


def _worker_cmd(setting: str, workers: int) -> tuple[list[str], dict[str, str]]:
    threads, policy = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    return [sys.executable, __file__, "--worker", "--threads", str(threads), "--workers", str(workers)], env


def run(setting: str, workers: int, steps: int, competing: bool, rival_setting: str | None = None) -> dict:
    """One timed worker with ``setting``; ``competing``: beside a rival with ``rival_setting`` (None: the same)."""
    cmd, env = _worker_cmd(setting, workers)
    rival = None
    if competing:
        if rival_setting == "matmul":  # a plain torch loop with torch's defaults (the rival)
            r_cmd = [sys.executable, "-c", MATMUL]
            r_env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        else:
            r_cmd, r_env = _worker_cmd(rival_setting or setting, workers)
            r_cmd = [*r_cmd, "--forever"]
        rival = subprocess.Popen(r_cmd, env=r_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(8)  # the rival is past its start-up and training
    try:
        out = subprocess.run([*cmd, "--steps", str(steps)], env=env, capture_output=True, text=True, timeout=3600)
    finally:
        if rival is not None:
            rival.kill()
            rival.wait()
    if out.returncode:
        raise SystemExit(f"worker failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per figure")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers (one table row each)")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), help="what to compare")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument(
        "--rival",
        default=None,
        choices=[*SETTINGS, "matmul"],
        help="the second job's setting (default: the same as the timed one; torch: another user's training with "
        "torch's defaults; matmul: a plain torch matmul loop with torch's defaults)",
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--forever", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", default="torch", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.workers = args.workers[0]
        worker(args)
        return
    rows = []
    for workers in args.workers:
        for setting in args.settings:
            for competing in (False, True):
                r = run(setting, workers, args.steps, competing, args.rival)
                rows.append({"workers": workers, "setting": setting, "competing": competing, **r})
                print(json.dumps(rows[-1]), flush=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    where = f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {cores} cores"
    print(f"\n`python bench/threads.py {' '.join(sys.argv[1:])}` ({where}): ANN ResNet-18 width 32, batch 32, 32x32\n")
    beside = f"beside a job with the {args.rival} setting" if args.rival else "beside a second job"
    print(f"| loader workers | setting | threads | steps/s alone | steps/s {beside} | slowdown |")
    print("|---|---|---|---|---|---|")
    for workers in args.workers:
        for setting in args.settings:
            alone, shared = (
                next(r for r in rows if r["workers"] == workers and r["setting"] == setting and r["competing"] == c)
                for c in (False, True)
            )
            slow = alone["steps_per_s"] / shared["steps_per_s"]
            print(f"| {workers} | {setting} | {alone['threads']} | {alone['steps_per_s']:.2f} | "
                  f"{shared['steps_per_s']:.2f} | {slow:.1f}x |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"argv": sys.argv[1:], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
