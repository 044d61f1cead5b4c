"""One saver and one run wiring for the command line and the Python API (issue #24): the same files, metadata,
resume and checks from ``snnkd distill`` and from ``snnkd_cli.distill``; one resolution of the config; the
shared helpers below their users."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from conftest import one_torch_thread
from snnkd_cli.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from snnkd_cli.cli.app import app
from snnkd_cli.config import from_preset
from snnkd_cli.data.synthetic import SyntheticImages
from snnkd_cli.dist import DistEnv
from snnkd_cli.errors import SnnkdError
from snnkd_cli.format import RUN_FILES
from snnkd_cli.models import create_model
from snnkd_cli.reporting import Reporter
from snnkd_cli.saver import Saver

SRC = Path(__file__).resolve().parents[1] / "src" / "snnkd_cli"
WIDTH, T = 4, 2


def _meta(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    """An (untrained) ANN teacher checkpoint on ``synthetic``: what both runs distil from."""
    torch.manual_seed(0)
    cfg = from_preset("teacher", "synthetic", width=WIDTH)
    cfg.model.num_classes = 10
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    net = create_model("resnet18", 10, kind="ann", width=WIDTH)
    save_checkpoint(path, net.state_dict(), "teacher", cfg)
    return path


def _loaders(n_train: int = 96) -> tuple[DataLoader, DataLoader]:
    train = DataLoader(SyntheticImages(n_train, split_seed=0), batch_size=32, shuffle=True)
    return train, DataLoader(SyntheticImages(64, split_seed=1), batch_size=32)


def _api(out: Path, teacher_file: Path, epochs: int = 1, **kw):
    from snnkd_cli import distill

    teacher = model_from_checkpoint(load_checkpoint(teacher_file))
    student = create_model("resnet18", 10, width=WIDTH)
    with one_torch_thread():
        result = distill(student, teacher, *_loaders(), T=T, epochs=epochs, verbose=False, out=out, **kw)
    return student, result


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory, teacher_file) -> tuple[Path, Path]:
    """The same small distillation through ``snnkd distill --out cli`` and ``distill(..., out="api")``."""
    root = tmp_path_factory.mktemp("runs")
    cli, api = root / "cli", root / "api"
    args = ["distill", "--teacher", str(teacher_file), "--dataset", "synthetic", "--epochs", "1", "--max-steps"]
    args += ["2", "--T", str(T), "--width", str(WIDTH), "--batch-size", "32", "--out", str(cli), "--threads", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    _api(api, teacher_file, dataset="synthetic")
    return cli, api


def test_the_cli_and_the_api_leave_the_same_files_and_metadata(both_runs) -> None:
    cli, api = both_runs
    names = sorted(p.name for p in cli.iterdir())
    assert names == sorted([*RUN_FILES, "config.json"])
    assert sorted(p.name for p in api.iterdir()) == names
    for name in ("best.safetensors", "last.safetensors", "resume.safetensors"):
        a, b = _meta(cli / name), _meta(api / name)
        assert sorted(a) == sorted(b), name
        assert (a["format"], a.get("kind")) == (b["format"], b.get("kind")), name
    cli_best, api_best = _meta(cli / "best.safetensors"), _meta(api / "best.safetensors")
    assert json.loads(api_best["classes"]) == json.loads(cli_best["classes"]) == [f"class_{i}" for i in range(10)]
    assert json.loads(api_best["metrics"])["best_epoch"] == 1 and api_best["epoch"] == "1"
    cli_log, api_log = ([json.loads(x) for x in (d / "log.jsonl").read_text().splitlines()] for d in (cli, api))
    assert [sorted(r) for r in cli_log] == [sorted(r) for r in api_log] and len(api_log) == 1
    cli_cfg, api_cfg = (json.loads((d / "config.json").read_text()) for d in (cli, api))
    shape = lambda cfg: {k: sorted(v) if isinstance(v, dict) else v for k, v in cfg.items()}  # noqa: E731
    assert shape(cli_cfg) == shape(api_cfg) and shape(api_cfg)["task"] == "distill"
    # what ran is recorded, as the command line records it: no "auto" left
    assert api_cfg["train"]["precision"] == cli_cfg["train"]["precision"] != "auto"
    assert api_cfg["teacher_model"]["arch"] == "resnet18" and api_cfg["train"]["out"] == str(api)


@pytest.mark.slow
def test_eval_sweep_predict_and_export_read_the_api_run_as_the_cli_run(both_runs, tmp_path) -> None:
    from PIL import Image

    from snnkd_cli.evaluation.evaluate import evaluate_checkpoint

    runner = CliRunner()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "x.png")
    for run in both_runs:
        best = run / "best.safetensors"
        j = tmp_path / f"{run.name}-sweep.json"
        res = runner.invoke(app, ["eval-sweep", str(best), "--max-T", "3", "--json", str(j), "--threads", "1"])
        assert res.exit_code == 0, res.output
        assert json.loads(j.read_text())["checkpoints"][0]["results"] == evaluate_checkpoint(best, 3)[1].rows
        p = tmp_path / f"{run.name}-predict.json"
        res = runner.invoke(app, ["predict", str(best), str(tmp_path / "x.png"), "--json", str(p), "--threads", "1"])
        assert res.exit_code == 0, res.output
        (pred,) = json.loads(p.read_text())["predictions"]
        assert pred["class"] == f"class_{pred['class_index']}"  # the stored names, not CIFAR-10's fallback
        folded = tmp_path / f"{run.name}.folded.safetensors"
        res = runner.invoke(app, ["export", str(best), "-f", "safetensors", "--out", str(folded)])
        assert res.exit_code == 0 and _meta(folded)["classes"] == _meta(best)["classes"], res.output


class CrashAt(nn.Module):
    """The teacher, raising KeyboardInterrupt (a Ctrl-C) at its ``at``-th call while ``armed``."""

    def __init__(self, net: nn.Module, at: int) -> None:
        super().__init__()
        self.net, self.at, self.calls, self.armed = net, at, 0, True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.armed and self.calls == self.at:
            raise KeyboardInterrupt
        return self.net(x)


def _distil_from(teacher: nn.Module, out: Path, seed: int = 0, **kw):
    from snnkd_cli import distill

    torch.manual_seed(seed)
    student = create_model("resnet18", 10, width=WIDTH)
    train, val = _loaders()
    with one_torch_thread():
        result = distill(student, teacher, train, val, T=T, epochs=2, verbose=False, out=out, dataset="synthetic", **kw)
    return student, result


@pytest.mark.slow
def test_the_api_resumes_after_a_crash_as_if_it_had_not_stopped(tmp_path, teacher_file) -> None:
    net = model_from_checkpoint(load_checkpoint(teacher_file))
    whole_student, whole = _distil_from(net, tmp_path / "whole")
    teacher = CrashAt(net, at=5)  # 3 steps per epoch: step 2 of epoch 2
    with pytest.raises(KeyboardInterrupt, match="holds the run after epoch 1"):
        _distil_from(teacher, tmp_path / "crashed")
    loop = json.loads(_meta(tmp_path / "crashed" / "resume.safetensors")["loop"])
    assert (loop["epoch"], loop["step"]) == (2, 0) and _meta(tmp_path / "crashed" / "last.safetensors")["epoch"] == "1"
    teacher.armed = False
    with pytest.raises(SnnkdError, match="already holds a run"):  # a fresh call is refused: resume or overwrite
        _distil_from(teacher, tmp_path / "crashed")
    student, resumed = _distil_from(teacher, tmp_path / "crashed", seed=1, resume=True)
    drop = ("time",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed.history] == [
        {k: v for k, v in r.items() if k not in drop} for r in whole.history
    ]
    for (k, a), b in zip(whole_student.state_dict().items(), student.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(SnnkdError, match="is finished"):
        _distil_from(teacher, tmp_path / "crashed", resume=True)


def test_the_api_refuses_resume_with_overwrite_and_a_bad_save_every_before_any_work(tmp_path) -> None:
    from snnkd_cli import distill

    class NoBatch:
        def __iter__(self):
            raise AssertionError("a batch was read before the options were checked")

    student = create_model("resnet18", 10, width=WIDTH)
    for kw, message in (
        ({"resume": True, "overwrite": True}, "resume continues a run and overwrite replaces it"),
        ({"save_every": 0}, "save_every must be >= 1, got 0"),
        ({"resume": True, "out": None}, "resume=True continues the run in out"),
    ):
        with pytest.raises(SnnkdError, match=message):
            distill(student, None, NoBatch(), NoBatch(), loss="twce", verbose=False, **{"out": tmp_path / "r", **kw})
    assert not (tmp_path / "r").exists()


class Recording(Reporter):
    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def config(self, cfg_json: dict) -> None:
        self.seen.append(("config", cfg_json["task"]))

    def epoch_end(self, epoch: int, epochs: int, stats: dict) -> None:
        self.seen.append(("epoch", epoch, epochs, round(stats["loss"], 6)))


def test_the_api_reports_to_the_reporter_it_is_given_and_writes_nothing_without_out(tmp_path, monkeypatch) -> None:
    from snnkd_cli import distill

    monkeypatch.chdir(tmp_path)
    rec = Recording()
    torch.manual_seed(0)
    student = create_model("resnet18", 10, width=WIDTH)
    with one_torch_thread():
        result = distill(student, None, *_loaders(64), loss="twce", T=T, epochs=1, reporter=rec)
    assert rec.seen == [("config", "distill"), ("epoch", 1, 1, round(result.history[0]["loss"], 6))]
    assert list(tmp_path.iterdir()) == []


def test_the_python_api_does_not_import_the_command_line() -> None:
    code = "import sys, snnkd_cli.api; print(sorted(m for m in sys.modules if m.startswith('snnkd_cli.cli')))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_save_every_is_an_argument_of_the_loop() -> None:
    from snnkd_cli.data.loaders import make_loader
    from snnkd_cli.kd.tasks import TeacherTask
    from snnkd_cli.train.loop import fit

    class Points(Saver):
        def __init__(self) -> None:
            self.points: list[tuple[int, int]] = []

        def resume_point(self, loop, opt, sched, scaler) -> None:
            self.points.append((loop.epoch, loop.step))

    cfg = from_preset("teacher", "synthetic", epochs=2, batch_size=16, width=WIDTH, max_steps=4)
    model = create_model("resnet18", 10, kind="ann", width=WIDTH)
    cpu = torch.device("cpu")
    train = make_loader(SyntheticImages(128), 16, train=True, workers=0, seed=0, device=cpu)
    val = DataLoader(SyntheticImages(16, split_seed=1), batch_size=16)
    saver = Points()
    with one_torch_thread():
        fit(model, TeacherTask(), train, val, cfg.train, eval_T=None, device=cpu, saver=saver, save_every=3)
    assert saver.points == [(1, 3), (2, 0), (2, 3), (3, 0)]


def test_one_resolution_gives_the_config_the_checkpoints_record(tmp_path) -> None:
    from snnkd_cli.train.run import resolve_run, train

    cfg = from_preset("distill", "synthetic", loss="twce", epochs=1, max_steps=1, width=WIDTH, T=T, out=str(tmp_path))
    before = cfg.to_json()
    resolved = resolve_run(cfg, torch.device("cpu"), DistEnv()).config
    assert cfg.to_json() == before  # the caller's config is never changed
    assert resolved.train.precision in ("fp32", "bf16") and resolved.train.sync_bn is False
    assert (resolved.data.num_classes, resolved.data.image_size, resolved.data.augment) == (10, 16, "none")
    with pytest.raises(AttributeError, match="frozen"):
        resolved.train.lr = 1.0
    with one_torch_thread():
        outcome = train(cfg, device=torch.device("cpu"))
    assert outcome.config == resolved
    assert load_checkpoint(outcome.best_path).config.to_json() == resolved.to_json()


def _imports(path: Path) -> set[str]:
    """Every snnkd module ``path`` imports (at module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_safetensors_is_written_by_the_checkpoint_format_and_the_dvs_cache_only() -> None:
    writers = set()
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        names = _imports(path)
        if {"safetensors.torch.save", "safetensors.torch.save_file"} & names or "st_save" in text:
            writers.add(str(path.relative_to(SRC)))
    assert writers == {"format.py", "data/dvs.py"}


def test_evaluation_and_inference_never_import_train() -> None:
    for package in ("evaluation", "inference"):
        for path in (SRC / package).rglob("*.py"):
            assert not {n for n in _imports(path) if n.startswith("snnkd_cli.train")}, path


def test_the_rank_is_read_in_one_place() -> None:
    readers = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if '"RANK"' in p.read_text()}
    assert readers == {"dist.py"}


def test_the_commands_hand_their_options_on_by_name() -> None:
    """No option reaches the config through ``locals()`` or an ``eval`` of annotations (issue #24)."""
    call = re.compile(r"(?<![\w.])(locals|eval)\(")
    found = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in sorted((SRC / "cli").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if call.search(line)
    ]
    assert not found


@pytest.fixture
def handed_on(monkeypatch) -> list[tuple]:
    """What ``train-teacher`` and ``distill`` hand the run: ``(config, RunOptions)`` per call, nothing trained."""
    import snnkd_cli.cli.commands as commands

    calls: list[tuple] = []
    monkeypatch.setattr(commands, "run_training", lambda cfg, run: calls.append((cfg, run)))
    return calls


def test_a_flag_reaches_the_config_and_the_run_options_by_keyword(handed_on, tmp_path) -> None:
    from snnkd_cli.cli._training import RunOptions

    args = ["distill", "--teacher", "t.safetensors", "--student-arch", "resnet19", "--T", "3", "--epochs", "2"]
    args += ["--lr", "0.05", "--hard-reset", "--out", str(tmp_path / "s"), "--data-dir", str(tmp_path)]
    args += ["--resume=auto", "--save-every", "7", "--tensorboard", "--threads", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    ((cfg, run),) = handed_on
    assert (cfg.task, cfg.model.arch, cfg.train.T, cfg.train.epochs, cfg.train.lr) == (
        "distill",
        "resnet19",
        3,
        2,
        0.05,
    )
    assert (cfg.model.soft_reset, cfg.kd.teacher, cfg.train.out) == (False, "t.safetensors", str(tmp_path / "s"))
    assert cfg.data.data_dir == str(tmp_path)
    assert run == RunOptions(resume="auto", overwrite=False, save_every=7, tensorboard=True, threads=1)
    with pytest.raises(AttributeError):
        run.threads = 2  # frozen


def test_no_flag_means_the_recipe_and_the_default_run(handed_on) -> None:
    from snnkd_cli.cli._training import RunOptions

    res = CliRunner().invoke(app, ["train-teacher"])
    assert res.exit_code == 0, res.output
    ((cfg, run),) = handed_on
    recipe = from_preset("teacher", "synthetic", data_dir="data", seed=60, precision="auto")
    assert cfg.to_json() == recipe.to_json() and run == RunOptions()
