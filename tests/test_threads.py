"""CPU threads: the usable cores by default, --threads on every long command, and a passive OpenMP wait set
by the console script before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import TINY
from helpers import assert_one_line_error
from snnkd_cli.train import threads


@pytest.mark.parametrize(
    ("cores", "local", "want"), [(2, None, 2), (16, None, 16), (16, "4", 4), (8, "8", 1), (2, "4", 1)]
)
def test_default_threads(monkeypatch: pytest.MonkeyPatch, cores: int, local, want: int) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    if local is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    assert threads.default_threads() == want


def test_usable_cores_is_the_affinity() -> None:
    assert threads.usable_cores() == len(os.sched_getaffinity(0))


def test_commands_set_the_threads(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, student_ckpt: Path) -> None:
    calls: list[int] = []
    monkeypatch.setattr(threads, "torch", SimpleNamespace(set_num_threads=calls.append))  # only snnkd's calls
    monkeypatch.setattr(threads, "usable_cores", lambda: 3)
    assert cli(["train-teacher", *TINY, "--threads", "1", "--out", tmp_path / "a"]).exit_code == 0
    assert cli(["train-teacher", *TINY, "--out", tmp_path / "b"]).exit_code == 0  # the default: all usable cores
    assert cli(["eval-sweep", student_ckpt, "--threads", "2"]).exit_code == 0
    assert calls == [1, 3, 2]


@pytest.mark.parametrize("command", ["train-teacher", "eval-sweep", "predict", "quickstart"])
def test_threads_below_1_is_one_line(cli, student_ckpt: Path, command: str) -> None:
    args = {"eval-sweep": [student_ckpt], "predict": [student_ckpt, student_ckpt]}.get(command, [])
    assert_one_line_error(cli([command, *args, "--threads", "0"]), "--threads must be >= 1, got 0")


PROBE = """
import atexit, os, sys
atexit.register(lambda: print("POLICY=" + os.environ.get("OMP_WAIT_POLICY", ""), file=sys.stderr))
sys.argv = ["snnkd", "--version"]
from snnkd_cli.cli.app import main
main()
"""


@pytest.mark.parametrize(("given", "want"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_console_script_sets_a_passive_openmp_wait_unless_given(given: str | None, want: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert f"POLICY={want}" in res.stderr.splitlines(), res.stderr


def test_set_threads_returns_what_it_set() -> None:
    before = torch.get_num_threads()
    try:
        assert threads.set_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_others_load_is_the_busy_time_less_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """(busy seconds on our cores - our own CPU seconds) / interval, by hand: (10.5 - 10.0 - 0.1) / 0.2 = 2.0."""
    busy, own = iter([10.0, 10.5]), iter([1.0, 1.1])
    monkeypatch.setattr(threads, "_busy_seconds", lambda cpus: next(busy))
    monkeypatch.setattr(threads.time, "process_time", lambda: next(own))
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    assert threads.others_load(0.2) == pytest.approx(2.0)


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux /proc counters")
def test_others_load_sees_a_spinning_process() -> None:
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 5: pass"])
    try:
        time.sleep(0.5)  # past its start-up
        cores = threads.usable_cores()
        load = threads.others_load(0.5)
        assert load is not None and load >= min(0.7, cores - 0.3), load  # one core's worth (or all of one core)
    finally:
        spin.kill()
        spin.wait()


@pytest.mark.parametrize(("load", "cores", "noted"), [(None, 2, False), (1.4, 2, False), (1.5, 2, True), (6, 8, True)])
def test_busy_note_from_three_quarters_of_the_cores(load, cores: int, noted: bool) -> None:
    note = threads.busy_note(2, load, cores)
    assert (note is not None) == noted
    if noted:
        assert note.startswith(f"other processes keep {load:.1f} of the {cores} cores") and "--threads 1 each" in note
