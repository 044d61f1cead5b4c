"""Early exit: the post-hoc rule against a hand-written per-sample loop, the threshold choice, the sweep's
trace, and the runtime that drops exited samples against the rule and against each sample run alone."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from spikingjelly.activation_based import functional
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import firing_student, hand_rule
from snnkd_cli.checkpoint import load_checkpoint, read_metadata, save_checkpoint, store_exit_rule, stored_exit_rule
from snnkd_cli.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from snnkd_cli.data import calibration_split
from snnkd_cli.errors import SnnkdError
from snnkd_cli.evaluation.early_exit import (
    DynamicOptions,
    ExitTrace,
    binary_entropy,
    choose_threshold,
    early_exit,
    evaluate_dynamic,
    exit_rule_record,
    exit_scores,
    relative_energy,
    running_mean,
    running_share,
)
from snnkd_cli.evaluation.sweep import sweep
from snnkd_cli.inference.exit_runtime import EarlyExitClassifier
from snnkd_cli.models.contract import time_major

TMAX = 5


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors on a busy 2-core machine: faster


def random_logits(T=6, N=40, C=5, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(1, N, 1, generator=g, dtype=torch.float64) * 3  # some samples confident, some not
    return torch.randn(T, N, C, generator=g, dtype=torch.float64) * scale


# --- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "thresholds"),
    [("confidence", [0.31, 0.5, 0.77, 0.93, None]), ("entropy", [1.37, 0.9, 0.41, 0.05, None])],
)
def test_rule_equals_a_hand_written_loop(rule, thresholds):
    logits = random_logits()
    spread = set()
    for thr in thresholds:
        step, pred = early_exit(logits, thr, rule)
        want_step, want_pred = hand_rule(logits, thr, rule)
        assert step.tolist() == want_step and pred.tolist() == want_pred
        spread |= set(want_step)
    assert len(spread) >= 4  # the thresholds make samples exit at many different steps


def test_trace_decide_and_evaluate_equal_the_rule():
    logits = random_logits(seed=1)
    y = torch.randint(0, 5, (40,), generator=torch.Generator().manual_seed(2))
    trace = ExitTrace.from_running(running_mean(logits), y)
    for rule, thr in (("confidence", 0.6), ("entropy", 0.8)):
        step, pred = trace.decide(thr, rule)
        want_step, want_pred = hand_rule(logits, thr, rule)
        assert step.tolist() == want_step and pred.tolist() == want_pred
        point = trace.evaluate(thr, rule)
        assert point["threshold"] == thr
        assert point["top1"] == pytest.approx(100.0 * sum(p == int(t) for p, t in zip(want_pred, y, strict=True)) / 40)
        assert point["mean_T"] == pytest.approx(sum(want_step) / 40)
        assert point["exit_share"] == pytest.approx([want_step.count(t) / 40 for t in range(1, 7)])
        assert sum(point["exit_share"]) == pytest.approx(1.0)
    for t in range(1, 7):  # a fixed run of t steps: the prediction after step t
        want = 100.0 * int((logits[:t].mean(0).argmax(-1) == y).sum()) / 40
        assert trace.fixed_top1(t) == pytest.approx(want)
    never = trace.evaluate(None)
    assert never["mean_T"] == 6 and never["exit_share"][-1] == 1 and never["top1"] == trace.fixed_top1(6)


def test_scores_by_hand():
    running = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]], dtype=torch.float64)  # [T=2, N=1, C=2]
    assert exit_scores(running, "confidence").flatten().tolist() == pytest.approx([0.5, 0.75])
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert exit_scores(running, "entropy").flatten().tolist() == pytest.approx([math.log(2), h])


def test_choose_threshold_lowest_mean_T_within_the_drop():
    pts = [
        {"threshold": 0.5, "top1": 80.0, "mean_T": 1.5},
        {"threshold": 0.7, "top1": 89.6, "mean_T": 2.0},
        {"threshold": 0.8, "top1": 90.0, "mean_T": 2.5},
        {"threshold": 0.9, "top1": 90.4, "mean_T": 3.0},
    ]
    assert choose_threshold(pts, 90.0, 0.5)["threshold"] == 0.7
    assert choose_threshold(pts, 90.0, 0.4)["threshold"] == 0.7  # 89.6 is exactly 0.4 below: within
    assert choose_threshold(pts, 90.0, 0.3)["threshold"] == 0.8
    assert choose_threshold(pts, 90.0, 10.0)["threshold"] == 0.5
    assert choose_threshold(pts, 95.0, 0.5) is None
    ties = [{"threshold": t, "top1": a, "mean_T": 2.0} for t, a in ((0.6, 85.0), (0.7, 88.0), (0.8, 88.0))]
    assert choose_threshold(ties, 88.0, 5.0)["threshold"] == 0.8  # same mean T: higher top-1, then more cautious


def test_evaluate_dynamic_chooses_on_calibration_and_reports_evaluation():
    calib = ExitTrace.from_running(running_mean(random_logits(seed=3)), torch.randint(0, 5, (40,)))
    evaluation = ExitTrace.from_running(running_mean(random_logits(seed=4)), torch.randint(0, 5, (40,)))
    opts = DynamicOptions(thresholds=(0.3, 0.5, 0.7, 0.9), max_drop=2.5, seen_floor=0.0)
    res = evaluate_dynamic(evaluation, calib, opts)
    pts = [calib.evaluate(t) for t in (0.3, 0.5, 0.7, 0.9)]
    pick = choose_threshold(pts, calib.fixed_top1(6), 2.5)
    assert res.chosen["threshold"] == (pick["threshold"] if pick else None)
    at = evaluation.evaluate(res.chosen["threshold"])
    assert (res.chosen["top1"], res.chosen["mean_T"], res.chosen["exit_share"]) == (
        at["top1"],
        at["mean_T"],
        at["exit_share"],
    )
    assert [p["threshold"] for p in res.curve] == [0.3, 0.5, 0.7, 0.9]
    assert res.curve == [evaluation.evaluate(t) for t in (0.3, 0.5, 0.7, 0.9)]
    assert res.calib_samples == 40 and res.max_T == 6
    data = res.to_json()
    assert {"rule", "curve", "chosen"} <= set(data)
    assert {"threshold", "top1", "mean_T", "calib_top1", "calib_mean_T"} <= set(data["chosen"])
    impossible = evaluate_dynamic(evaluation, calib, DynamicOptions(thresholds=(0.3,), max_drop=0.0, seen_floor=0.0))
    if calib.evaluate(0.3)["top1"] < calib.fixed_top1(6):
        assert impossible.chosen["threshold"] is None and impossible.chosen["mean_T"] == 6


def test_a_seen_slice_searches_from_the_floor():
    """Two steps, four samples of class 0, every one right and sure at step 1 (a slice the student trained on):
    without a floor the earliest threshold keeps the calibration top-1 and is chosen; with the floor 0.9 the
    search starts there; held out, no floor. Entropy: the floor is the entropy of [0.9, 0.1], 0.3251 nats
    (0.9 ln(1/0.9) + 0.1 ln 10 = 0.0948 + 0.2303), placed in the grid."""
    conf = torch.full((2, 4), 0.99)
    calib = ExitTrace(conf, torch.full((2, 4), 0.05), torch.zeros(2, 4, dtype=torch.long), torch.zeros(4).long())
    evaluation = calib
    grid = (0.5, 0.8, 0.9, 0.95)
    off = evaluate_dynamic(evaluation, calib, DynamicOptions(thresholds=grid, seen_floor=0.0))
    assert (off.chosen["threshold"], off.seen_floor) == (0.95, None)  # same mean T 1: the most cautious tie
    calib.confidence[0] = torch.tensor([0.6, 0.85, 0.92, 0.99])  # step 1: three samples below 0.95
    off = evaluate_dynamic(evaluation, calib, DynamicOptions(thresholds=grid, seen_floor=0.0))
    assert off.chosen["threshold"] == 0.5  # everything keeps 100%: the earliest (mean T 1)
    on = evaluate_dynamic(evaluation, calib, DynamicOptions(thresholds=grid))
    # from 0.9 on: 0.9 exits samples 3, 4 at step 1 and 1, 2 at step 2 -> mean T 1.5; 0.95 exits one -> 1.75
    assert (on.chosen["threshold"], on.chosen["calib_mean_T"], on.seen_floor) == (0.9, 1.5, 0.9)
    assert [p["threshold"] for p in on.curve] == list(grid)  # the whole curve is still shown
    held = evaluate_dynamic(evaluation, calib, DynamicOptions(thresholds=grid, calib_held_out=True))
    assert (held.chosen["threshold"], held.seen_floor) == (0.5, None)
    ent = DynamicOptions(rule="entropy", thresholds=(1.0, 0.5, 0.1))
    assert ent.floor() == 0.3251 and ent.grid() == [1.0, 0.5, 0.3251, 0.1] and ent.searched() == [0.3251, 0.1]
    assert binary_entropy(0.9) == pytest.approx(0.9 * math.log(1 / 0.9) + 0.1 * math.log(10))


def test_energy_hook():
    share = [0.5, 0.25, 0.0, 0.25]
    assert running_share(share) == [1.0, 0.5, 0.25, 0.25]
    assert relative_energy(share) == pytest.approx((1 * 0.5 + 2 * 0.25 + 4 * 0.25) / 4)  # mean T / Tmax
    assert relative_energy(share, [4, 1, 1, 1]) == pytest.approx((4 + 0.5 + 0.25 + 0.25) / 7)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"rule": "margin"}, "unknown exit rule 'margin'"),
        ({"calib_fraction": 0.0}, r"^calib_fraction must be in \(0, 1\]"),  # Python names from Python
        ({"calib_fraction": 1.5}, "^calib_fraction"),
        ({"max_drop": -1.0}, "^max_drop must be >= 0"),
        ({"thresholds": (0.5, 1.5)}, r"\[0, 1\]"),
        ({"rule": "entropy", "thresholds": (-0.1,)}, "nats"),
        ({"seen_floor": 1.0}, r"^seen_floor must be in \[0, 1\)"),
        ({"seen_floor": -0.1}, "^seen_floor"),
    ],
)
def test_dynamic_options_errors(kw, words):
    with pytest.raises(SnnkdError, match=words):
        DynamicOptions(**kw)


# --- the sweep keeps what the rule needs, from the same pass -------------------------------------


def test_sweep_trace_comes_from_the_same_pass():
    net = firing_student(torch.float32)
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(20, 3, 16, 16, generator=g) * 2, torch.randint(0, 10, (20,), generator=g))
    loader = DataLoader(ds, batch_size=8)
    plain = sweep(net, loader, TMAX)
    res = sweep(net, loader, TMAX, keep_trace=True)
    assert plain.trace is None and res.rows == plain.rows  # the existing results do not change
    assert res.trace.pred.shape == (TMAX, 20) and res.trace.target.tolist() == ds.tensors[1].tolist()
    for t in range(1, TMAX + 1):
        assert res.trace.fixed_top1(t) == res.at(t)["top1"]
    with torch.no_grad():
        functional.reset_net(net)
        logits = net(time_major(ds.tensors[0], TMAX, False))
    want = ExitTrace.from_running(running_mean(logits), ds.tensors[1])
    torch.testing.assert_close(res.trace.confidence, want.confidence)
    assert torch.equal(res.trace.pred, want.pred)


def test_calibration_split_is_a_fixed_slice_of_the_training_split():
    cfg = DataConfig(dataset="synthetic", synthetic_train=200, synthetic_val=50)
    a, b = calibration_split(cfg, 0.1), calibration_split(cfg, 0.1)
    assert len(a) == 20 and a.indices == b.indices  # ceil(0.1 * 200), same seed, same slice
    assert a.indices != calibration_split(cfg, 0.1, seed=1).indices
    train_images = a.dataset.images
    assert all(torch.equal(a[i][0], train_images[j]) for i, j in enumerate(a.indices))
    assert len(calibration_split(cfg, 0.001)) == 1


def test_calibration_split_uses_evaluation_transforms(image_folder):
    cfg = DataConfig(dataset="imagefolder", data_dir=str(image_folder), image_size=16)
    cal = calibration_split(cfg, 0.5)
    assert len(cal) == 6  # half of 3 classes x 4 training images
    x1, x2 = cal[0][0], cal[0][0]
    assert torch.equal(x1, x2)  # deterministic: no random crop or flip


# --- the runtime ---------------------------------------------------------------------------------


def _threshold_between(scores: torch.Tensor, q: float) -> float:
    """A threshold halfway between two neighbouring scores (far from any score: no rounding ties)."""
    s = scores.flatten().sort().values
    i = int(q * (len(s) - 1))
    return float((s[i] + s[i + 1]) / 2)


@pytest.mark.parametrize("rule", ["confidence", "entropy"])
@pytest.mark.parametrize("temporal", [False, True], ids=["images", "events"])
def test_runtime_equals_the_post_hoc_rule(rule, temporal):
    net = firing_student(in_channels=2 if temporal else 3)
    g = torch.Generator().manual_seed(1)
    shape = (12, TMAX, 2, 16, 16) if temporal else (12, 3, 16, 16)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 2
    with torch.no_grad():
        functional.reset_net(net)
        logits = net(time_major(x, TMAX, temporal))  # one multi-step pass at Tmax
    scores = exit_scores(running_mean(logits)[:-1], rule)
    thr = _threshold_between(scores, 0.6 if rule == "confidence" else 0.4)
    want_step, want_pred = early_exit(logits, thr, rule)
    assert len(set(want_step.tolist())) >= 3  # samples leave the batch at several steps
    out = EarlyExitClassifier(net, thr, rule, TMAX, temporal)(x)
    assert out.step.tolist() == want_step.tolist() and out.pred.tolist() == want_pred.tolist()
    assert out.sample_steps == int(want_step.sum()) < 12 * TMAX  # later steps ran on fewer samples
    at_exit = running_mean(logits)[want_step - 1, torch.arange(12)]
    torch.testing.assert_close(out.logits, at_exit, atol=1e-10, rtol=0)
    torch.testing.assert_close(out.prob, torch.softmax(at_exit, -1).max(-1).values, atol=1e-12, rtol=0)


def test_runtime_carries_each_samples_state_when_the_batch_shrinks():
    """Each sample's output equals a run of that sample alone (no other sample in its batch, no shrinking)."""
    net = firing_student()
    x = torch.randn(10, 3, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    with torch.no_grad():
        functional.reset_net(net)
        logits = net(time_major(x, TMAX, False))
    thr = _threshold_between(exit_scores(running_mean(logits)[:-1], "confidence"), 0.5)
    clf = EarlyExitClassifier(net, thr, max_T=TMAX)
    together = clf(x)
    assert len(set(together.step.tolist())) >= 3
    for i in range(10):
        alone = clf(x[i : i + 1])
        with torch.no_grad():
            functional.reset_net(net)
            own = running_mean(net(time_major(x[i : i + 1], TMAX, False)))[:, 0]  # [T, C]
        t = int(together.step[i])
        assert int(alone.step[0]) == t and int(alone.pred[0]) == int(together.pred[i])
        torch.testing.assert_close(together.logits[i], own[t - 1], atol=1e-10, rtol=0)
        torch.testing.assert_close(alone.logits[0], own[t - 1], atol=1e-10, rtol=0)


def test_runtime_without_threshold_runs_every_step_and_resets():
    net = firing_student()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = EarlyExitClassifier(net, None, max_T=3)(x)
    assert out.step.tolist() == [3] * 4 and out.sample_steps == 12
    again = EarlyExitClassifier(net, None, max_T=3)(x)  # state reset after each call
    assert torch.equal(out.logits, again.logits)
    empty = EarlyExitClassifier(net, 0.5, max_T=3)(x[:0])
    assert empty.pred.shape == (0,) and empty.sample_steps == 0


class Accumulator(nn.Module):
    """A stateful layer outside spikingjelly: its own reset(), and select_batch when narrowable."""

    def __init__(self, narrowable: bool) -> None:
        super().__init__()
        self.acc = None
        if narrowable:
            self.select_batch = lambda index: setattr(self, "acc", self.acc[:, index])  # [T, B, C]

    def reset(self) -> None:
        self.acc = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, C] -> [T, B, C]: running sum over calls
        self.acc = x.cumsum(0) if self.acc is None else self.acc[-1:] + x.cumsum(0)
        return self.acc


def test_runtime_needs_select_batch_for_foreign_state():
    with pytest.raises(SnnkdError, match="define select_batch"):
        EarlyExitClassifier(nn.Sequential(nn.Flatten(2), Accumulator(False)), 0.5, max_T=3)
    net = nn.Sequential(nn.Flatten(2), Accumulator(True))
    x = torch.randn(6, 1, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    logits = net(time_major(x, 4, False))
    net[1].reset()
    thr = _threshold_between(exit_scores(running_mean(logits)[:-1], "confidence"), 0.5)
    out = EarlyExitClassifier(net, thr, max_T=4)(x)
    step, pred = early_exit(logits, thr)
    assert out.step.tolist() == step.tolist() and out.pred.tolist() == pred.tolist()


# --- the stored threshold --------------------------------------------------------------------------


def test_store_exit_rule_rewrites_only_the_metadata(tmp_path):
    net = firing_student(torch.float32)
    cfg = RunConfig(task="distill", data=DataConfig(image_size=16), model=ModelConfig(width=8), train=TrainConfig())
    path = tmp_path / "s.safetensors"
    save_checkpoint(path, net.state_dict(), "student", cfg, {"metrics": {"best_epoch": 3}})
    before_meta, before = read_metadata(path), load_file(str(path))
    trace = ExitTrace.from_running(running_mean(random_logits(seed=5)), torch.randint(0, 5, (40,)))
    res = evaluate_dynamic(trace, trace, DynamicOptions(thresholds=(0.4, 0.6, 0.8)))
    stored = store_exit_rule(path, exit_rule_record(res))
    after = read_metadata(path)
    assert {k: v for k, v in after.items() if k != "early_exit"} == before_meta
    assert json.loads(after["early_exit"]) == stored == stored_exit_rule(after)
    assert stored["rule"] == "confidence" and stored["threshold"] == res.chosen["threshold"] and stored["max_T"] == 6
    got = load_file(str(path))
    assert got.keys() == before.keys() and all(torch.equal(got[k], before[k]) for k in got)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]  # no temporary file left
    assert load_checkpoint(path).kind == "student"
    with pytest.raises(SnnkdError, match="cannot be read"):
        stored_exit_rule({"early_exit": "{not json"})
    with pytest.raises(SnnkdError, match="cannot be read.*unknown exit rule 'margin'"):
        stored_exit_rule({"early_exit": json.dumps({**stored, "rule": "margin"})})


def test_held_out_slice_is_left_out_of_training():
    from snnkd_cli.config import from_preset
    from snnkd_cli.data import calibration_indices
    from snnkd_cli.dist import DistEnv
    from snnkd_cli.train.run import resolve_run

    small, large = calibration_indices(200, 0.05), calibration_indices(200, 0.1)
    assert set(small) < set(large) and len(large) == 20  # a smaller fraction is a subset of a larger one
    cfg = from_preset("distill", "synthetic", calib_holdout=0.1, loss="twce")
    setup = resolve_run(cfg, torch.device("cpu"), DistEnv())
    tr, cfg = setup.train_set, setup.config
    assert len(tr) == 1800 and cfg.data.calib_holdout == 0.1
    assert not set(tr.indices) & set(calibration_split(cfg.data, 0.1).indices)
    with pytest.raises(SnnkdError, match="^calib_holdout must be in"):
        from_preset("distill", "synthetic", calib_holdout=1.0)


@pytest.mark.parametrize(
    ("fraction", "holdout", "want"),
    [(None, 0.1, (0.1, True)), (0.05, 0.1, (0.05, True)), (0.2, 0.1, (0.2, False)), (None, 0.0, (0.1, False))],
)
def test_calibration_fraction_defaults_to_the_held_out_share(fraction, holdout, want):
    opts = DynamicOptions(calib_fraction=fraction).resolve(holdout)
    assert (opts.calib_fraction, opts.calib_held_out) == want
