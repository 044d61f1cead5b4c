"""The Python API on user modules, and the student-contract check."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from helpers import user_student
from snnkd_cli.cli.app import app
from snnkd_cli.data.synthetic import SyntheticImages
from snnkd_cli.errors import SnnkdError
from snnkd_cli.models import create_model
from snnkd_cli.models.contract import check_student, time_major


def test_api_distils_a_user_defined_student_and_sweeps(tmp_path):
    from snnkd_cli import distill, sweep

    torch.manual_seed(0)
    train = DataLoader(SyntheticImages(640, split_seed=0), batch_size=64, shuffle=True)
    val = DataLoader(SyntheticImages(200, split_seed=1), batch_size=100)
    teacher = create_model("resnet18", 10, kind="ann", width=8)
    student = user_student()
    result = distill(student, teacher, train, val, T=2, epochs=2, lr=0.05, verbose=False, out=tmp_path)
    rows = sweep(student, val, 4)
    assert [r["T"] for r in rows] == [1, 2, 3, 4]
    assert rows[1]["top1"] == result.history[-1]["val_top1"]  # the loop validated with the same sweep
    assert (tmp_path / "last.safetensors").exists()
    assert len(result.history) == 2 and result.history[-1]["loss"] < result.history[0]["loss"]
    res = CliRunner().invoke(app, ["eval-sweep", str(tmp_path / "best.safetensors"), "--dataset", "synthetic"])
    assert res.exit_code == 2 and "a module snnkd cannot rebuild" in res.stderr, res.output  # the one format, says why


def _api_run(out, dataset=None):
    from snnkd_cli import distill

    torch.manual_seed(0)
    train = DataLoader(SyntheticImages(96, split_seed=0), batch_size=32, shuffle=True)
    val = DataLoader(SyntheticImages(64, split_seed=1), batch_size=32)
    teacher = create_model("resnet18", 10, kind="ann", width=4)
    student = create_model("resnet18", 10, width=4)
    distill(student, teacher, train, val, T=2, epochs=1, verbose=False, out=out, dataset=dataset)
    return out / "best.safetensors"


@pytest.mark.slow
def test_a_checkpoint_of_the_api_opens_in_eval_sweep_export_and_predict(tmp_path):
    from PIL import Image

    from snnkd_cli.evaluation.evaluate import evaluate_checkpoint

    best = _api_run(tmp_path / "run", dataset="synthetic")
    j = tmp_path / "s.json"
    res = CliRunner().invoke(app, ["eval-sweep", str(best), "--max-T", "3", "--json", str(j)])
    assert res.exit_code == 0, res.output
    import json

    assert json.loads(j.read_text())["checkpoints"][0]["results"] == evaluate_checkpoint(best, 3)[1].rows
    out = tmp_path / "folded.safetensors"
    res = CliRunner().invoke(app, ["export", str(best), "-f", "safetensors", "--out", str(out)])
    assert res.exit_code == 0 and out.is_file(), res.output
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "x.png")
    res = CliRunner().invoke(app, ["predict", str(best), str(tmp_path / "x.png")])
    assert res.exit_code == 0 and "x.png" in res.stdout, res.output


def test_an_api_checkpoint_without_its_dataset_says_what_it_needs(tmp_path):
    best = _api_run(tmp_path / "run")
    res = CliRunner().invoke(app, ["eval-sweep", str(best)])
    assert res.exit_code == 2 and "pass --dataset" in res.stderr, res.output
    res = CliRunner().invoke(app, ["eval-sweep", str(best), "--dataset", "synthetic"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["predict", str(best), str(best)])
    assert res.exit_code == 2 and "dataset=NAME" in res.stderr, res.output


class NoReset(nn.Module):
    """Keeps a running sum in a plain attribute that reset_net cannot see."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.acc = 0.0

    def forward(self, x):
        self.acc = self.acc + x.mean()
        return self.fc(x) + self.acc


def test_contract_errors_are_one_line():
    x = time_major(torch.randn(2, 4), 2, False)
    with pytest.raises(SnnkdError, match=r"must map \[T, B, \.\.\.\] to logits \[T, B, C\]"):
        check_student(nn.Flatten(0, 1), x)
    with pytest.raises(SnnkdError, match=r"expected \[2, 2, 5\]"):
        check_student(nn.Linear(4, 3), x, num_classes=5)
    with pytest.raises(SnnkdError, match="not cleared by spikingjelly's functional.reset_net"):
        check_student(NoReset(), x)
    check_student(user_student(3), time_major(torch.randn(2, 3, 16, 16), 2, False), 3)


USER_MODULE = """
from spikingjelly.activation_based import layer
from torch import nn

from snnkd_cli.models.neurons import make_lif


def make(num_classes, in_channels):
    return nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8)),
        make_lif(0.5),
        layer.SeqToANNContainer(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, num_classes)),
    )
"""


def test_student_by_import_path_through_the_cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from snnkd_cli.cli.app import app
    from snnkd_cli.evaluation.evaluate import evaluate_checkpoint

    (tmp_path / "my_snn_models.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    args = [
        "distill",
        "--student-arch",
        "my_snn_models:make",
        "--loss",
        "twce",
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--T",
        "2",
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    ckpt, sweep_res = evaluate_checkpoint(out / "best.safetensors", 3)
    assert ckpt.config.model.arch == "my_snn_models:make" and len(sweep_res.rows) == 3
    bad = CliRunner().invoke(app, ["distill", "--student-arch", "no_such_module_xyz:make", "--loss", "twce"])
    assert bad.exit_code == 2 and "cannot import model module 'no_such_module_xyz'" in bad.stderr


def test_teacher_from_a_pth_state_dict(tmp_path):
    """A state dict saved elsewhere (wrapped, "module." prefix) is a teacher with --teacher-arch; mismatches say why."""
    from typer.testing import CliRunner

    from snnkd_cli.cli.app import app

    net = create_model("resnet18", 10, kind="ann", width=64)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "t.pth")
    base = [
        "distill",
        "--teacher",
        str(tmp_path / "t.pth"),
        "--epochs",
        "1",
        "--max-steps",
        "1",
        "--T",
        "2",
        "--width",
        "8",
    ]
    ok = CliRunner().invoke(app, [*base, "--teacher-arch", "resnet18", "--out", str(tmp_path / "s")])
    assert ok.exit_code == 0, ok.output
    from snnkd_cli.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "s" / "best.safetensors").config.teacher_model.arch == "resnet18"
    bad = CliRunner().invoke(app, [*base, "--teacher-arch", "resnet34", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "does not fit --teacher-arch resnet34" in bad.stderr and "missing" in bad.stderr
    none = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "c")])
    assert none.exit_code == 2 and "also give --teacher-arch" in none.stderr
    (tmp_path / "x.pth").write_bytes(b"\x80\x04garbage")
    bad_file = CliRunner().invoke(app, [*base, "--teacher", str(tmp_path / "x.pth"), "--teacher-arch", "resnet18"])
    assert bad_file.exit_code == 2 and "is not a PyTorch state dict file" in bad_file.stderr


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"T": 0}, "T must be >= 1, got 0"),
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"lr": -0.1}, "lr must be > 0, got -0.1"),
        ({"warmup_epochs": -1}, "warmup_epochs must be >= 0, got -1"),
        ({"tau": 0.0}, "tau must be > 0, got 0.0"),
        ({"alpha": -1.0}, "alpha and beta must be >= 0"),
        ({"loss": "kl"}, "unknown loss 'kl': choose one of full-range, standard-kd, twce"),
        ({"sd_none_correct": "drop"}, "unknown sd_none_correct 'drop': choose one of uniform, skip"),
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
    ],
)
def test_api_distill_refuses_bad_values_before_any_work(tmp_path, kw, message):
    """The same checks as the command line, before a model moves or a batch is read, naming the keyword."""
    from snnkd_cli import distill

    class NoBatch:
        def __iter__(self):
            raise AssertionError("a batch was read before the values were checked")

    student = create_model("resnet18", 10, width=4)
    with pytest.raises(SnnkdError) as e:
        distill(student, None, NoBatch(), NoBatch(), verbose=False, out=tmp_path / "run", **kw)
    assert str(e.value).startswith(message) and "--" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_api_distill_leaves_drop_last_to_the_callers_loader(tmp_path):
    """``drop_last`` is a command-line choice (``--keep-last``); the API's caller owns the DataLoader."""
    from snnkd_cli import distill

    with pytest.raises(TypeError, match="drop_last is your DataLoader's to set"):
        distill(create_model("resnet18", 10, width=4), None, [], [], verbose=False, drop_last=False, loss="twce")
