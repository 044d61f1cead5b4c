"""bench/ablation.py's tables: mean and standard deviation by hand, and the marked block replaced in place."""

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ablation.py"


def load():
    spec = importlib.util.spec_from_file_location("ablation", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


RESULTS = {
    "teachers": [{"dataset": "synthetic", "precision": "bf16", "top1": 96.0, "path": "t"}],
    "runs": [
        {"dataset": "synthetic", "precision": "bf16", "loss": loss, "seed": seed, "train_T": 4, "top1": top1}
        for loss, seed, top1 in [
            ("twce", 0, [80.0, 90.0]),
            ("twce", 1, [84.0, 92.0]),
            ("full-range", 0, [91.0, 93.0]),
            ("full-range", 1, [93.0, 95.0]),
        ]
    ],
}


def test_table_rows_are_mean_and_std_over_seeds():
    md = load().markdown(RESULTS)
    lines = [line for line in md.splitlines() if line.startswith("| twce") or line.startswith("| full-range")]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines}
    # twce at T=1: mean(80, 84) = 82.0, sample std = 2.8; mean over T per seed: 85, 88 -> 86.5 ± 2.1
    assert rows["twce"] == ["82.0 ± 2.8", "91.0 ± 1.4", "86.5 ± 2.1"]
    assert rows["full-range"][0] == f"{statistics.fmean([91, 93]):.1f} ± {statistics.stdev([91, 93]):.1f}"
    assert "ANN teacher 96.0" in md and "seeds 0, 1" in md


def test_doc_block_is_replaced_and_the_rest_kept(tmp_path):
    mod = load()
    doc = tmp_path / "results.md"
    doc.write_text("# Title\n\nintro\n\n<!-- ablation:start -->\nold\n<!-- ablation:end -->\n\nafter\n")
    mod.write_doc(doc, mod.markdown(RESULTS))
    text = doc.read_text()
    assert text.startswith("# Title\n\nintro\n\n<!-- ablation:start -->")
    assert text.endswith("<!-- ablation:end -->\n\nafter\n")
    assert "old" not in text and text.count("<!-- ablation:start -->") == 1
    mod.write_doc(doc, mod.markdown(RESULTS, "precision"), "precision")  # another block is appended, not mixed
    assert doc.read_text().count("<!-- precision:start -->") == 1 and "after" in doc.read_text()


# --------------------------------------------------------------------------- --suite: the three losses on the suite


def _student(seed, loss, top1, side="snnkd"):
    return {"side": side, "seed": seed, "loss": loss, "top1": top1, "teacher_top1": 90.0, "train_acc_last": 99.0}


def _teacher(seed, top1):
    return {"side": "snnkd", "seed": seed, "top1": top1, "seconds": 1.0}


# Made-up parity results of two sets with different max-T (2 and 3), seeds 0 and 1 of each loss. Also there and
# left out of the table: a seed not asked for (2) and another side's student.
DIGITS = {
    "teachers": [_teacher(0, 95.0), _teacher(1, 97.0), _teacher(2, 50.0)],
    "runs": [
        _student(0, "twce", [80.0, 90.0]), _student(1, "twce", [84.0, 92.0]),
        _student(0, "standard-kd", [88.0, 90.0]), _student(1, "standard-kd", [86.0, 94.0]),
        _student(0, "full-range", [91.0, 93.0]), _student(1, "full-range", [85.0, 95.0]),
        _student(2, "full-range", [10.0, 10.0]), _student(0, "full-range", [10.0, 10.0], side="ref"),
    ],
}  # fmt: skip
EVENTS = {
    "teachers": [_teacher(0, 68.0), _teacher(1, 72.0)],
    "runs": [
        _student(0, "twce", [60.0, 70.0, 80.0]), _student(1, "twce", [62.0, 72.0, 76.0]),
        _student(0, "standard-kd", [70.0, 72.0, 74.0]), _student(1, "standard-kd", [72.0, 74.0, 78.0]),
        _student(0, "full-range", [64.0, 74.0, 78.0]), _student(1, "full-range", [62.0, 76.0, 74.0]),
    ],
}  # fmt: skip

# The rows by hand (std: the sample standard deviation; of two values a and b it is |a - b| / sqrt(2)).
SUITE_ROWS = [
    # twce T=1 (80, 84): 82.0 ± 2.8; T=2 (90, 92): 91.0 ± 1.4; per seed over T 85, 88: 86.5 ± 2.1
    "| digits16 | twce | 0,1 | 82.0 ± 2.8 | 91.0 ± 1.4 |  | 86.5 ± 2.1 | |",
    # standard-kd T=1 (88, 86): 87.0 ± 1.4; T=2 (90, 94): 92.0 ± 2.8; per seed 89, 90: 89.5 ± 0.7
    "| digits16 | standard-kd | 0,1 | 87.0 ± 1.4 | 92.0 ± 2.8 |  | 89.5 ± 0.7 | |",
    # full-range T=1 (91, 85): 88.0 ± 4.2; T=2 (93, 95): 94.0 ± 1.4; per seed 92, 90: 91.0 ± 1.4 (seed 2 left out)
    "| digits16 | full-range | 0,1 | 88.0 ± 4.2 | 94.0 ± 1.4 |  | 91.0 ± 1.4 | |",
    # minus twce: T=1 (+11, +1): +6.0 ± 7.1; T=2 (+3, +3): +3.0 ± 0.0; per seed +7, +2: +4.5 ± 3.5;
    # at every T the mean is >= -std (6.0 >= -7.1, 3.0 >= 0): yes
    "| digits16 | full-range - twce | 0,1 | +6.0 ± 7.1 | +3.0 ± 0.0 |  | +4.5 ± 3.5 | at every T: yes |",
    # minus standard-kd: T=1 (+3, -1): +1.0 ± 2.8; T=2 (+3, +1): +2.0 ± 1.4; per seed +3, 0: +1.5 ± 2.1; T=1: yes
    "| digits16 | full-range - standard-kd | 0,1 | +1.0 ± 2.8 | +2.0 ± 1.4 |  | +1.5 ± 2.1 | at T=1: yes |",
    # twce T=1 (60, 62): 61.0 ± 1.4; T=2 (70, 72): 71.0 ± 1.4; T=3 (80, 76): 78.0 ± 2.8; per seed 70, 70: 70.0 ± 0.0
    "| events8 | twce | 0,1 | 61.0 ± 1.4 | 71.0 ± 1.4 | 78.0 ± 2.8 | 70.0 ± 0.0 | |",
    # standard-kd T=1 (70, 72): 71.0 ± 1.4; T=2 (72, 74): 73.0 ± 1.4; T=3 (74, 78): 76.0 ± 2.8;
    # per seed 72, 74.67: 73.3 ± 1.9 (2.67 / sqrt(2) = 1.89)
    "| events8 | standard-kd | 0,1 | 71.0 ± 1.4 | 73.0 ± 1.4 | 76.0 ± 2.8 | 73.3 ± 1.9 | |",
    # full-range T=1 (64, 62): 63.0 ± 1.4; T=2 (74, 76): 75.0 ± 1.4; T=3 (78, 74): 76.0 ± 2.8;
    # per seed 72, 70.67: 71.3 ± 0.9 (1.33 / sqrt(2) = 0.94)
    "| events8 | full-range | 0,1 | 63.0 ± 1.4 | 75.0 ± 1.4 | 76.0 ± 2.8 | 71.3 ± 0.9 | |",
    # minus twce: T=1 (+4, 0): +2.0 ± 2.8; T=2 (+4, +4): +4.0 ± 0.0; T=3 (-2, -2): -2.0 ± 0.0, below -0.0: no at T=3;
    # per seed +2, +0.67: +1.3 ± 0.9
    "| events8 | full-range - twce | 0,1 | +2.0 ± 2.8 | +4.0 ± 0.0 | -2.0 ± 0.0 | +1.3 ± 0.9 | at every T: no (T=3) |",
    # minus standard-kd: T=1 (-6, -10): -8.0 ± 2.8, below -2.8: no; T=2 (+2, +2): +2.0 ± 0.0; T=3 (+4, -4): +0.0 ± 5.7;
    # per seed 0, -4: -2.0 ± 2.8
    "| events8 | full-range - standard-kd | 0,1 | -8.0 ± 2.8 | +2.0 ± 0.0 | +0.0 ± 5.7 | -2.0 ± 2.8 | at T=1: no |",
]  # fmt: skip


def test_suite_table_by_hand():
    text = load().suite_markdown({"digits16": DIGITS, "events8": EVENTS}, "cmd", "abl", ["twce", "standard-kd",
                                 "full-range"], [0, 1])  # fmt: skip
    lines = text.splitlines()
    assert lines[:3] == ["<!-- abl:start -->", "", "`cmd`"] and lines[-1] == "<!-- abl:end -->"
    head = "| set | student | seeds | T=1 | T=2 | T=3 | mean over T | full-range at least it |"
    i = lines.index(head)
    assert lines[i + 1] == "|---" * 8 + "|" and lines[i + 2 : i + 2 + len(SUITE_ROWS)] == SUITE_ROWS
    assert lines[i + 2 + len(SUITE_ROWS)] == ""  # the table ends there
    assert "std): holds on digits16; fails on events8 (twce at T=3; standard-kd at T=1)." in text
    # the teachers of seeds 0, 1: (95, 97) -> 96.0 ± 1.4; (68, 72) -> 70.0 ± 2.8
    assert "shared by its students): digits16 96.0 ± 1.4, events8 70.0 ± 2.8." in text


def test_suite_without_a_pair_decides_nothing():
    runs = {"runs": [_student(0, "full-range", [90.0]), _student(0, "twce", [89.0])]}
    text = load().suite_markdown({"letters": runs}, "cmd", "abl", ["twce", "full-range"], [0])
    # one seed: the difference +1.0 has no std, and is at least 0
    assert "| letters | full-range - twce | 0 | +1.0 | +1.0 | at every T: yes |" in text
    assert "standard-kd" not in text.split("|---")[1].split("Issue")[0]  # no row for a loss not run
    assert "not decided on letters (no full-range and standard-kd students of the same seeds)" in text


def test_suite_runs_parity_and_continues_its_results(tmp_path, capsys):
    """Every run already in OUT/<set>/results.json: bench/parity.py --suite runs nothing again (nor makes data,
    whose folders are there), keeps the runs, and the one table comes from them."""
    out, root, doc = tmp_path / "out", tmp_path / "data", tmp_path / "results.md"
    for folder in ("digits", "digit-events", "digit-events-8x32"):  # the made sets (parity.make_set skips them)
        (root / folder).mkdir(parents=True)
    for name, res in (("digits16", DIGITS), ("events8", EVENTS)):
        (out / name).mkdir(parents=True)
        (out / name / "results.json").write_text(json.dumps(res))
    doc.write_text("# Results\n\n<!-- abl-suite:start -->\nstale table\n<!-- abl-suite:end -->\n\nafter\n")
    argv = ["--suite", "digits16", "events8", "--seeds", "0", "1", "--out", str(out), "--data-root", str(root),
            "--doc", str(doc), "--marker", "abl-suite", "--student-set", "schedule=cosine-step"]  # fmt: skip
    load().main(argv)
    text = doc.read_text()
    assert text.startswith("# Results\n\n<!-- abl-suite:start -->\n\n`python bench/ablation.py --suite digits16")
    assert text.endswith("<!-- abl-suite:end -->\n\nafter\n") and "stale table" not in text
    assert all(row in text for row in SUITE_ROWS)
    for name, res in (("digits16", DIGITS), ("events8", EVENTS)):
        saved = json.loads((out / name / "results.json").read_text())
        assert saved["runs"] == res["runs"] and saved["teachers"] == res["teachers"]  # nothing trained again
        command = saved["args"]["command"]  # what parity.py was asked: snnkd only, the three losses, no doc
        assert "--seeds 0 1 --sides snnkd --losses twce standard-kd full-range" in command
        assert "--no-doc" in command and "--student-set schedule=cosine-step" in command
    assert "== events8:" in capsys.readouterr().out


def test_suite_refuses_options_of_the_plain_grid_and_unknown_sets(capsys):
    mod = load()
    for argv, message in ((["--suite", "--precision", "fp32"], "--precision: not with --suite"),
                          (["--suite", "nosuchset"], "--suite: no set nosuchset"),
                          (["--teachers-from", "x"], "--teachers-from: only with --suite")):  # fmt: skip
        with pytest.raises(SystemExit) as err:
            mod.main(argv)
        assert err.value.code == 2 and message in capsys.readouterr().err
