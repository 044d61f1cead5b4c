"""Tables in an 80-column terminal (Rich's own console width): no number is cut, paths are printed whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from snnkd_cli.cli import _output

WIDTH = 80


@pytest.fixture(autouse=True)
def narrow() -> Iterator[None]:
    """Both consoles at 80 columns, as a default terminal; restored afterwards."""
    old = (_output.out_console.width, _output.err_console.width)
    _output.out_console.width = _output.err_console.width = WIDTH
    yield
    _output.out_console.width, _output.err_console.width = old


def _numbers(entry: dict) -> list[str]:
    return [f"{r['top1']:.2f}" for r in entry["results"]]


def test_three_checkpoints_at_max_T_8_lose_no_digit(cli, student_ckpt: Path, teacher_ckpt: Path, tmp_path: Path):
    j = tmp_path / "s.json"
    res = cli(["eval-sweep", student_ckpt, student_ckpt, teacher_ckpt, "--max-T", "8", "--json", j])
    assert res.exit_code == 0, res.output
    assert "…" not in res.stdout
    rows = [line for line in res.stdout.splitlines() if line.startswith("│")]
    assert rows and all(len(line) <= WIDTH for line in rows)
    cells = " ".join(rows).split()
    for entry in json.loads(j.read_text())["checkpoints"]:
        for value in _numbers(entry):
            assert value in cells
    assert "#1 top-1" in res.stdout and "#3 top-1" in res.stdout  # split per checkpoint, numbered as a whole
    lines = res.stdout.splitlines()  # each legend line whole: path and description, never cut at 80
    assert f"#1 {student_ckpt}: resnet18 SNN, trained at T=2, loss full-range (synthetic)" in lines
    assert f"#3 {teacher_ckpt}: resnet18 ANN teacher (synthetic)" in lines


def test_early_exit_with_energy_at_max_T_8_lose_no_digit(cli, student_ckpt: Path, tmp_path: Path) -> None:
    args = ["eval-sweep", student_ckpt, "--max-T", "8", "--dynamic", "--energy", "--energy-samples", "8"]
    res = cli([*args, "--json", tmp_path / "s.json"])
    assert res.exit_code == 0, res.output
    assert "…" not in res.stdout
    assert all(len(line) <= WIDTH for line in res.stdout.splitlines() if line[:1] in "│┃┏┡└")
    entry = json.loads((tmp_path / "s.json").read_text())["checkpoints"][0]
    for point in entry["dynamic"]["curve"]:
        assert f"{point['top1']:.2f}" in res.stdout
    assert any(line == f"#1 {student_ckpt}" for line in res.stdout.splitlines())


def test_models_fold_no_word(cli) -> None:
    res = cli(["models"])
    assert res.exit_code == 0, res.output
    assert all(len(line) <= WIDTH for line in res.stdout.splitlines())
    assert "threshold" in res.stdout and "MS-ResNet-18" in res.stdout  # words whole (it once read "thresho ld")


def test_a_table_that_fits_is_not_split(cli, student_ckpt: Path, teacher_ckpt: Path) -> None:
    res = cli(["eval-sweep", student_ckpt, teacher_ckpt, "--max-T", "3"])
    assert res.exit_code == 0, res.output
    assert res.stdout.count("accuracy at every T") == 1 and "#2 top-1" in res.stdout
