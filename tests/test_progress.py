"""Progress outside the training epochs: the engine's loops report through one hook; the command line
shows a bar on a terminal and plain periodic lines in a log."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

from snnkd_cli.cli._progress import ConsoleProgress, RichReporter
from snnkd_cli.evaluation.sweep import sweep
from snnkd_cli.models.registry import create_model
from snnkd_cli.progress import reporting, timed, timed_items, timing, track


class Clock:
    """A clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _log_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=80), buf


def test_track_without_a_hook_is_the_items_and_with_one_counts_them() -> None:
    assert list(track(iter("abc"), "x")) == ["a", "b", "c"]
    calls = []
    with reporting(lambda *a: calls.append(a)):
        assert list(track("abc", "letters")) == ["a", "b", "c"]
    assert calls == [("letters", 0, 3), ("letters", 1, 3), ("letters", 2, 3), ("letters", 3, 3)]
    assert list(track("ab", "x")) == ["a", "b"]  # the hook is gone after the block


def test_sweep_reports_its_batches() -> None:
    net = create_model("resnet18", 4, kind="snn", width=4).eval()
    data = TensorDataset(torch.rand(10, 3, 8, 8), torch.randint(0, 4, (10,)))
    calls = []
    with reporting(lambda *a: calls.append(a)):
        sweep(net, DataLoader(data, batch_size=4), 2)
    assert calls == [("evaluate (T=2)", i, 3) for i in range(4)]


def test_plain_lines_only_for_slow_loops_and_a_last_one() -> None:
    console, buf = _log_console()
    clock = Clock()
    hook = ConsoleProgress(console, every=10.0, clock=clock)
    for done in range(4):  # a fast loop: nothing printed
        hook("fast", done, 3)
    assert buf.getvalue() == ""
    for done in range(7):
        clock.now = 6.0 * done  # 6 s a batch: a line at 12 s (2/6), 24 s (4/6), and the last at 36 s
        hook("slow", done, 6)
    assert buf.getvalue().splitlines() == ["slow: 2/6 (12 s)", "slow: 4/6 (24 s)", "slow: 6/6 (36 s)"]


def test_the_terminal_bar_is_gone_after_the_loop_and_after_an_error() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80)
    hook = ConsoleProgress(console)
    with reporting(hook):
        list(track(range(3), "loop"))
    assert hook.bar is None
    try:
        with reporting(hook):
            for i in track(range(5), "stops"):
                if i == 2:
                    raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert hook.bar is None and hook.tasks == {}


def test_training_in_a_log_prints_a_step_line_now_and_then() -> None:
    console, buf = _log_console()
    clock = Clock()
    rep = RichReporter(console, every=30.0, clock=clock)
    with rep.epoch_progress(1, 2, 100) as update:
        for _ in range(100):
            clock.now += 1.0
            update({"loss": 1.5, "acc": 40.0})
    lines = buf.getvalue().splitlines()
    assert lines == [f"epoch   1/2  step {s}/100  loss 1.5000  acc 40.00  ({s} s)" for s in (30, 60, 90)]


def test_export_reports_its_stages(student_ckpt, tmp_path) -> None:
    from snnkd_cli.checkpoint import load_checkpoint, model_from_checkpoint
    from snnkd_cli.export import export_checkpoint

    ckpt = load_checkpoint(student_ckpt)
    calls = []
    with reporting(lambda *a: calls.append(a)):
        export_checkpoint(
            model_from_checkpoint(ckpt), ckpt.config, "student", "safetensors", tmp_path / "f.safetensors"
        )
    assert [c[1:] for c in calls] == [(0, 2), (1, 2), (2, 2)] and calls[0][0].startswith("export safetensors")


def test_timing_without_a_timer_changes_nothing_and_with_one_hears_each_part() -> None:
    items = [1, 2]
    assert timed_items(items, "x") is items  # no wrapper, no cost
    with timed("x"):
        pass
    heard = []
    with timing(lambda what, start: heard.append(what)):
        assert list(timed_items(iter("ab"), "next")) == ["a", "b"]
        with timed("block"):
            pass
    assert heard == ["next", "next", "next", "block"]  # the third wait finds no item and is timed too
    assert list(timed_items("ab", "x")) == ["a", "b"] and len(heard) == 4  # the timer is gone after the block


@pytest.mark.usefixtures("one_thread")
def test_the_training_loop_times_its_parts_in_order_without_overlap(tmp_path) -> None:
    """A 1-epoch run of 4 steps: a wait for each batch, then its step (the health check once, after the step at 25%
    of the run), the wait that finds none, validation, the checkpoints and the resume file; no two parts overlap,
    and the waits and steps lie inside the epoch's training time that fit records."""
    import time

    from snnkd_cli import distill
    from snnkd_cli.data.synthetic import SyntheticImages

    torch.manual_seed(0)
    teacher = create_model("resnet18", 10, kind="ann", width=4)
    student = create_model("resnet18", 10, kind="snn", width=4)
    train = DataLoader(SyntheticImages(16, split_seed=0), batch_size=4)
    val = DataLoader(SyntheticImages(8, split_seed=1), batch_size=8)
    parts = []
    with timing(lambda what, start: parts.append((what, start, time.perf_counter()))):
        result = distill(student, teacher, train, val, verbose=False, out=tmp_path, T=1, epochs=1, lr=0.05)
    names = [p[0] for p in parts]
    assert names == ["data", "step", "health"] + ["data", "step"] * 3 + ["data", "validation"] + ["checkpoints"] * 2
    for (_, _, end), (what, start, _) in zip(parts, parts[1:], strict=False):
        assert start >= end, what
    inside = sum(e - s for w, s, e in parts if w in ("data", "step", "health"))
    assert 0 < inside <= result.history[0]["time"]
