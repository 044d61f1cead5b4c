"""Students from user code (``--arch package.module:factory``): what fits trains, what does not is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY
from helpers import assert_one_line_error

ZOO = '''
import torch
from torch import nn


class PerStep(nn.Module):
    """[T, B, 3, H, W] -> [T, B, C]: a linear read-out of each step's pooled image (no state to reset)."""

    def __init__(self, num_classes, in_channels, per_step=True):
        super().__init__()
        self.fc, self.per_step = nn.Linear(in_channels, num_classes), per_step

    def forward(self, x):
        y = self.fc(x.mean((-1, -2)))
        return y if self.per_step else y.mean(0)


def good(num_classes, in_channels):
    return PerStep(num_classes, in_channels)


def no_keywords():
    return PerStep(10, 3)


def breaks_the_contract(num_classes, in_channels):
    return PerStep(num_classes, in_channels, per_step=False)


def fails(num_classes, in_channels):
    raise ValueError("width must be even")


def not_a_module(**kw):
    return 3
'''


@pytest.fixture
def userzoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "userzoo_snnkd_test.py").write_text(ZOO)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "userzoo_snnkd_test"


def _distill(cli, arch: str, out: Path):
    return cli(["distill", "--loss", "twce", *TINY, "--T", "2", "--arch", arch, "--out", out])


def test_a_user_factory_that_fits_trains(cli, userzoo: str, tmp_path: Path) -> None:
    res = _distill(cli, f"{userzoo}:good", tmp_path / "run")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "best.safetensors").is_file()


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("no_keywords", "cannot be called as factory(num_classes=..., in_channels=...)"),
        ("breaks_the_contract", "must map [T, B, ...] to logits [T, B, C]"),
        ("fails", "failed: ValueError: width must be even"),
        ("not_a_module", "returned int, not a torch.nn.Module"),
    ],
)
def test_a_user_factory_that_does_not_fit_is_one_line_and_leaves_no_folder(
    cli, userzoo: str, tmp_path: Path, factory: str, message: str
) -> None:
    out = tmp_path / "run"
    assert_one_line_error(_distill(cli, f"{userzoo}:{factory}", out), message)
    assert not out.exists()


def test_options_without_effect_are_noted(cli, teacher_ckpt: Path, tmp_path: Path) -> None:
    res = cli(["distill", "--loss", "twce", "--teacher", teacher_ckpt, *TINY, "--T", "2", "--out", tmp_path / "s"])
    assert res.exit_code == 0, res.output
    assert "note: --loss twce uses no teacher: --teacher is ignored" in " ".join(res.stderr.split())
    res = cli(["train-teacher", *TINY, "--max-steps", "1", "--precision", "fp16", "--out", tmp_path / "t"])
    assert res.exit_code == 0, res.output
    assert "note: --precision fp16 on a CPU is emulated" in " ".join(res.stderr.split())
