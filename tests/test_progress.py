"""Progress outside the training epochs: the engine's loops report through one hook; the command line
shows a bar on a terminal and plain periodic lines in a log."""

from __future__ import annotations

import io

import torch
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

from snnkd_cli.cli._progress import ConsoleProgress, RichReporter
from snnkd_cli.evaluation.sweep import sweep
from snnkd_cli.models.registry import create_model
from snnkd_cli.progress import reporting, track


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
