"""Hazardous inputs are refused up front (one line, exit 2, nothing changed) or named in a ``note:``.

Non-finite and absurd numbers, options with no effect, a checkpoint from a newer format, ``--resume`` on a
finished run or with ``--overwrite``, and an interrupt that says what was saved.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import STUDENT_T, TINY
from helpers import assert_one_line_error, files_under
from snnkd_cli.errors import SnnkdError
from snnkd_cli.format import FORMAT_VERSION
from snnkd_cli.train.resume import interrupted_note

pytestmark = pytest.mark.usefixtures("one_thread")


def _sums(folder: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files_under(folder)}


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--alpha", "nan"], "--alpha must be a finite number, got nan"),
        (["--beta", "inf"], "--beta must be a finite number, got inf"),
        (["--tau", "nan"], "--tau must be a finite number, got nan"),
        (["--lr", "inf"], "--lr must be a finite number, got inf"),
        (["--weight-decay", "nan"], "--weight-decay must be a finite number, got nan"),
        (["--warmup-epochs", "inf"], "--warmup-epochs must be a finite number, got inf"),
        (["--T", "100000"], "--T 100000 is above 256"),
    ],
)
def test_a_non_finite_or_absurd_number_is_refused_before_any_work(cli, teacher_ckpt, tmp_path, extra, fragment):
    out = tmp_path / "run"
    res = cli(["distill", "--teacher", teacher_ckpt, *TINY, *extra, "--out", out])
    assert_one_line_error(res, fragment)
    assert not out.exists()


def test_a_huge_lr_is_noted_when_the_run_starts(cli, tmp_path):
    res = cli(["train-teacher", *TINY, "--lr", "1e9", "--out", tmp_path / "run"])
    assert res.exit_code == 0, res.output
    notes = [line for line in res.stderr.splitlines() if line.startswith("note: --lr")]
    assert len(notes) == 1 and "1000000000.0 is above 1" in notes[0] and "diverge" in notes[0], res.stderr


def test_options_with_no_effect_on_eval_sweep(cli, teacher_ckpt, student_ckpt, monkeypatch):
    """--energy-samples needs --energy (as --max-drop needs --dynamic); --max-T needs a student; a huge
    --max-T is noted before the sweep starts (the sweep itself is stopped here: 257 steps take a minute)."""
    assert_one_line_error(cli(["eval-sweep", student_ckpt, "--energy-samples", "8"]), "--energy-samples applies with")
    assert_one_line_error(cli(["eval-sweep", teacher_ckpt, "--max-T", "4"]), "--max-T applies to spiking students")
    both = cli(["eval-sweep", student_ckpt, teacher_ckpt, "--max-T", "3"])  # the teacher runs once, as documented
    assert both.exit_code == 0 and "note:" not in both.stderr, both.output

    def stop(*args, **kwargs):
        raise SnnkdError("stopped by the test")

    monkeypatch.setattr("snnkd_cli.cli.commands.evaluate_checkpoint", stop)
    many = cli(["eval-sweep", student_ckpt, "--max-T", "257"])
    assert many.exit_code == 2 and "error: stopped by the test" in many.stderr, many.output
    assert "note: --max-T 257 runs 257 steps on every batch" in many.stderr.splitlines()[0]


def test_a_checkpoint_from_a_newer_format_is_refused_with_its_version(cli, student_ckpt, tmp_path):
    with safe_open(str(student_ckpt), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    assert meta["format_version"] == FORMAT_VERSION
    newer = tmp_path / "newer.safetensors"
    save_file(tensors, str(newer), metadata={**meta, "format_version": "99"})
    for argv in (["eval-sweep", newer], ["export", newer, "-f", "onnx", "--out", tmp_path / "x.onnx"]):
        res = cli(argv)
        assert_one_line_error(res, "is in checkpoint format version 99")
        assert f"this snnkd reads version {FORMAT_VERSION} and older" in res.stderr
    assert not (tmp_path / "x.onnx").exists()


@pytest.fixture
def finished_run(student_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(student_dir, tmp_path / "student"))


def test_resume_of_a_finished_run_and_resume_with_overwrite_are_refused(cli, teacher_ckpt, finished_run):
    before = _sums(finished_run)
    argv = ["distill", "--teacher", teacher_ckpt, "--T", STUDENT_T, *TINY, "--out", finished_run]
    assert_one_line_error(cli([*argv, "--resume", finished_run / "resume.safetensors"]), "is finished (1 of 1 epochs)")
    assert_one_line_error(
        cli([*argv, "--resume", finished_run / "resume.safetensors", "--overwrite"]),
        "--resume continues a run and --overwrite replaces it",
    )
    assert _sums(finished_run) == before


def test_an_interrupt_says_what_was_saved(cli, finished_run, tmp_path, monkeypatch):
    assert interrupted_note(finished_run) == (
        f"{finished_run / 'resume.safetensors'} holds the run after epoch 1: add --resume to the same command "
        "to continue it"
    )

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("snnkd_cli.train.run.fit", interrupt)
    out = tmp_path / "fresh"
    res = cli(["train-teacher", *TINY, "--out", out])
    assert res.exit_code == 130
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: interrupted: no resume point was saved in {out} yet: run the same command again to start over"
    )


def test_an_empty_validation_split_is_noted_by_preprocess_and_refused_by_training(cli, tmp_path):
    """Three recordings, the random 90/10 split: no validation recording. Training would report 0.00 and
    choose its best epoch on nothing; it refuses instead, with what to do."""
    from snnkd_cli.testing import make_cifar10dvs_tree

    make_cifar10dvs_tree(tmp_path / "src", per_class=1, classes=3, events=2_000)
    cache = tmp_path / "cache"
    pre = cli(["preprocess-dvs", tmp_path / "src", cache, "--frames", "2", "--size", "16"])
    assert pre.exit_code == 0, pre.output
    assert "3 train / 0 val" in pre.stdout
    notes = [line for line in pre.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: the random split left the validation split empty (3 train / 0 val): training and eval-sweep will "
        "refuse it; give at least 10 recordings, or --split per-class"
    ]
    out = tmp_path / "run"
    res = cli(["train-teacher", "--dataset", "cifar10dvs", "--data-dir", cache, *TINY, "--out", out])
    assert_one_line_error(res, "the validation split of cifar10dvs in")
    assert "has no samples: add validation data (preprocess-dvs: at least 10 recordings" in res.stderr
    assert not out.exists()


def test_a_missing_tensor_is_named(cli, student_ckpt, tmp_path):
    with safe_open(str(student_ckpt), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    gone = sorted(tensors)[1]
    del tensors[gone]
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), metadata=meta)
    line = assert_one_line_error(cli(["eval-sweep", broken]), "weights do not match its stored architecture")
    assert f"(tensors 1 missing: {gone})" in line


def test_a_teacher_resume_file_given_to_distill_says_so(cli, teacher_dir, teacher_ckpt, tmp_path):
    argv = ["distill", "--teacher", teacher_ckpt, *TINY, "--out", tmp_path / "s"]
    line = assert_one_line_error(cli([*argv, "--resume", teacher_dir / "resume.safetensors"]), "continues a")
    assert line.endswith(
        "continues a 'snnkd train-teacher' run, not a 'snnkd distill' one: pass the resume.safetensors of an "
        "earlier 'snnkd distill' run"
    )
