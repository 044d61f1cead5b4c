"""torchrun with 2 CPU processes (gloo) equals one process with the same global batch."""

import json
import os
import subprocess
import sys

import torch

from snnkd_cli.engine.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
COMMON = [
    "--epochs",
    "2",
    "--max-steps",
    "3",
    "--batch-size",
    "32",
    "--width",
    "8",
    "--lr",
    "0.01",
    "--precision",
    "fp32",
]


def run(args, nproc=None):
    cmd = [sys.executable, "-m", "snnkd_cli", *args]
    if nproc:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(nproc),
            "--master-port",
            "29517",
            "-m",
            "snnkd_cli",
            *args,
        ]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_two_gloo_processes_match_one_process(tmp_path):
    teacher = tmp_path / "teacher"
    run(["train-teacher", *COMMON, "--out", str(teacher)])
    args = ["distill", *COMMON, "--T", "2", "--teacher", str(teacher / "best.safetensors")]
    run([*args, "--out", str(tmp_path / "one")])
    two = run([*args, "--sync-bn", "--out", str(tmp_path / "two")], nproc=2)
    a = load_checkpoint(tmp_path / "one" / "last.safetensors").state
    b = load_checkpoint(tmp_path / "two" / "last.safetensors").state
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    # one set of files, one log line per epoch, one printed table (rank 0 only)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    logs = [json.loads(x) for x in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logs] == [1, 2]
    assert two.stdout.count("accuracy at every T") == 1
    assert "terminate called" not in two.stderr  # every rank leaves the process group cleanly
    # the validation sweep is gathered over both ranks: the same numbers as one process
    one_logs = [json.loads(x) for x in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    assert [r["val"] for r in logs] == [r["val"] for r in one_logs]


def test_world_size_must_divide_the_batch(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29518",
        "-m",
        "snnkd_cli",
        "train-teacher",
        "--batch-size",
        "33",
        "--out",
        str(tmp_path / "x"),
    ]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "error: --batch-size 33 is the global batch and must be divisible by the world size 2" in res.stderr
    assert "src/snnkd_cli/" not in res.stderr  # each rank's error is one line (torchrun adds its own report)
    assert not (tmp_path / "x").exists()
