"""bench/parity.py: its reference loss is a second implementation of snnkd's, and a tiny grid runs end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from snnkd_cli.kd import losses

pytestmark = pytest.mark.usefixtures("one_thread")

_spec = importlib.util.spec_from_file_location("parity", Path(__file__).parents[1] / "bench" / "parity.py")
parity = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("parity", parity)  # its dataclasses look their module up there
_spec.loader.exec_module(parity)


@pytest.mark.parametrize("seed", [0, 1])
def test_reference_loss_equals_snnkds(seed):
    """The paper's objective written as its code does (loops over t, the ensemble with an epsilon) equals
    snnkd's vectorised losses, including samples with no correct step (uniform target)."""
    g = torch.Generator().manual_seed(seed)
    s, z = torch.randn(5, 16, 7, generator=g), torch.randn(16, 7, generator=g)
    y = torch.randint(0, 7, (16,), generator=g)
    y[0] = (s[:, 0].argmax(-1) + 1)[0] % 7  # make sure some sample has no correct step
    s[:, 0, y[0]] = -10.0
    full = parity.ref_loss(s, z, y, "full-range", 0.2, 0.5, 3.0)
    ours = losses.combine_full_range_terms(losses.full_range_kd_terms(s, z, y, temperature=3.0), alpha=0.2, beta=0.5)
    torch.testing.assert_close(full, ours, rtol=1e-5, atol=1e-6)
    std = parity.ref_loss(s, z, y, "standard-kd", 0.2, 0.5, 3.0)
    torch.testing.assert_close(std, losses.standard_kd_loss(s, z, y, alpha=0.2, temperature=3.0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parity.ref_loss(s, z, y, "twce", 0.2, 0.5, 3.0), losses.twce_loss(s, y))


def test_tiny_grid_writes_results_and_table(tmp_path):
    argv = ["--dataset", "synthetic", "--synthetic-train", "192", "--synthetic-val", "64", "--epochs", "1",
            "--batch-size", "32", "--T", "2", "--max-T", "3", "--width", "4", "--seeds", "0",
            "--losses", "full-range", "--out", str(tmp_path / "p"), "--doc", str(tmp_path / "r.md"),
            "--marker", "parity-test", "--snnkd-set", "precision=fp32",
            "--student-set", "neuron_precision=fp32"]  # fmt: skip
    res = parity.main(argv)
    runs = {r["side"]: r for r in res["runs"]}
    assert set(runs) == {"ref", "snnkd"} and all(len(r["top1"]) == 3 for r in runs.values())
    assert json.loads((tmp_path / "p" / "results.json").read_text())["runs"] == res["runs"]
    text = (tmp_path / "r.md").read_text()
    assert "<!-- parity-test:start -->" in text and "| full-range | **snnkd - ref** |" in text
    assert "; snnkd with precision=fp32; snnkd's student with neuron_precision=fp32." in text  # what was changed
    gap = text.split("**snnkd - ref** | | ")[1].split(" | ")[0]
    expected = runs["snnkd"]["top1"][0] - runs["ref"]["top1"][0]
    assert float(gap) == pytest.approx(expected, abs=0.051)
    exit_ = runs["snnkd"]["exit"]  # the default early exit, against the best fixed T of the same sweep
    assert exit_["best_fixed_top1"] == max(runs["snnkd"]["top1"]) == runs["snnkd"]["top1"][exit_["best_fixed_T"] - 1]
    assert 1.0 <= exit_["mean_T"] <= 3.0 and exit_["held_out"] is False and exit_["max_drop"] == 0.5
    # a second call continues: nothing is run again
    again = parity.main(argv)
    assert again["runs"] == res["runs"]
    # a loss added to the same --out: its student is distilled from the teacher already there, not a new one
    teacher_file = tmp_path / "p" / "snnkd-teacher-seed0" / "best.safetensors"
    before = teacher_file.stat().st_mtime_ns
    more = parity.main([*argv[: argv.index("--losses")], "--losses", "twce", *argv[argv.index("--losses") + 2 :],
                        "--sides", "snnkd", "--no-doc"])  # fmt: skip
    assert teacher_file.stat().st_mtime_ns == before
    twce = next(r for r in more["runs"] if r["loss"] == "twce")
    assert twce["teacher_top1"] == runs["snnkd"]["teacher_top1"]
    # --teachers-from: the same teacher checkpoint, evaluated and used, not trained again
    reuse = [*argv[: argv.index("--seeds")], "--seeds", "0", "--sides", "snnkd", "--losses", "twce", "--no-doc",
             "--teachers-from", str(tmp_path / "p"), "--out", str(tmp_path / "p2")]  # fmt: skip
    second = parity.main(reuse)
    first_teacher = next(t for t in res["teachers"] if t["side"] == "snnkd")
    assert second["teachers"][0]["top1"] == first_teacher["top1"] == second["runs"][0]["teacher_top1"]
    assert not (tmp_path / "p2" / "snnkd-teacher-seed0").exists()
    with pytest.raises(SystemExit, match="no .*snnkd-teacher-seed1"):
        parity.main([*reuse[:-2], "--seeds", "1", "--out", str(tmp_path / "p3")])


def _run(side, seed, top1):
    return {"side": side, "seed": seed, "loss": "full-range", "top1": top1, "teacher_top1": 90.0, "train_acc_last": 1.0}


def test_the_suite_table_takes_the_better_reference_per_set():
    """By hand: ref's mean over T is 50, ref-step's 61, so the gap is taken against ref-step."""
    runs = [_run("ref", 0, [40.0, 60.0]), _run("ref", 1, [40.0, 60.0]), _run("ref-step", 0, [58.0, 62.0])]
    runs += [_run("ref-step", 1, [60.0, 64.0]), _run("snnkd", 0, [60.0, 66.0]), _run("snnkd", 1, [62.0, 66.0])]
    by_side = {s: [r for r in runs if r["side"] == s] for s in parity.SIDES}
    assert parity.best_reference(by_side) == "ref-step"
    assert parity.gaps(by_side["snnkd"], by_side["ref-step"]) == [2.0, 3.0]
    runs[-2]["exit"] = {"top1": 64.0, "mean_T": 1.5, "best_fixed_top1": 66.0}
    runs[-1]["exit"] = {"top1": 66.0, "mean_T": 1.0, "best_fixed_top1": 66.0}
    text = parity.suite_markdown({"digits16": {"runs": runs}}, "cmd", "parity-suite")
    assert "| digits16 | full-range | ref-step | +2.0 | +3.0 | +2.5 |" in text
    # early exit: top-1 (64, 66), mean T (1.5, 1.0), exit minus the best fixed T (-2, 0), by hand
    assert "| digits16 | full-range | 61.0 ± 1.4 | 66.0 ± 0.0 | 63.5 | 65.0 ± 1.4 | 1.2 ± 0.4 | -1.0 ± 1.4 |" in text


def test_teacher_and_student_sets_reach_only_their_command_and_the_suite_forwards_them():
    """``--teacher-set`` changes the teacher's config only, ``--student-set`` the student's only, ``--snnkd-set``
    both; a suite run hands all three (and the reference lrs) on to every set."""
    args = parity.parse_args(["--snnkd-set", "precision=fp32", "--teacher-set", "lr=0.02",
                              "--student-set", "schedule=cosine-step", "--ref-teacher-lr", "0.03"])  # fmt: skip
    teacher, student = parity.snnkd_overrides(args, args.teacher_set), parity.snnkd_overrides(args, args.student_set)
    assert (teacher["lr"], teacher["precision"], "schedule" in teacher) == (0.02, "fp32", False)
    assert (student["schedule"], student["precision"], "lr" in student) == ("cosine-step", "fp32", False)
    argv = parity.suite_argv(args)
    for pair in (["--teacher-set", "lr=0.02"], ["--student-set", "schedule=cosine-step"], ["--ref-teacher-lr", "0.03"]):
        i = argv.index(pair[0])
        assert argv[i : i + 2] == pair
    again = parity.parse_args([*argv, "--out", "x"])
    assert (again.teacher_set, again.student_set, again.ref_teacher_lr) == (["lr=0.02"], ["schedule=cosine-step"], 0.03)
