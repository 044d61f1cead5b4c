"""Tables, notes and help at 80 columns and at 200: no line past the width (but a path, printed whole), nothing
cut ('…'), every number of ``--json`` in a table row, titles and notes at the terminal's width (not the
table's), and option help wrapped in a column a person can read."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from rich.console import Console
from rich.table import Table

from snnkd_cli.cli import _output
from snnkd_cli.cli._layout import fits
from snnkd_cli.cli.app import app
from snnkd_cli.evaluation.energy import SOURCE

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTHS = (80, 200)
ENERGY_NOTE = f"energy = SynOps x AC + MACs x MAC ({SOURCE}); BatchNorm folded, memory not counted"
OUT_DEFAULT = "runs/<kind>-<dataset>-<arch>"


@contextlib.contextmanager
def columns(width: int) -> Iterator[None]:
    """A terminal ``width`` wide for both Rich consoles (and COLUMNS); restored afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", str(width))
        for console in (_output.out_console, _output.err_console):
            mp.setattr(console, "_width", width)
        yield


def _rows(text: str) -> list[list[str]]:
    """The cells of every body line of every table in ``text``."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]


def _has_row(rows: list[list[str]], label: str | None, values: list[str]) -> bool:
    """Some row starts with ``label`` (None: any) and holds ``values`` side by side after it."""
    n = len(values)
    for cells in rows:
        if label is not None and cells[0] != label:
            continue
        rest = cells[1:] if label is not None else cells
        if any(rest[i : i + n] == values for i in range(len(rest) - n + 1)):
            return True
    return False


@pytest.fixture(scope="module", params=WIDTHS, ids=lambda w: f"{w}-columns")
def sweep(request, cli, student_ckpt: Path, teacher_ckpt: Path, tmp_path_factory) -> SimpleNamespace:
    """``eval-sweep STUDENT TEACHER --max-T 3 --energy`` at each width, with its JSON."""
    j = tmp_path_factory.mktemp("widths") / "sweep.json"
    with columns(request.param):
        args = ["eval-sweep", student_ckpt, teacher_ckpt, "--max-T", "3", "--energy", "--energy-samples", "8"]
        res = cli([*args, "--json", j])
    assert res.exit_code == 0, res.output
    entries = json.loads(j.read_text())["checkpoints"]
    return SimpleNamespace(width=request.param, out=res.stdout, entries=entries, paths=(student_ckpt, teacher_ckpt))


def test_no_line_is_wider_than_the_terminal_and_nothing_is_cut(sweep) -> None:
    assert "…" not in sweep.out
    for line in sweep.out.splitlines():  # a path is printed whole: the terminal wraps it, copy-paste works
        assert len(line) <= sweep.width or any(str(p) in line for p in sweep.paths), line
    lines = sweep.out.splitlines()
    student, teacher = sweep.paths
    assert f"#1 {student}: resnet18 SNN, trained at T=2, loss full-range (synthetic)" in lines
    assert f"#2 {teacher} (teacher; costs over 8 samples)" in lines
    for header in ("#1 top-1", "#2 top-1", "SynOps M", "MACs M", "energy µJ", "spikes %", "neurons"):
        assert header in sweep.out


def test_every_number_of_the_json_is_in_a_table_row(sweep) -> None:
    rows = _rows(sweep.out)
    student, teacher = sweep.entries
    best = max(r["top1"] for r in student["results"])
    for r in student["results"]:
        accuracy = [f"{r['top1']:.2f}", f"{r['top5']:.2f}", f"{best - r['top1']:.2f}", f"{100 * r['spike_rate']:.1f}"]
        assert _has_row(rows, str(r["T"]), accuracy), (r, rows)
    (ann,) = teacher["results"]
    assert _has_row(rows, "ANN", [f"{ann['top1']:.2f}", f"{ann['top5']:.2f}"])
    for entry in (student, teacher):
        for r in entry["results"]:
            label = "ANN" if r["T"] is None else str(r["T"])
            cost = [f"{r['top1']:.2f}", f"{r['synops'] / 1e6:.4g}", f"{r['macs'] / 1e6:.4g}", f"{r['energy_uj']:.4g}"]
            assert _has_row(rows, label, cost), (r, rows)
    layers = student["energy"]["layers"]
    assert layers
    for layer in layers:
        assert _has_row(rows, layer["name"], [f"{layer['neurons']:,}", f"{100 * layer['spike_rate']:.2f}"])


def test_the_cost_table_is_split_only_where_it_does_not_fit(sweep) -> None:
    titles = sweep.out.count("accuracy and cost per sample")
    assert titles == (2 if sweep.width == 80 else 1)  # 92 columns for both checkpoints
    assert sweep.out.count("energy = SynOps") == 1  # the note said once, under the last


def test_titles_and_notes_use_the_terminal_width_not_the_tables(sweep) -> None:
    lines = sweep.out.splitlines()
    title = "accuracy at every T (one pass, running mean of per-step logits); fp32"
    i = lines.index(title)  # one line, wider than the table under it
    assert len(lines[i + 1]) < len(title) and lines[i + 1].startswith("┏")
    if sweep.width == 200:
        j = lines.index(ENERGY_NOTE)
        assert len(ENERGY_NOTE) > max(len(line) for line in lines[:j] if line.startswith("┏"))
    else:  # wrapped between words at 80, every word kept
        j = next(k for k, line in enumerate(lines) if line.startswith("energy = "))
        assert " ".join(" ".join(lines[j : j + 2]).split()) == ENERGY_NOTE
        assert all(len(line) <= 80 for line in lines[j : j + 2])


@pytest.mark.parametrize("width", WIDTHS)
def test_an_ann_only_sweep_is_titled_for_what_it_shows(cli, teacher_ckpt: Path, width: int) -> None:
    with columns(width):
        one, two = cli(["eval-sweep", teacher_ckpt]), cli(["eval-sweep", teacher_ckpt, teacher_ckpt])
    for res, title in ((one, "accuracy of the ANN teacher (one pass, no timesteps); fp32"),
                       (two, "accuracy of the ANN teachers (one pass each, no timesteps); fp32")):  # fmt: skip
        assert res.exit_code == 0, res.output
        assert title in res.stdout.splitlines()
        assert "per-step" not in res.stdout and "at every T" not in res.stdout
        assert [cells[0] for cells in _rows(res.stdout)] == ["ANN"]


def test_a_long_layer_name_folds_and_its_numbers_stay_whole() -> None:
    name = "features.stage3.block12.attention.query_spike_neuron"
    energy = SimpleNamespace(
        rows=[{"T": 4}], num_samples=8, layers=[{"name": name, "neurons": 123456, "spike_rate": 0.0314}]
    )
    ckpt = SimpleNamespace(path=Path("/runs/a/best.safetensors"))
    buf = io.StringIO()
    console = Console(file=buf, width=40, color_system=None)
    console.print(_output.layer_table(ckpt, energy), crop=False)
    out = buf.getvalue()
    assert "…" not in out and all(len(line) <= 40 for line in out.splitlines())
    rows = _rows(out)
    assert rows[0][1:] == ["123,456", "3.14"]
    assert "".join(cells[0] for cells in rows) == name  # folded over lines, every character kept


def test_fits_means_no_character_is_lost() -> None:
    """Rendered at the console's width: a cell that may not wrap and is cut does not fit; one that folds does."""
    numbers, words = Table(), Table()
    for i in range(8):
        numbers.add_column(f"SynOps M{i}", no_wrap=True)
        words.add_column(f"name {i}")
    numbers.add_row(*[f"0.0{i}2678" for i in range(8)])
    words.add_row(*["spike neuron layer"] * 8)
    natural = Console(file=io.StringIO(), width=1000).measure(numbers).maximum
    for width, whole in ((natural, True), (natural - 1, False), (80, False)):
        assert fits(Console(file=io.StringIO(), width=width), numbers) is whole, width
    assert fits(Console(file=io.StringIO(), width=80), words)


def _option_help_blocks(text: str) -> tuple[int, list[list[str]]]:
    """The column where option help starts, and each option's help as its lines of text (from 'Options:')."""
    lines = text.splitlines()
    body = lines[lines.index("Options:") + 1 :]
    column = min(len(line) - len(line.lstrip()) for line in body if line.startswith(" " * 10))
    blocks: list[list[str]] = []
    for line in body:
        if not line.strip():
            break
        if line.startswith("  -"):
            blocks.append([])
        text_part = line[column:].strip() if len(line) > column and line[column - 1] == " " else ""
        if text_part:
            blocks[-1].append(text_part)
    return column, blocks


def _help(width: int, *args: str) -> str:
    """``snnkd ARGS --help`` in a terminal ``width`` wide (a process of its own: typer's CliRunner fixes
    Click's help at 80 columns whatever COLUMNS says)."""
    env = {**os.environ, "COLUMNS": str(width)}
    cmd = [sys.executable, "-m", "snnkd_cli", *args, "--help"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_distill_help_at_80_columns_reads_whole() -> None:
    out = _help(80, "distill")
    assert "…" not in out and all(len(line) <= 80 for line in out.splitlines())
    assert any(OUT_DEFAULT in line for line in out.splitlines())  # the --out default on one line
    flat = " ".join(out.split())
    for param in typer.main.get_command(app).commands["distill"].params:  # every help text whole, unsplit words
        assert " ".join(param.help.split()) in flat, param.name
    column, blocks = _option_help_blocks(out)
    assert 80 - column >= 40, column
    for block in blocks:  # a line ends early only where the next word would not fit in 40 columns
        for line, following in zip(block, block[1:], strict=False):
            assert len(line) + 1 + len(following.split()[0]) > 40, (line, following)


def test_help_uses_a_wider_terminal() -> None:
    longest = max(len(line) for line in _help(200, "distill").splitlines())
    assert 100 < longest <= 120  # wider than 80, up to a readable 120


def test_the_command_list_is_whole_at_80_columns() -> None:
    commands = _help(80).split("Commands:")[1].splitlines()[1:]
    assert commands and all(len(line) <= 80 and not line.rstrip().endswith("...") for line in commands)
    for name, command in typer.main.get_command(app).commands.items():
        summary = command.help.split("\n\n")[0].strip()
        assert any(line.split() == [name, *summary.split()] for line in commands), name
