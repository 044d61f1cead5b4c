"""The ``snnkd`` command line end to end, in-process with typer's CliRunner (stdout and stderr kept apart).

Checkpoints come from the session fixtures in conftest.py (tiny runs through the CLI itself). Numbers are
compared with what the engine computes when called directly, not just "it ran".
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
import torchvision
import typer
from PIL import Image
from safetensors.torch import save_file

import paper_nets
from conftest import STUDENT_T, TINY, one_torch_thread
from helpers import assert_clean_run_dir, assert_one_line_error, files_under
from snnkd_cli import __version__
from snnkd_cli.checkpoint import load_checkpoint, read_metadata
from snnkd_cli.cli.app import app
from snnkd_cli.evaluation.evaluate import evaluate_checkpoint

COMMANDS = (
    "train-teacher",
    "distill",
    "eval-sweep",
    "predict",
    "preprocess-dvs",
    "export",
    "quickstart",
    "models",
    "import",
)
SWEEP_MAX_T = 3
SWEEP_ENTRY_KEYS = {
    *("path", "kind", "arch", "dataset", "train_T", "loss", "num_samples", "sweep", "precision", "results")
}  # README


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that ignored --out would write runs/... here, not in the repository."""
    monkeypatch.chdir(tmp_path)


# --- version and help --------------------------------------------------------------------------


def test_version(cli) -> None:
    res = cli(["--version"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == f"snnkd {__version__}"
    assert __version__ == version("snnkd")


def test_help_lists_every_command(cli) -> None:
    assert set(typer.main.get_command(app).commands) == set(COMMANDS)
    for args in (["--help"], ["-h"]):
        res = cli(args)
        assert res.exit_code == 0, res.output
        for name in COMMANDS:
            assert name in res.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_working_help(cli, name: str) -> None:
    res = cli([name, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.stdout and name in res.stdout
    doc = typer.main.get_command(app).commands[name].help
    assert doc and doc.split()[0] in res.stdout


@pytest.mark.parametrize("name", ["train-teacher", "distill", "eval-sweep", "predict"])
def test_every_option_has_help_text(cli, name: str) -> None:
    command = typer.main.get_command(app).commands[name]
    assert command.params
    for param in command.params:
        assert (param.help or "").strip(), f"{name}: {param.name} has no help text"
    shown = cli([name, "--help"]).stdout
    for param in command.params:
        for opt in param.opts:
            if opt.startswith("--"):
                assert opt in shown, f"{name} --help does not show {opt}"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["distill", "--no-such-option"], "No such option: --no-such-option"),
        (["eval-sweep"], "Missing argument 'checkpoints'; see 'snnkd eval-sweep -h'"),
        (["distill", "--T", "x"], "Invalid value for '--T' / '-T'"),
        (["no-such-command"], "No such command 'no-such-command'; see 'snnkd -h'"),
    ],
)
def test_a_usage_error_is_one_line(cli, args: list[str], fragment: str) -> None:
    """Click's mistakes (an unknown option or command, a bad value, a missing argument) read as snnkd's own."""
    line = assert_one_line_error(cli(args), fragment)
    assert "Usage:" not in line and line.endswith(" -h'"), line


# --- training through the CLI ------------------------------------------------------------------


def test_train_teacher_writes_checkpoints_and_config(teacher_dir: Path) -> None:
    assert_clean_run_dir(teacher_dir)
    saved = json.loads((teacher_dir / "config.json").read_text())
    assert saved["task"] == "teacher" and saved["kd"] is None
    assert saved["model"] == {**saved["model"], "arch": "resnet18", "kind": "ann", "width": 8, "num_classes": 10}
    assert (saved["train"]["epochs"], saved["train"]["max_steps"], saved["train"]["batch_size"]) == (1, 2, 32)
    assert saved["data"]["dataset"] == "synthetic" and saved["data"]["image_size"] == 16
    # the default precision "auto" is saved as what ran: bf16 on a CPU with native bf16, else fp32
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert saved["train"]["precision"] == ("bf16" if native else "fp32")
    for name in ("best.safetensors", "last.safetensors"):
        ckpt = load_checkpoint(teacher_dir / name)
        assert ckpt.kind == "teacher"
        assert dataclasses.asdict(ckpt.config) == saved  # the checkpoint rebuilds the run that wrote it
        assert ckpt.meta["epoch"] == "1"


def test_distill_writes_checkpoints_and_config(student_dir: Path, teacher_ckpt: Path) -> None:
    assert_clean_run_dir(student_dir)
    saved = json.loads((student_dir / "config.json").read_text())
    assert saved["task"] == "distill"
    assert saved["kd"]["loss"] == "full-range" and saved["kd"]["teacher"] == str(teacher_ckpt)
    assert saved["train"]["T"] == STUDENT_T and saved["model"]["kind"] == "snn" and saved["model"]["width"] == 8
    assert saved["teacher_model"] == dataclasses.asdict(load_checkpoint(teacher_ckpt).config.model)
    ckpt = load_checkpoint(student_dir / "best.safetensors", expect="student")
    assert dataclasses.asdict(ckpt.config) == saved


def test_bn_weight_decay_and_keep_last_reach_the_run(cli, tmp_path: Path) -> None:
    """The two switches land in the run's config (and so in its checkpoints); the defaults are off and on."""
    res = cli(["train-teacher", *TINY, "--bn-weight-decay", "--keep-last", "--out", tmp_path / "t"])
    assert res.exit_code == 0, res.output
    train = json.loads((tmp_path / "t" / "config.json").read_text())["train"]
    assert (train["bn_weight_decay"], train["drop_last"]) == (True, False)
    res = cli(["train-teacher", *TINY, "--out", tmp_path / "d"])
    train = json.loads((tmp_path / "d" / "config.json").read_text())["train"]
    assert (train["bn_weight_decay"], train["drop_last"]) == (False, True)


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_metrics_stored_at_training_equal_a_fresh_evaluation(request: pytest.FixtureRequest, which: str) -> None:
    """The validation written into best.safetensors is what re-evaluating that file from disk gives."""
    path = request.getfixturevalue(f"{which}_ckpt")
    stored = json.loads(read_metadata(path)["metrics"])
    _, res = evaluate_checkpoint(path)
    assert stored["val"] == res.rows
    assert stored["best_epoch"] == 1
    assert [r["T"] for r in res.rows] == ([1, 2] if which == "student" else [None])


def test_distill_twce_needs_no_teacher(cli, tmp_path: Path) -> None:
    out = tmp_path / "twce"
    res = cli(["distill", "--loss", "twce", "--T", "2", *TINY, "--out", out])
    assert res.exit_code == 0, res.output
    assert_clean_run_dir(out)
    ckpt = load_checkpoint(out / "best.safetensors", expect="student")
    assert ckpt.config.kd.loss == "twce" and ckpt.config.kd.teacher == "" and ckpt.config.teacher_model is None
    assert [r["T"] for r in ckpt.metrics["val"]] == [1, 2]
    assert "best epoch 1" in res.stderr and "loss twce" in " ".join(res.stdout.split())


@pytest.mark.slow
def test_quickstart_trains_both_and_sweeps(cli, tmp_path: Path) -> None:
    out = tmp_path / "qs"
    res = cli(
        ["quickstart", "--out", out, "--teacher-epochs", "1", "--student-epochs", "1", "--T", "1", "--max-T", "2"]
    )
    assert res.exit_code == 0, res.output
    assert_clean_run_dir(out / "teacher")
    assert_clean_run_dir(out / "student")
    student = load_checkpoint(out / "student" / "best.safetensors", expect="student")
    assert student.config.kd.teacher == str(out / "teacher" / "best.safetensors")
    data = json.loads((out / "sweep.json").read_text())
    s, t = data["checkpoints"]
    assert s["path"] == str(out / "student" / "best.safetensors") and s["train_T"] == 1
    assert [r["T"] for r in s["results"]] == [1, 2] and [r["T"] for r in t["results"]] == [None]
    assert s["results"] == evaluate_checkpoint(s["path"], 2)[1].rows
    assert t["results"] == evaluate_checkpoint(t["path"])[1].rows
    before = {p: p.read_bytes() for p in files_under(out)}  # a second quickstart keeps the first
    again = cli(["quickstart", "--out", out, "--teacher-epochs", "1", "--student-epochs", "1", "--T", "1"])
    assert_one_line_error(again, "already holds a quickstart run: pass --overwrite")
    assert {p: p.read_bytes() for p in files_under(out)} == before


# --- eval-sweep ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep_run(cli, tmp_path_factory: pytest.TempPathFactory, student_ckpt: Path, teacher_ckpt: Path):
    """``snnkd eval-sweep STUDENT TEACHER --max-T 3 --json J --csv C``: (result, JSON data, CSV rows, folder)."""
    folder = tmp_path_factory.mktemp("sweep")
    j, c = folder / "sweep.json", folder / "sweep.csv"
    res = cli(["eval-sweep", student_ckpt, teacher_ckpt, "--max-T", SWEEP_MAX_T, "--json", j, "--csv", c])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(c.read_text())))
    return res, json.loads(j.read_text()), rows, folder


def test_eval_sweep_json_has_the_documented_shape(sweep_run, student_ckpt: Path, teacher_ckpt: Path) -> None:
    _, data, _, folder = sweep_run
    assert list(data) == ["checkpoints"]
    student, teacher = data["checkpoints"]
    for entry in (student, teacher):
        assert set(entry) == SWEEP_ENTRY_KEYS
        for row in entry["results"]:
            assert set(row) == {"T", "top1", "top5", "spike_rate"}
    assert student["path"] == str(student_ckpt) and teacher["path"] == str(teacher_ckpt)
    assert (student["kind"], student["train_T"], student["loss"]) == ("student", STUDENT_T, "full-range")
    assert (teacher["kind"], teacher["train_T"], teacher["loss"]) == ("teacher", None, None)
    assert student["arch"] == teacher["arch"] == "resnet18"
    assert student["dataset"] == teacher["dataset"] == "synthetic"
    assert student["num_samples"] == teacher["num_samples"] == 500  # the synthetic validation split
    assert student["sweep"] == teacher["sweep"] == "one-pass"
    assert [r["T"] for r in student["results"]] == list(range(1, SWEEP_MAX_T + 1))
    assert [r["T"] for r in teacher["results"]] == [None]
    assert teacher["results"][0]["spike_rate"] is None
    assert sorted(p.name for p in folder.iterdir()) == ["sweep.csv", "sweep.json"]  # no temporary files left


def test_eval_sweep_numbers_equal_evaluate_checkpoint(sweep_run, student_ckpt: Path, teacher_ckpt: Path) -> None:
    _, data, _, _ = sweep_run
    student, teacher = data["checkpoints"]
    _, s_res = evaluate_checkpoint(student_ckpt, SWEEP_MAX_T)
    _, t_res = evaluate_checkpoint(teacher_ckpt, SWEEP_MAX_T)
    assert student["results"] == s_res.rows and student["num_samples"] == s_res.num_samples
    assert teacher["results"] == t_res.rows and teacher["num_samples"] == t_res.num_samples


def test_eval_sweep_numbers_are_in_range(sweep_run) -> None:
    _, data, _, _ = sweep_run
    for entry in data["checkpoints"]:
        for row in entry["results"]:
            assert 0.0 <= row["top1"] <= row["top5"] <= 100.0
            # counts over 500 samples: every accuracy is a multiple of 0.2 %
            assert row["top1"] * 5 == pytest.approx(round(row["top1"] * 5), abs=1e-9)
            if entry["kind"] == "student":
                assert 0.0 <= row["spike_rate"] <= 1.0


def test_eval_sweep_csv_has_the_same_numbers(sweep_run) -> None:
    _, data, rows, _ = sweep_run
    assert list(rows[0]) == ["path", "kind", "arch", "T", "top1", "top5", "spike_rate"]
    expected = []
    for e in data["checkpoints"]:
        for r in e["results"]:
            spikes = "" if r["spike_rate"] is None else f"{r['spike_rate']:.6f}"
            T = "" if r["T"] is None else str(r["T"])
            expected.append([e["path"], e["kind"], e["arch"], T, f"{r['top1']:.4f}", f"{r['top5']:.4f}", spikes])
    assert [list(r.values()) for r in rows] == expected
    assert len(rows) == SWEEP_MAX_T + 1


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_dash_writes_to_standard_output_and_the_tables_to_stderr(
    cli, sweep_run, student_ckpt: Path, teacher_ckpt: Path, fmt: str
) -> None:
    res = cli(["eval-sweep", student_ckpt, teacher_ckpt, "--max-T", SWEEP_MAX_T, f"--{fmt}", "-"])
    assert res.exit_code == 0, res.output
    assert not Path("-").exists()
    folder = sweep_run[3]
    assert res.stdout == (folder / f"sweep.{fmt}").read_text()  # the same bytes as the file
    assert "accuracy at every T" in res.stderr and "#1 top-1" in res.stderr  # the table went to stderr


def test_eval_sweep_table_shows_every_row(sweep_run) -> None:
    res, data, _, _ = sweep_run
    student, teacher = data["checkpoints"]
    table_rows = [line for line in res.stdout.splitlines() if line.startswith("│")]
    assert len(table_rows) == SWEEP_MAX_T + 1
    best = max(r["top1"] for r in student["results"])
    for line, r in zip(table_rows, student["results"], strict=False):
        cells = [c.strip() for c in line.strip("│").split("│")]
        assert cells[:5] == [
            str(r["T"]),
            f"{r['top1']:.2f}",
            f"{r['top5']:.2f}",
            f"{best - r['top1']:.2f}",
            f"{100 * r['spike_rate']:.1f}",
        ]
    ann = [c.strip() for c in table_rows[-1].strip("│").split("│")]
    t = teacher["results"][0]
    assert ann[0] == "ANN" and ann[-2:] == [f"{t['top1']:.2f}", f"{t['top5']:.2f}"]


def test_eval_sweep_default_max_T_is_the_training_T(cli, sweep_run, student_ckpt: Path, tmp_path: Path) -> None:
    """Without --max-T a student is swept to its training T; the rows are a prefix of a longer sweep."""
    j = tmp_path / "s.json"
    res = cli(["eval-sweep", student_ckpt, "--json", j])
    assert res.exit_code == 0, res.output
    rows = json.loads(j.read_text())["checkpoints"][0]["results"]
    longer = sweep_run[1]["checkpoints"][0]["results"]
    assert [r["T"] for r in rows] == list(range(1, STUDENT_T + 1))
    for short, long in zip(rows, longer[:STUDENT_T], strict=True):
        assert (short["top1"], short["top5"]) == (long["top1"], long["top5"])
        assert short["spike_rate"] == pytest.approx(long["spike_rate"], rel=1e-5)


# --- bad input: exit 2, one line, nothing written ----------------------------------------------


def _case(case_id: str, template: list[str], message: str, *, bug: str = "", table_first: bool = False):
    """One bad input: argv with ``{placeholders}``, the expected message fragment. ``bug``: a known src bug
    (strict xfail, so the test reports XPASS once it is fixed). ``table_first``: the sweep table may be printed
    before the failure."""
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"src bug: {bug}")] if bug else []
    return pytest.param(template, message, table_first, id=case_id, marks=marks)


_SWEEP_OUT = ["--json", "{out}/s.json", "--csv", "{out}/s.csv"]
_FOLDER = ["--dataset", "imagefolder", "--data-dir", "{images}"]
_QUICK = ["quickstart", "--out", "{out}", "--teacher-epochs", "1", "--student-epochs", "1"]
BAD_INPUT = [
    # data and names
    _case(
        "cifar10-missing", ["train-teacher", "--dataset", "cifar10", "--data-dir", "{empty_dir}"], "CIFAR-10 not found"
    ),
    _case(
        "cifar100-missing",
        ["distill", "--loss", "twce", "--dataset", "cifar100", "--data-dir", "{empty_dir}"],
        "CIFAR-100 not found",
    ),
    _case("teacher-arch", ["train-teacher", "--arch", "bogus"], "unknown ANN teacher architecture 'bogus'"),
    _case("student-arch", ["distill", "--teacher", "{teacher}", "--arch", "bogus"], "unknown spiking student arch"),
    _case("teacher-dataset", ["train-teacher", "--dataset", "bogus"], "unknown dataset 'bogus'"),
    _case("distill-dataset", ["distill", "--teacher", "{teacher}", "--dataset", "bogus"], "unknown dataset 'bogus'"),
    _case("sweep-dataset", ["eval-sweep", "{student}", "--dataset", "bogus", *_SWEEP_OUT], "unknown dataset 'bogus'"),
    _case("precision", ["train-teacher", "--precision", "fp8"], "unknown precision 'fp8'"),
    # numbers and choices
    _case("T-0", ["distill", "--teacher", "{teacher}", "--T", "0"], "--T must be >= 1, got 0"),
    _case("max-T-0", ["eval-sweep", "{student}", "--max-T", "0", *_SWEEP_OUT], "--max-T must be >= 1, got 0"),
    _case("loss", ["distill", "--teacher", "{teacher}", "--loss", "bogus"], "unknown loss 'bogus'"),
    _case(
        "sd-none-correct",
        ["distill", "--teacher", "{teacher}", "--sd-none-correct", "drop"],
        "unknown --sd-none-correct 'drop': choose one of uniform, skip",
    ),
    _case("full-range-no-teacher", ["distill"], "--loss full-range needs --teacher"),
    _case("standard-kd-no-teacher", ["distill", "--loss", "standard-kd"], "--loss standard-kd needs --teacher"),
    # teachers and data that do not fit
    _case("teacher-3-classes", ["distill", "--teacher", "{folder_teacher}"], "has 3 classes but synthetic has 10"),
    _case(
        "teacher-10-classes",
        ["distill", "--teacher", "{teacher}", *_FOLDER, "--workers", "0"],
        "has 10 classes but imagefolder has 3",
    ),
    _case("sweep-3-classes", ["eval-sweep", "{student}", *_FOLDER, *_SWEEP_OUT], "predicts 10 classes but imagefolder"),
    _case("student-as-teacher", ["distill", "--teacher", "{student}"], "is a student checkpoint, but an ANN teacher"),
    # files that are not (whole) checkpoints
    _case("junk-teacher", ["distill", "--teacher", "{junk}"], "is not a readable safetensors file"),
    _case("junk-sweep", ["eval-sweep", "{junk}", *_SWEEP_OUT], "is not a readable safetensors file"),
    _case("empty-file-sweep", ["eval-sweep", "{empty_file}", *_SWEEP_OUT], "is not a readable safetensors file"),
    _case("plain-teacher", ["distill", "--teacher", "{plain}"], "not a snnkd checkpoint (no snnkd metadata)"),
    _case("plain-sweep", ["eval-sweep", "{plain}", *_SWEEP_OUT], "not a snnkd checkpoint (no snnkd metadata)"),
    _case("truncated-teacher", ["distill", "--teacher", "{truncated_teacher}"], "is not a readable safetensors file"),
    _case("truncated-sweep", ["eval-sweep", "{truncated_student}", *_SWEEP_OUT], "is not a readable safetensors"),
    _case("wrong-weights", ["eval-sweep", "{wrong_weights}", *_SWEEP_OUT], "weights do not match its stored arch"),
    _case("bad-config", ["eval-sweep", "{bad_config}", *_SWEEP_OUT], "stored configuration cannot be read"),
    _case("missing-teacher", ["distill", "--teacher", "{missing}"], "checkpoint not found"),
    _case("missing-sweep", ["eval-sweep", "{student}", "{missing}", *_SWEEP_OUT], "checkpoint not found"),
    _case("dir-as-checkpoint", ["eval-sweep", "{empty_dir}", *_SWEEP_OUT], "checkpoint is not a file"),
    # output that cannot be written (a path under a regular file)
    _case("teacher-out", ["train-teacher", "--out", "{a_file}/sub"], "cannot write to output folder"),
    _case("distill-out", ["distill", "--loss", "twce", "--out", "{a_file}/sub"], "cannot write to output folder"),
    # ... checked before any evaluation: no table is printed first
    _case("sweep-json", ["eval-sweep", "{teacher}", "--json", "{a_file}/s.json"], "cannot write --json"),
    _case("sweep-csv", ["eval-sweep", "{teacher}", "--csv", "{a_file}/s.csv"], "cannot write --csv"),
    _case("sweep-json-folder", ["eval-sweep", "{teacher}", "--json", "{empty_dir}"], "is a folder: give a file name"),
    _case("sweep-two-stdout", ["eval-sweep", "{teacher}", "--json", "-", "--csv", "-"], "cannot both go to standard"),
    _case("predict-json", ["predict", "{teacher}", "{junk}", "--json", "{a_file}/p.json"], "cannot write --json"),
    _case(
        "export-out", ["export", "{student}", "-f", "safetensors", "--out", "{a_file}/m.safetensors"], "cannot write"
    ),
    # placeholders
    _case("preprocess-dvs", ["preprocess-dvs", "{empty_dir}", "{out}"], "no recognised recordings"),
    _case("export", ["export", "{student}", "--format", "tflite"], "unknown export format 'tflite'"),
    # known src bugs (see the report): each should be a one-line error before anything is written
    _case("sweep-batch-0", ["eval-sweep", "{teacher}", "--batch-size", "0"], "--batch-size"),
    _case("sweep-batch-neg", ["eval-sweep", "{teacher}", "--batch-size", "-1"], "--batch-size"),
    _case("max-steps-0", ["train-teacher", "--max-steps", "0"], "--max-steps"),
    _case("max-steps-neg", ["train-teacher", "--max-steps", "-3"], "--max-steps"),
    _case("config-not-object", ["eval-sweep", "{list_config}"], "stored configuration"),
    _case("quickstart-T-0", [*_QUICK, "--T", "0"], "--T must be >= 1"),
    # contradictions, and messages that name only options the command has
    _case("quickstart-teacher-epochs", [*_QUICK, "--teacher-epochs", "0"], "--teacher-epochs must be >= 1, got 0"),
    _case("quickstart-student-epochs", [*_QUICK, "--student-epochs", "0"], "--student-epochs must be >= 1, got 0"),
    _case("soft-and-hard-reset", ["distill", "--loss", "twce", "--soft-reset", "--hard-reset"], "contradict each"),
    _case(
        "teacher-arch-contradicts", ["distill", "--teacher", "{teacher}", "--teacher-arch", "resnet34"], "contradicts"
    ),
    _case("dynamic-teacher", ["eval-sweep", "{teacher}", "--dynamic"], "applies to spiking students"),
    _case("sweep-channels", ["eval-sweep", "{student}", "--dataset", "synthetic-dvs"], "3-channel input but synthetic"),
    _case("sweep-cifar-size", ["eval-sweep", "{student}", "--dataset", "cifar10"], "trained on 16-px images but cifar"),
    # image folders that cannot be trained on
    _case("one-class-folder", ["train-teacher", "--dataset", "imagefolder", "--data-dir", "{one_class}"], "one class"),
    # teachers trained elsewhere that cannot be used
    _case("pth-whole-model", ["distill", "--teacher", "{whole_model_pth}", "--teacher-arch", "resnet18"], "pickled"),
    _case("pth-garbage", ["distill", "--teacher", "{junk_pth}", "--teacher-arch", "resnet18"], "not a PyTorch state"),
    _case(
        "pth-torchvision-wrong-arch",
        ["distill", "--teacher", "{tv_pth}", "--teacher-arch", "resnet34"],
        "does not fit --teacher-arch resnet34: ",
    ),
    _case("pth-paper-student", ["distill", "--teacher", "{snn_pth}", "--teacher-arch", "resnet18"], "an ANN is asked"),
    _case("quickstart-max-T-0", [*_QUICK, "--T", "1", "--max-T", "0"], "--max-T must be >= 1"),
    # issue 26: --memopt (distill only) and eval-sweep --chunk-T
    _case(
        "memopt",
        ["distill", "--loss", "twce", "--memopt", "max"],
        "unknown --memopt 'max': choose one of off, speed, balanced, memory",
    ),
    _case("teacher-memopt", ["train-teacher", "--memopt", "memory"], "No such option: --memopt"),
    _case("chunk-T-0", ["eval-sweep", "{student}", "--chunk-T", "0", *_SWEEP_OUT], "--chunk-T must be >= 1, got 0"),
]


class _Inputs(dict):
    """Placeholder values for BAD_INPUT, made on first use (only the cases that need a checkpoint train one)."""

    def __init__(self, request: pytest.FixtureRequest, tmp: Path) -> None:
        super().__init__(out=str(tmp / "out"), missing=str(tmp / "nope.safetensors"))
        self.request, self.tmp = request, tmp

    def _file(self, name: str, data: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(data)
        return str(path)

    def _safetensors(self, name: str, tensors: dict, meta: dict) -> str:
        save_file(tensors, str(self.tmp / name), metadata=meta)
        return str(self.tmp / name)

    def _folder(self, key: str) -> str:
        """An image folder: one class only, or two classes with one file that is not an image."""
        root = self.tmp / key
        for split in ("train", "val"):
            for c in ("a",) if key == "one_class" else ("a", "b"):
                (root / split / c).mkdir(parents=True)
                for i in range(3):
                    Image.new("RGB", (16, 16), (40 * i, 90, 0)).save(root / split / c / f"{i}.png")
        if key == "corrupt_images":
            (root / "train" / "b" / "9.png").write_bytes(b"\x89PNG but then nothing")
        return str(root)

    def __missing__(self, key: str) -> str:
        fixture = {"teacher": "teacher_ckpt", "student": "student_ckpt", "folder_teacher": "folder_teacher_ckpt"}
        if key in fixture:
            value = str(self.request.getfixturevalue(fixture[key]))
        elif key == "images":
            value = str(self.request.getfixturevalue("image_folder"))
        elif key == "empty_dir":
            (self.tmp / "empty").mkdir()
            value = str(self.tmp / "empty")
        elif key in ("junk", "empty_file", "a_file"):
            value = self._file(key, b"" if key == "empty_file" else b"this is not a safetensors file\n" * 40)
        elif key.startswith("truncated_"):
            whole = Path(self[key.removeprefix("truncated_")]).read_bytes()
            value = self._file(f"{key}.safetensors", whole[: len(whole) // 2])
        elif key == "plain":
            value = self._safetensors("plain.safetensors", {"w": torch.ones(3, 3)}, {"note": "not from snnkd"})
        elif key == "wrong_weights":  # real snnkd metadata, but the weights of another network
            value = self._safetensors("ww.safetensors", {"w": torch.ones(2)}, read_metadata(Path(self["teacher"])))
        elif key in ("one_class", "corrupt_images"):
            value = self._folder(key)
        elif key.endswith("_pth"):
            value = str(self.tmp / f"{key}.pth")
            if key == "junk_pth":
                Path(value).write_bytes(b"not a pickle at all\n" * 20)
            elif key == "snn_pth":  # the paper's spiking ResNet-18 as its code saves it
                net = paper_nets.resnet18(10, width=8)
                torch.save({"best_net": net.state_dict(), "best_acc": 90.0}, value)
            else:
                net = torchvision.models.resnet18(num_classes=10)
                torch.save(net if key == "whole_model_pth" else net.state_dict(), value)
        elif key in ("bad_config", "list_config"):
            meta = {"format": "snnkd-checkpoint", "format_version": "1", "kind": "teacher"}
            meta["config"] = "{not json" if key == "bad_config" else "[]"
            value = self._safetensors(f"{key}.safetensors", {"w": torch.ones(2)}, meta)
        else:
            raise KeyError(key)
        self[key] = value
        return value


@pytest.mark.parametrize(("template", "message", "table_first"), BAD_INPUT)
def test_bad_input_is_one_line_and_writes_nothing(
    cli, request: pytest.FixtureRequest, tmp_path: Path, template: list[str], message: str, table_first: bool
) -> None:
    inputs = _Inputs(request, tmp_path)
    args = [a.format_map(inputs) for a in template]
    if args[0] in ("train-teacher", "distill"):  # tiny defaults first, so that the case's own options win
        extra = [*TINY, "--T", str(STUDENT_T)] if args[0] == "distill" else TINY
        args = [args[0], *extra, "--out", inputs["out"], *args[1:]]
    before = {p: p.read_bytes() for p in files_under(tmp_path)}
    res = cli(args)
    assert_one_line_error(res, message, stdout_empty=not table_first)
    assert files_under(Path(inputs["out"])) == []
    assert {p: p.read_bytes() for p in files_under(tmp_path)} == before  # nothing written, nothing changed


@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_image_stops_the_run_in_one_line_and_writes_nothing(
    cli, request: pytest.FixtureRequest, tmp_path: Path, workers: int
) -> None:
    """Found when the loader reads it (after the configuration is printed), from the main process or a worker."""
    inputs = _Inputs(request, tmp_path)
    args = ["train-teacher", *TINY, "--out", inputs["out"], "--dataset", "imagefolder"]
    res = cli([*args, "--data-dir", inputs["corrupt_images"], "--workers", str(workers)])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == [res.stderr.splitlines()[-1]], res.stderr
    assert "cannot read image" in errors[0] and "9.png" in errors[0] and "remove or replace" in errors[0]
    assert not Path(inputs["out"]).exists()  # the folder the run made, with nothing saved in it, is gone


@pytest.mark.parametrize(("rank", "printed"), [("0", True), ("1", False)])
def test_under_torchrun_only_rank_0_prints_the_error(
    cli, monkeypatch: pytest.MonkeyPatch, rank: str, printed: bool
) -> None:
    monkeypatch.setenv("RANK", rank)
    res = cli(["train-teacher", "--epochs", "0"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr == ("error: --epochs must be >= 1, got 0\n" if printed else "")
