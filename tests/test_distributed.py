"""torchrun with 2 CPU processes (gloo) equals one process with the same global batch."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from snnkd_cli.checkpoint import load_checkpoint

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


def free_port() -> int:
    """A port no one listens on now (fixed ports collide between concurrent test runs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
            str(free_port()),
            "-m",
            "snnkd_cli",
            *args,
        ]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


# torch's BN; spikingjelly's multi-step BN, for one step: later, spikes flipped by float rounding make the
# two runs drift apart (1e-3 after 6 steps), while the gradients of a step agree to 1e-6
@pytest.mark.parametrize(("arch", "steps"), [("resnet18", []), ("sew_resnet18", ["--epochs", "1", "--max-steps", "1"])])
@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path, arch, steps):
    teacher = tmp_path / "teacher"
    run(["train-teacher", *COMMON, "--out", str(teacher)])
    args = ["distill", *COMMON, *steps, "--T", "2", "--arch", arch, "--teacher", str(teacher / "best.safetensors")]
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
    assert [r["epoch"] for r in logs] == ([1] if steps else [1, 2])
    assert two.stdout.count("accuracy at every T") == 1
    assert "terminate called" not in two.stderr  # every rank leaves the process group cleanly
    # the validation sweep is gathered over both ranks: the same numbers as one process
    one_logs = [json.loads(x) for x in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    assert [r["val"] for r in logs] == [r["val"] for r in one_logs]


@pytest.mark.slow
def test_world_size_must_divide_the_batch(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
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


def test_sync_bn_converts_every_batchnorm_and_keeps_the_function():
    from spikingjelly.activation_based import functional

    from snnkd_cli.models.registry import create_model
    from snnkd_cli.train.distributed import CPUSyncBatchNorm, convert_sync_bn

    torch.manual_seed(0)
    net = create_model("sew_resnet18", 10, width=8)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert any(getattr(m, "step_mode", "s") == "m" for m in bns)  # spikingjelly's multi-step BN is there
    x = torch.rand(2, 4, 3, 16, 16)  # [T, B, C, H, W]
    before = net(x)
    functional.reset_net(net)
    synced = convert_sync_bn(net, torch.device("cpu"))
    after = [m for m in synced.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(after) == len(bns) and all(isinstance(m, CPUSyncBatchNorm) for m in after)
    torch.testing.assert_close(synced(x), before)  # one process: the same function, the same keys
    assert set(synced.state_dict()) == set(create_model("sew_resnet18", 10, width=8).state_dict())


@pytest.mark.parametrize(
    ("dataset", "sync_bn", "world", "want"),
    [
        ("imagenet", None, "2", True),  # the paper's ImageNet code always uses SyncBatchNorm
        ("imagenet", None, "1", False),  # one process: nothing to synchronise, no conversion
        ("imagenet", None, None, False),  # not under torchrun
        ("imagenet", False, "2", False),  # --no-sync-bn
        ("cifar10", False, "2", False),
        ("cifar10", True, "2", True),  # --sync-bn asked
        ("imagenet", True, "1", True),
        ("cifar10", None, "2", False),
    ],
)
def test_imagenet_recipe_syncs_bn_under_torchrun(monkeypatch, dataset, sync_bn, world, want):
    """The world size is read from torchrun's environment, as the training run does."""
    from snnkd_cli.config import from_preset
    from snnkd_cli.train.distributed import resolve_sync_bn

    if world is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world)
    for task in ("distill", "teacher"):
        assert resolve_sync_bn(from_preset(task, dataset, sync_bn=sync_bn)) is want


NAN_ON_RANK_1 = """
import os

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(4), nn.Linear(in_channels * 16, num_classes)
        self.calls = 0

    def forward(self, x):
        z = self.fc(self.pool(x).flatten(1))  # [B, C, H, W] -> [B, classes]
        if self.training:
            self.calls += 1
            if os.environ.get("RANK") == "1" and self.calls == 2:  # rank 1's second step only
                z = z * float("nan")
        return z


def factory(num_classes, in_channels=3, **kw):
    return Net(num_classes, in_channels)
"""


def test_a_loss_not_finite_on_one_rank_stops_every_rank_with_one_line(tmp_path):
    """A non-finite loss on rank 1 alone: every rank stops at the same step (the check is collective), rank 0
    prints the one error line and no rank dies inside a collective (which gave gloo's traceback, no line)."""
    (tmp_path / "nan_on_rank1.py").write_text(NAN_ON_RANK_1)
    args = ["train-teacher", "--arch", "nan_on_rank1:factory", "--epochs", "1", "--max-steps", "4"]
    args += ["--batch-size", "32", "--precision", "fp32", "--out", str(tmp_path / "out")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port())]
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), ENV.get("PYTHONPATH", "")])}
    res = subprocess.run([*cmd, "-m", "snnkd_cli", *args], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    lines = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert lines == [
        "error: loss is not finite on another process at epoch 1 step 2: lower --lr or use --precision fp32; "
        "the last good checkpoint is kept"
    ], res.stderr[-3000:]
    assert "Connection closed by peer" not in res.stderr and "[rank0]: Traceback" not in res.stderr
