"""``snnkd eval-sweep --dynamic`` and ``snnkd predict`` end to end (CliRunner), numbers checked against the
model run by hand on the same tensors. Checkpoints are written directly (a width-8 student whose BN statistics
make it fire), so no training is needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from spikingjelly.activation_based import functional
from torchvision.transforms import functional as TF

from helpers import firing_student, hand_rule
from snnkd_cli.checkpoint import read_metadata, save_checkpoint
from snnkd_cli.config import DataConfig, KDConfig, ModelConfig, RunConfig, TrainConfig
from snnkd_cli.data import calibration_split
from snnkd_cli.data.synthetic import PIXEL_RANGE, SyntheticImages, from_unit, to_image
from snnkd_cli.evaluation.early_exit import ExitTrace, choose_threshold, early_exit, exit_scores, running_mean
from snnkd_cli.models.contract import time_major

T = 3
N_VAL, N_TRAIN = 100, 200


def write_student(
    path: Path, dataset: str = "synthetic", frames: int | None = None, holdout: float = 0.0
) -> torch.nn.Module:
    """A firing width-8 student saved as a snnkd checkpoint for ``dataset`` (16x16, T=3)."""
    temporal = dataset == "synthetic-dvs"
    ch = 2 if temporal else 3
    net = firing_student(torch.float32, in_channels=ch)
    cfg = RunConfig(
        task="distill",
        data=DataConfig(
            dataset=dataset,
            image_size=16,
            num_classes=10,
            in_channels=ch,
            synthetic_train=N_TRAIN,
            synthetic_val=N_VAL,
            workers=0,
            frames=frames,
            calib_holdout=holdout,
        ),
        model=ModelConfig(arch="resnet18", kind="snn", num_classes=10, in_channels=ch, width=8),
        train=TrainConfig(T=T, batch_size=50, precision="fp32"),
        kd=KDConfig(),
    )
    save_checkpoint(path, net.state_dict(), "student", cfg, {"metrics": {"best_epoch": 1}})
    return net


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    path = tmp_path_factory.mktemp("student") / "s.safetensors"
    return path, write_student(path)


def step_logits(net, x: torch.Tensor, steps: int = T, temporal: bool = False) -> torch.Tensor:
    """Per-step logits ``[steps, N, C]`` of one run."""
    with torch.no_grad():
        functional.reset_net(net)
        out = net(time_major(x, steps, temporal))
        functional.reset_net(net)
    return out


def running(net, x: torch.Tensor, steps: int = T, temporal: bool = False) -> torch.Tensor:
    return running_mean(step_logits(net, x, steps, temporal))


def quantiles(scores: torch.Tensor, qs=(0.2, 0.5, 0.8)) -> list[float]:
    """Thresholds near quantiles of the scores, each halfway across a gap of at least 1e-4 between two
    neighbouring scores and rounded to 6 digits: no score is within rounding distance of a threshold."""
    s = scores.flatten().sort().values
    out = []
    for q in qs:
        i = int(q * (len(s) - 1))
        while s[i + 1] - s[i] < 1e-4:
            i += 1
        out.append(round(float(s[i] + s[i + 1]) / 2, 6))
    return out


def assert_error_lines(res, *fragments: str) -> list[str]:
    assert "Traceback" not in res.output and res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == len(fragments), res.stderr
    for line, frag in zip(errors, fragments, strict=True):
        assert frag in line, line
    return errors


# --- eval-sweep --dynamic ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dynamic_run(cli, student, tmp_path_factory):
    path, net = student
    val = SyntheticImages(N_VAL, split_seed=1)
    logits = step_logits(net, val.images)
    grid = quantiles(exit_scores(running_mean(logits)[:-1], "confidence"))
    out = tmp_path_factory.mktemp("dyn") / "d.json"
    thresholds = ["--thresholds", ",".join(map(str, grid)), "--seen-floor", "0"]  # the grid alone: no floor added
    res = cli(["eval-sweep", path, "--dynamic", *thresholds, "--json", out])
    assert res.exit_code == 0, res.output
    return res, json.loads(out.read_text())["checkpoints"][0], grid, logits, val


def test_dynamic_curve_equals_a_hand_loop_on_the_same_pass(dynamic_run):
    res, entry, grid, logits, val = dynamic_run
    dyn = entry["dynamic"]
    assert dyn["rule"] == "confidence" and [p["threshold"] for p in dyn["curve"]] == grid
    for p in dyn["curve"]:
        steps, preds = hand_rule(logits.double(), p["threshold"], "confidence")
        correct = sum(a == int(b) for a, b in zip(preds, val.labels, strict=True))
        assert p["top1"] == pytest.approx(100.0 * correct / N_VAL)
        assert p["mean_T"] == pytest.approx(sum(steps) / N_VAL)
        assert len(p["exit_share"]) == T and sum(p["exit_share"]) == pytest.approx(1.0)
    assert len({p["mean_T"] for p in dyn["curve"]}) == len(grid)  # the thresholds do different things
    assert [r["T"] for r in entry["results"]] == [1, 2, 3]  # the fixed-T results are still there
    assert "early exit #1" in res.stdout and "fixed T=3" in res.stdout


def test_dynamic_threshold_is_chosen_on_the_training_slice(dynamic_run, student):
    _, entry, grid, _, _ = dynamic_run
    _, net = student
    cal = calibration_split(DataConfig(dataset="synthetic", synthetic_train=N_TRAIN), 0.1)
    x = torch.stack([cal[i][0] for i in range(len(cal))])
    y = torch.tensor([cal[i][1] for i in range(len(cal))])
    trace = ExitTrace.from_running(running(net, x), y)
    pick = choose_threshold([trace.evaluate(t) for t in grid], trace.fixed_top1(T), 0.5)
    chosen = entry["dynamic"]["chosen"]
    assert chosen["threshold"] == (pick["threshold"] if pick else None)
    if pick:
        assert (chosen["calib_top1"], chosen["calib_mean_T"]) == (pick["top1"], pick["mean_T"])
        at = next(p for p in entry["dynamic"]["curve"] if p["threshold"] == pick["threshold"])
        assert (chosen["top1"], chosen["mean_T"]) == (at["top1"], at["mean_T"])
    assert entry["dynamic"]["calib_samples"] == 20 and set(chosen) >= {
        "threshold",
        "top1",
        "mean_T",
        "calib_top1",
        "calib_mean_T",
    }


def test_dynamic_says_whether_the_calibration_slice_was_held_out(cli, dynamic_run, tmp_path):
    assert dynamic_run[1]["dynamic"]["calib_held_out"] is False
    path = tmp_path / "held.safetensors"
    write_student(path, holdout=0.2)
    res = cli(["eval-sweep", path, "--dynamic", "--thresholds", "0.5", "--json", tmp_path / "d.json"])
    assert res.exit_code == 0, res.output
    dyn = json.loads((tmp_path / "d.json").read_text())["checkpoints"][0]["dynamic"]
    assert (dyn["calib_held_out"], dyn["calib_fraction"], dyn["calib_samples"]) == (True, 0.2, 40)
    assert "held out from training" in " ".join(res.stdout.split())


def test_save_threshold_then_predict_dynamic_uses_it(cli, student, tmp_path):
    src, net = student
    path = tmp_path / "s.safetensors"
    shutil.copy(src, path)
    before = load_file(str(path))
    j = tmp_path / "d.json"
    res = cli(["eval-sweep", path, "--dynamic", "--thresholds", "0.3,0.5,0.7", "--max-drop", "100", "--json", j])
    assert res.exit_code == 0 and "early_exit" not in read_metadata(path)  # only with --save-threshold
    floored = json.loads(j.read_text())["checkpoints"][0]["dynamic"]  # the slice was seen: nothing below 0.9
    assert (floored["seen_floor"], floored["chosen"]["threshold"]) == (0.9, 0.9)
    assert [p["threshold"] for p in floored["curve"]] == [0.3, 0.5, 0.7, 0.9]
    assert "so no threshold below 0.9 (--seen-floor)" in " ".join(res.stdout.split())
    off = ["--max-drop", "100", "--seen-floor", "0"]
    res = cli(["eval-sweep", path, "--dynamic", "--thresholds", "0.3,0.5,0.7", *off, "--json", j, "--overwrite"])
    assert res.exit_code == 0, res.output
    res = cli(["eval-sweep", path, "--dynamic", "--thresholds", "0.3,0.5,0.7", *off, "--save-threshold"])
    assert res.exit_code == 0, res.output
    stored = json.loads(read_metadata(path)["early_exit"])
    chosen = json.loads(j.read_text())["checkpoints"][0]["dynamic"]["chosen"]
    assert stored["threshold"] == chosen["threshold"] == 0.3  # max drop 100: the earliest exits
    assert (stored["rule"], stored["max_T"], stored["calib_top1"]) == ("confidence", T, chosen["calib_top1"])
    assert stored["seen_floor"] is None  # --seen-floor 0: no floor applied
    after = load_file(str(path))
    assert all(torch.equal(after[k], before[k]) for k in before)
    images = write_pngs(tmp_path / "imgs", 8)
    out = tmp_path / "p.json"
    res = cli(["predict", path, tmp_path / "imgs", "--dynamic", "--json", out])
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    assert (got["mode"], got["threshold"], got["threshold_source"], got["T"]) == ("dynamic", 0.3, "stored", T)
    x = torch.stack([png_tensor(p) for p in images])
    step, pred = early_exit(step_logits(net, x), 0.3)
    assert [p["steps"] for p in got["predictions"]] == step.tolist()
    assert [p["class_index"] for p in got["predictions"]] == pred.tolist()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--save-threshold"], "--save-threshold applies with --dynamic"),
        (["--max-drop", "1"], "--max-drop applies with --dynamic"),
        (["--seen-floor", "0.5"], "--seen-floor applies with --dynamic"),
        (["--dynamic", "--seen-floor", "1"], "--seen-floor must be in [0, 1)"),
        (["--dynamic", "--thresholds", "0.5,abc"], "--thresholds must be comma-separated numbers"),
        (["--dynamic", "--calib-fraction", "0"], "--calib-fraction must be in (0, 1]"),
        (["--dynamic", "--exit-rule", "margin"], "unknown exit rule 'margin'"),
        (["--dynamic", "--reframe"], "cannot be combined with --reframe"),
    ],
)
def test_dynamic_option_errors(cli, student, tmp_path, extra, fragment):
    path = tmp_path / "s.safetensors"
    shutil.copy(student[0], path)
    data = path.read_bytes()
    res = cli(["eval-sweep", path, *extra, "--json", tmp_path / "o.json"])
    assert_error_lines(res, fragment)
    assert res.stdout == "" and path.read_bytes() == data and not (tmp_path / "o.json").exists()


# --- predict ------------------------------------------------------------------------------------------


def write_pngs(folder: Path, n: int) -> list[Path]:
    """The first n synthetic validation images as PNG files (``to_image``)."""
    folder.mkdir(parents=True, exist_ok=True)
    val = SyntheticImages(n, split_seed=1)
    paths = []
    for i in range(n):
        p = folder / f"{i:02d}.png"
        to_image(val.images[i]).save(p)
        paths.append(p)
    return paths


def png_tensor(path: Path) -> torch.Tensor:
    return from_unit(TF.to_tensor(Image.open(path)))


def test_png_round_trip_of_synthetic_images(tmp_path):
    (p,) = write_pngs(tmp_path, 1)
    x = SyntheticImages(1, split_seed=1).images[0]
    inside = x.abs() < PIXEL_RANGE
    assert (png_tensor(p) - x)[inside].abs().max() <= PIXEL_RANGE / 255 + 1e-6  # half a step of 8/255
    assert inside.float().mean() > 0.95


def test_predict_fixed_T_equals_the_model(cli, student, tmp_path):
    path, net = student
    images = write_pngs(tmp_path / "imgs", 6)
    out = tmp_path / "p.json"
    res = cli(["predict", path, images[0], tmp_path / "imgs", "--T", "2", "--json", out])
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    assert got["mode"] == "fixed" and got["T"] == 2 and got["errors"] == []
    assert [p["input"] for p in got["predictions"]] == [str(images[0])] + [str(p) for p in images]
    x = torch.stack([png_tensor(p) for p in [images[0], *images]])
    prob, pred = torch.softmax(running(net, x, 2)[-1], -1).max(-1)
    assert [p["class_index"] for p in got["predictions"]] == pred.tolist()
    np.testing.assert_allclose([p["probability"] for p in got["predictions"]], prob.numpy(), atol=1e-6)
    assert all(p["steps"] == 2 and p["class"] == f"class_{p['class_index']}" for p in got["predictions"])
    assert all(f"{p['probability']:.4f}" in res.stdout for p in got["predictions"])  # the table (paths may wrap)
    default = cli(["predict", path, images[0], "--json", out, "--overwrite"])  # the training T
    assert json.loads(out.read_text())["predictions"][0]["steps"] == T and default.exit_code == 0


def test_predict_bad_inputs_one_line_each_others_classified(cli, student, tmp_path):
    path, _ = student
    good = write_pngs(tmp_path / "imgs", 2)
    Image.new("L", (16, 16)).save(tmp_path / "grey.png")
    Image.new("RGBA", (16, 16)).save(tmp_path / "alpha.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    args = ["grey.png", "imgs", "junk.png", "empty", "missing.png", "notes.txt", "alpha.png"]
    out = tmp_path / "p.json"
    res = cli(["predict", path, *[tmp_path / a for a in args], "--json", out])
    assert_error_lines(
        res,
        "grey.png: the image has 1 channel (L) but the checkpoint takes 3 (RGB)",
        "junk.png: cannot read the image",
        "empty: a folder with no images",
        "missing.png: no such file or folder",
        "notes.txt: not an image file",
        "alpha.png: the image has 4 channels (RGBA)",
    )
    got = json.loads(out.read_text())
    assert [p["input"] for p in got["predictions"]] == [str(p) for p in good]
    assert len(got["errors"]) == 6 and all(f"{p['probability']:.4f}" in res.stdout for p in got["predictions"])


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--dynamic"], "has no stored early-exit threshold"),
        (["--dynamic", "--T", "2"], "--T and --dynamic exclude each other"),
        (["--threshold", "0.5"], "--threshold and --exit-rule apply with --dynamic"),
        (["--dynamic", "--threshold", "1.5"], "a probability in [0, 1]"),
        (["--T", "0"], "--T must be >= 1"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
    ],
)
def test_predict_option_errors_classify_nothing(cli, student, tmp_path, extra, fragment):
    write_pngs(tmp_path / "imgs", 1)
    res = cli(["predict", student[0], tmp_path / "imgs", *extra, "--json", tmp_path / "p.json"])
    assert_error_lines(res, fragment)
    assert res.stdout == "" and not (tmp_path / "p.json").exists()


def test_predict_dynamic_with_a_given_threshold(cli, student, tmp_path):
    path, net = student
    images = write_pngs(tmp_path / "imgs", 10)
    x = torch.stack([png_tensor(p) for p in images])
    logits = step_logits(net, x)
    (thr,) = quantiles(exit_scores(running_mean(logits)[:-1], "entropy"), (0.5,))
    out = tmp_path / "p.json"
    args = ["predict", path, tmp_path / "imgs", "--dynamic", "--threshold", thr, "--exit-rule", "entropy"]
    res = cli([*args, "--json", out])
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    step, pred = early_exit(logits, thr, "entropy")
    assert [p["steps"] for p in got["predictions"]] == step.tolist() and len(set(step.tolist())) > 1
    assert [p["class_index"] for p in got["predictions"]] == pred.tolist()
    assert "mean steps" in res.stdout


def test_predict_event_frames(cli, tmp_path):
    path = tmp_path / "dvs.safetensors"
    net = write_student(path, "synthetic-dvs", frames=4)
    g = torch.Generator().manual_seed(0)
    good = torch.poisson(torch.full((4, 2, 16, 16), 0.5), generator=g)
    longer = torch.poisson(torch.full((6, 2, 16, 16), 0.5), generator=g)
    files = {
        "a.safetensors": good,
        "b.safetensors": longer,
        "rgb.safetensors": torch.zeros(4, 3, 16, 16),
        "small.safetensors": torch.zeros(4, 2, 8, 8),
        "short.safetensors": torch.zeros(2, 2, 16, 16),
    }
    for name, x in files.items():
        save_file({"frames": x}, str(tmp_path / name))
    to_image(torch.zeros(3, 16, 16)).save(tmp_path / "img.png")
    out = tmp_path / "p.json"
    res = cli(["predict", path, *[tmp_path / n for n in [*files, "img.png"]], "--json", out])
    assert_error_lines(
        res,
        "rgb.safetensors: frames have 3 channels but the checkpoint takes 2",
        "small.safetensors: frames are 8x8 but the checkpoint takes 16x16",
        "short.safetensors: 2 frames, but 3 steps need 3 frames",
        "img.png: not an event-frame file",
    )
    got = json.loads(out.read_text())
    x = torch.stack([good, longer[:4]])
    prob, pred = torch.softmax(running(net, x, T, temporal=True)[-1], -1).max(-1)
    assert [p["class_index"] for p in got["predictions"]] == pred.tolist()
    np.testing.assert_allclose([p["probability"] for p in got["predictions"]], prob.numpy(), atol=1e-6)
    folder = cli(["predict", path, tmp_path, "--T", "2", "--json", out, "--overwrite"])  # its .safetensors files
    names = [Path(p["input"]).name for p in json.loads(out.read_text())["predictions"]]
    assert folder.exit_code == 2 and names == ["a.safetensors", "b.safetensors", "short.safetensors"]


def test_predict_image_folder_teacher_converts_like_training(cli, folder_teacher_ckpt, image_folder, tmp_path):
    """An imagefolder checkpoint: any image mode becomes RGB (as ImageFolder did in training); class names
    come from the checkpoint (stored at training)."""
    Image.new("L", (40, 30), 128).save(tmp_path / "grey.png")
    out = tmp_path / "p.json"
    res = cli(["predict", folder_teacher_ckpt, image_folder / "val" / "dog", tmp_path / "grey.png", "--json", out])
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    assert got["mode"] == "ann" and len(got["predictions"]) == 3
    assert json.loads(read_metadata(folder_teacher_ckpt)["classes"]) == ["cat", "dog", "emu"]
    assert all(p["class"] in ("cat", "dog", "emu") and p["steps"] is None for p in got["predictions"])
    res = cli(["predict", folder_teacher_ckpt, tmp_path / "grey.png", "--dynamic"])
    assert_error_lines(res, "is an ANN teacher")
