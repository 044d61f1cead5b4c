"""Runs and files: a finished run is never replaced without consent; written files follow the umask."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from conftest import TINY
from helpers import assert_clean_run_dir, assert_one_line_error, files_under
from snnkd_cli.api import distill
from snnkd_cli.checkpoint import check_fresh_out, load_checkpoint
from snnkd_cli.errors import SnnkdError
from snnkd_cli.fsutil import atomic_write_bytes


def _snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in files_under(folder)}


def test_second_run_into_a_finished_run_is_refused_and_changes_nothing(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert cli(["train-teacher", *TINY, "--out", out]).exit_code == 0
    before = _snapshot(out)
    res = cli(["train-teacher", *TINY, "--seed", "1", "--out", out])
    line = assert_one_line_error(res, f"{out} already holds a run (best.safetensors)")
    assert "--overwrite" in line and "--resume" in line and f"{out}-2" in line
    assert _snapshot(out) == before  # nothing replaced, the log kept


def test_overwrite_replaces_the_run_and_leaves_no_file_of_the_old_one(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert cli(["train-teacher", *TINY, "--out", out]).exit_code == 0
    (out / "resume.safetensors").write_bytes(b"stale")  # must not survive a fresh run
    res = cli(["train-teacher", *TINY, "--epochs", "2", "--max-steps", "1", "--out", out, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert_clean_run_dir(out)
    assert (out / "resume.safetensors").read_bytes() != b"stale"
    log = (out / "log.jsonl").read_text().splitlines()
    assert len(log) == 2  # the new run's two epochs only


def test_the_suggested_free_name_skips_taken_ones(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text("{}\n")
    (tmp_path / "run-2").mkdir()
    with pytest.raises(SnnkdError, match="free: .*run-3"):
        check_fresh_out(out, overwrite=False)
    check_fresh_out(out, overwrite=True)  # consent given
    check_fresh_out(tmp_path / "elsewhere", overwrite=False)  # nothing there


def test_api_distill_refuses_an_earlier_run_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "best.safetensors").write_bytes(b"kept")
    student, x = torch.nn.Linear(4, 2), torch.zeros(2, 4)
    loader = [(x, torch.zeros(2, dtype=torch.long))]
    with pytest.raises(SnnkdError, match="already holds a run"):
        distill(student, None, loader, loader, loss="twce", out=tmp_path, verbose=False)
    assert (tmp_path / "best.safetensors").read_bytes() == b"kept"


@pytest.fixture
def umask():
    """``umask(mask)`` sets the process umask for the test; the old one is restored."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path: Path, umask, mask: int, mode: int) -> None:
    umask(mask)
    atomic_write_bytes(tmp_path / "f.json", b"{}")
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == mode


def test_a_training_run_writes_files_the_group_can_read(cli, tmp_path: Path, umask) -> None:
    umask(0o022)
    out = tmp_path / "run"
    assert cli(["train-teacher", *TINY, "--out", out]).exit_code == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files_under(out)}
    assert modes and set(modes.values()) == {0o644}, modes


@pytest.mark.slow
def test_resume_extends_epochs_exactly_as_an_uninterrupted_run(cli, tmp_path: Path) -> None:
    """Epoch 1 runs at the peak lr under any length of the per-epoch cosine, so 1 epoch resumed to 3
    must give the weights of a 3-epoch run, bit for bit."""
    short, full = tmp_path / "short", tmp_path / "full"
    tiny = [*TINY, "--schedule", "cosine-epoch"]
    assert cli(["train-teacher", *tiny, "--out", short]).exit_code == 0
    res = cli(["train-teacher", *tiny, "--epochs", "3", "--out", short, "--resume", short / "resume.safetensors"])
    assert res.exit_code == 0, res.output
    assert "--epochs 1 -> 3: the learning-rate schedule is recomputed" in " ".join(res.stderr.split())
    assert cli(["train-teacher", *tiny, "--epochs", "3", "--out", full]).exit_code == 0
    a = load_checkpoint(short / "last.safetensors").state
    b = load_checkpoint(full / "last.safetensors").state
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (short / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    full_log = [json.loads(line) for line in (full / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log[1:]] == [r["lr"] for r in full_log[1:]]  # epoch 1 logged its own end-of-run lr


def test_resume_across_a_changed_default_names_the_field_and_the_option(cli, tmp_path: Path) -> None:
    """A run saved under the old default schedule resumed under the new one: one line naming both."""
    out = tmp_path / "run"
    assert cli(["train-teacher", *TINY, "--epochs", "2", "--schedule", "cosine-epoch", "--out", out]).exit_code == 0
    before = _snapshot(out)
    res = cli(["train-teacher", *TINY, "--epochs", "3", "--out", out, "--resume", out / "resume.safetensors"])
    assert_one_line_error(res, "train.schedule ('cosine-epoch' -> 'cosine-step')")
    assert "--schedule cosine-epoch" in res.stderr
    assert _snapshot(out) == before
    res = cli(["train-teacher", *TINY, "--epochs", "3", "--schedule", "cosine-epoch", "--seed", "1", "--out", out,
               "--resume", out / "resume.safetensors"])  # fmt: skip
    assert_one_line_error(res, "train.seed (60 -> 1)")
    assert "--schedule" not in res.stderr  # the hint only where the schedule differs
    assert _snapshot(out) == before


def test_resume_cannot_shorten_below_the_epochs_done(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert cli(["train-teacher", *TINY, "--epochs", "2", "--out", out]).exit_code == 0
    before = _snapshot(out)
    res = cli(
        ["train-teacher", *TINY, "--epochs", "2", "--epochs", "1", "--out", out, "--resume", out / "resume.safetensors"]
    )
    assert_one_line_error(res, "has already done 2 epochs; give more than 2")
    assert _snapshot(out) == before
