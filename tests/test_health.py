"""train.health: a run that is not learning says so (chance accuracy after a quarter of the run, spiking layers
that never or always fire), checked against hand counts and in a real run's log."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from snnkd_cli.config import from_preset
from snnkd_cli.models.neurons import make_lif
from snnkd_cli.train import health
from snnkd_cli.train.run import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("classes", "threshold"), [(10, 19.0), (2, 55.0), (1000, 0.2), (100, 2.0)])
def test_chance_threshold_by_hand(classes, threshold):
    assert health.chance_threshold(classes) == pytest.approx(threshold)


def test_chance_note_only_below_the_threshold():
    note = health.chance_note(18.9, 10, 0.25)
    assert note is not None and "18.9% after 25% of the run" in note and "not learning" in note
    assert health.chance_note(19.0, 10, 0.25) is None
    assert "cosine-step" not in note and "cosine-step" in health.chance_note(10.0, 10, 0.25, per_epoch=True)


def test_firing_rates_count_spikes_by_hand():
    """One LIF layer, threshold 1, decay 0.5, hard reset: inputs 2 spike at t=0; at t=1 the reset potential
    leaks to 0 and an input of 0 gives nothing: 2 spikes in 8 neuron-steps."""
    net = nn.Sequential(make_lif(0.5))
    x = torch.tensor([[[2.0, 0.0, 2.0, 0.0]], [[0.0, 0.0, 0.0, 0.0]]])  # [T=2, B=1, 4]
    rates = health.firing_rates(net, lambda: net(x))
    assert rates == {"0": 0.25}
    assert net.training  # the mode is given back
    assert health.firing_notes(rates) == []


def test_firing_notes_name_dead_and_saturated_layers():
    notes = health.firing_notes({"a": 0.0, "b": 0.3, "c": 0.995, "d": 0.0})
    assert len(notes) == 2
    assert "spiking layers a, d never fired" in notes[0]
    assert "spiking layer c fired in 99% or more" in notes[1]


def test_a_run_at_chance_prints_and_logs_one_note(tmp_path):
    """lr 1e-9: the weights do not move, so after a quarter of the run the accuracy is at chance."""
    from snnkd_cli.train.report import Reporter

    messages = []

    class Collect(Reporter):
        def message(self, text):
            messages.append(text)

    cfg = from_preset("teacher", "synthetic", epochs=4, lr=1e-9, width=4, precision="fp32", out=str(tmp_path / "t"),
                      synthetic_train=128, synthetic_val=64, batch_size=32)  # fmt: skip
    out = train(cfg, reporter=Collect())
    notes = [m for m in messages if m.startswith("note: training accuracy")]
    assert len(notes) == 1 and "after 25% of the run" in notes[0]
    records = [json.loads(line) for line in (tmp_path / "t" / "log.jsonl").read_text().splitlines()]
    assert [r.get("notes") for r in records][1:] == [None, None, None]
    assert records[0]["notes"] == [notes[0].removeprefix("note: ")] == out.fit.notes
    assert records[0]["train_acc"] < health.chance_threshold(10)


def test_a_learning_run_has_no_note(tmp_path):
    from snnkd_cli.train.report import Reporter

    messages = []

    class Collect(Reporter):
        def message(self, text):
            messages.append(text)

    cfg = from_preset("teacher", "synthetic", epochs=4, width=8, precision="fp32", out=str(tmp_path / "t"),
                      synthetic_train=1024, synthetic_val=64, batch_size=32)  # fmt: skip
    out = train(cfg, reporter=Collect())
    assert out.fit.history[0]["train_acc"] >= health.chance_threshold(10)
    assert not [m for m in messages if m.startswith("note: training")] and out.fit.notes == []


def test_check_run_reports_a_dead_student_layer_and_chance():
    net = nn.Sequential(make_lif(0.5))
    net[0].v_threshold = 1e9  # never reached

    class Task:
        spiking = True

        def __call__(self, model, x, y):
            return {}, model(x).mean(0)

    watch = health.Watch(total=8)
    assert not watch.due(1) and watch.due(2)  # ceil(0.25 * 8)
    notes = watch.check_run(net, Task(), torch.ones(3, 2, 4), torch.zeros(2, dtype=torch.long), 50.0, 2)
    assert len(notes) == 2 and "at chance for 2 classes" in notes[0] and "spiking layer 0 never fired" in notes[1]
    assert not watch.due(8)  # once only


def test_a_resumed_run_is_checked_unless_it_resumes_past_the_check():
    assert health.Watch(total=8, started=1).due(2)  # saved before step 2: the check is still to come
    assert not health.Watch(total=8, started=2).due(3)  # saved after it: checked before the save


def test_check_run_reads_the_firing_rates_on_the_first_samples_only():
    """A forward of 16 samples, not the whole batch: the rate is that of those 16, counted by hand."""
    net = nn.Sequential(make_lif(0.5))
    seen = []

    class Task:
        spiking = True

        def __call__(self, model, x, y):
            seen.append((x.shape[0], y.shape[0]))
            return {}, model(x.unsqueeze(0)).mean(0)  # one step: [1, n, 4]

    x = torch.zeros(40, 4)
    x[health.SAMPLES :] = 10.0  # only samples past the first 16 would fire
    x[:4, 0] = 10.0  # 4 of the first 16 samples fire on one of their 4 neurons
    notes = health.Watch(total=4).check_run(net, Task(), x, torch.zeros(40, dtype=torch.long), 90.0, 2)
    assert seen == [(16, 16)] and health.SAMPLES == 16 and notes == []
    rates = health.firing_rates(net, lambda: net(x[:16].unsqueeze(0)))
    assert rates == {"0": 4 / (16 * 4)}
