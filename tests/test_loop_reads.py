"""The training loop's figures when they are read from the device every N steps (as on CUDA) instead of every
step: the same loss and accuracy, the same weights, and a non-finite loss still named by its step."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from snnkd_cli.config import from_preset
from snnkd_cli.data.loaders import make_loader
from snnkd_cli.data.synthetic import SyntheticImages
from snnkd_cli.errors import SnnkdError
from snnkd_cli.kd.tasks import TeacherTask
from snnkd_cli.models import create_model
from snnkd_cli.train import loop
from snnkd_cli.train.report import Reporter

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 5  # per epoch: reads every 3 steps fall at steps 3 and 5 (the epoch's end)


class RecordingTask(TeacherTask):
    """Cross-entropy that records each step's loss and correct count (a second tally, by hand)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[float, int, int]] = []  # (loss, correct, batch)

    def __call__(self, model, x, y):
        out, logits = super().__call__(model, x, y)
        self.steps.append((out["loss"].item(), int((logits.argmax(-1) == y).sum()), len(y)))
        return out, logits


class Updates(Reporter):
    """Keeps what the progress bar was given after every step."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def epoch_progress(self, epoch, epochs, total):
        import contextlib

        return contextlib.nullcontext(self.seen.append)


def _fit(tmp_path, every: int, monkeypatch) -> tuple[loop.FitResult, RecordingTask, Updates, torch.nn.Module]:
    monkeypatch.setattr(loop, "_read_every", lambda device: every)
    torch.manual_seed(0)
    cfg = from_preset("teacher", "synthetic", epochs=2, batch_size=16, width=4, max_steps=STEPS, out=str(tmp_path))
    model = create_model("resnet18", 10, kind="ann", width=4)
    train = make_loader(SyntheticImages(128), 16, train=True, workers=0, seed=0, device=torch.device("cpu"))
    val = DataLoader(SyntheticImages(32, split_seed=1), batch_size=32)
    task, updates = RecordingTask(), Updates()
    res = loop.fit(model, task, train, val, cfg.train, eval_T=None, device=torch.device("cpu"), reporter=updates)
    return res, task, updates, model


def test_reads_every_3_steps_give_the_figures_of_reads_every_step(tmp_path, monkeypatch) -> None:
    one, task, upd1, m1 = _fit(tmp_path / "one", 1, monkeypatch)
    three, _, upd3, m3 = _fit(tmp_path / "three", 3, monkeypatch)
    drop = ("time",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in one.history] == [
        {k: v for k, v in r.items() if k not in drop} for r in three.history
    ]
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # by hand: the epoch's loss is the batch-weighted mean of the per-step losses, accuracy the share correct
    for epoch, rec in enumerate(one.history):
        steps = task.steps[epoch * STEPS : (epoch + 1) * STEPS]
        loss_sum = 0.0
        for loss, _, batch in steps:
            loss_sum += loss * batch
        seen = sum(b for *_, b in steps)
        assert rec["loss"] == loss_sum / seen
        assert rec["train_acc"] == 100.0 * sum(c for _, c, _ in steps) / seen
    # the bar advances every step; between reads it shows the figures of the last read
    assert len(upd1.seen) == len(upd3.seen) == 2 * STEPS
    for e in range(2):
        a, b = upd1.seen[e * STEPS : (e + 1) * STEPS], upd3.seen[e * STEPS : (e + 1) * STEPS]
        assert b == [{}, {}, a[2], a[2], a[4]]


class DivergesAt(TeacherTask):
    """Cross-entropy that turns NaN at epoch 2, step 2 (counted by calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __call__(self, model, x, y):
        out, logits = super().__call__(model, x, y)
        self.calls += 1
        if self.calls == STEPS + 2:
            out["loss"] = out["loss"] * float("nan")
        return out, logits


def test_a_nan_found_at_a_later_read_names_its_step_and_writes_no_checkpoint(tmp_path, monkeypatch) -> None:
    from snnkd_cli.checkpoint import load_checkpoint
    from snnkd_cli.saver import RunSaver

    monkeypatch.setattr(loop, "_read_every", lambda device: 3)
    cfg = from_preset("teacher", "synthetic", epochs=3, batch_size=16, width=4, max_steps=STEPS, out=str(tmp_path))
    model = create_model("resnet18", 10, kind="ann", width=4)
    train = make_loader(SyntheticImages(128), 16, train=True, workers=0, seed=0, device=torch.device("cpu"))
    val = DataLoader(SyntheticImages(32, split_seed=1), batch_size=32)
    ckpt = RunSaver(tmp_path, model, cfg)
    task = DivergesAt()
    with pytest.raises(SnnkdError, match="loss is nan at epoch 2 step 2: lower lr or use precision='fp32'"):
        loop.fit(model, task, train, val, cfg.train, eval_T=None, device=torch.device("cpu"), saver=ckpt)
    assert task.calls == STEPS + 3  # found at the read after step 3 of epoch 2, not at step 2
    assert load_checkpoint(tmp_path / "last.safetensors").meta["epoch"] == "1"


def test_the_loop_reads_every_step_on_a_cpu_and_less_often_on_cuda() -> None:
    assert loop._read_every(torch.device("cpu")) == 1
    assert loop._read_every(torch.device("cuda")) == loop.CUDA_READ_EVERY > 1


def test_cudnn_autotune_is_on_inside_the_block_on_cuda_only() -> None:
    before = torch.backends.cudnn.benchmark
    with loop.cudnn_autotune(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark == before
    with loop.cudnn_autotune(torch.device("cuda")):  # only a flag: no GPU needed to set it
        assert torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.benchmark == before
