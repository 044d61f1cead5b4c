"""bench/realdata.py: the digit image split and PNGs, the DVS emulation against hand-computed cases, and
the recordings read back through snnkd's own reader."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from snnkd_cli.data.aedat import read_events, scan_recordings
from snnkd_cli.testing import write_aedat2

BENCH = Path(__file__).resolve().parents[1] / "bench" / "realdata.py"
FAST = {"duration_s": 0.3, "render_hz": 500.0}  # a quarter of a recording at half the render rate


def load():
    spec = importlib.util.spec_from_file_location("realdata", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ring() -> np.ndarray:
    """A hand-made 8x8 "0" (values 0..16), so the emulation tests need no scikit-learn."""
    d = np.zeros((8, 8))
    d[1:7, 2:6] = 16
    d[2:6, 3:5] = 0
    return d


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return load().load_digits()


def test_split_is_stratified_and_deterministic(digits):
    mod = load()
    _, labels = digits
    train, val = mod.stratified_split(labels, 0.2, seed=0)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(labels.size))  # disjoint, complete
    for c, n in enumerate(np.bincount(labels)):
        assert (labels[val] == c).sum() == round(0.2 * n)  # e.g. 178 zeros -> 36 in val
    again = mod.stratified_split(labels, 0.2, seed=0)
    assert np.array_equal(again[1], val) and np.array_equal(again[0], train)
    assert not np.array_equal(mod.stratified_split(labels, 0.2, seed=1)[1], val)
    assert len(train) == 1438 and len(val) == 359
    chosen = mod.recording_choice(labels, 6, seed=0)  # events: the same permutation, so DVS val ⊂ image val
    assert all(set(chosen[c]) <= set(val) and np.all(labels[chosen[c]] == c) for c in range(10))


def test_images_are_rgb_at_the_size_asked_and_match_a_hand_resize(digits, tmp_path):
    mod = load()
    images, labels = digits
    out = tmp_path / "img"
    assert mod.main(["images", str(out), "--size", "16"]) == 0
    train, val = mod.stratified_split(labels, 0.2, seed=0)
    for split, idx in (("train", train), ("val", val)):
        for c in range(10):
            names = {p.name for p in (out / split / str(c)).iterdir()}
            assert names == {f"{i}.png" for i in idx[labels[idx] == c]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]  # no temporary folder left behind

    i = 0  # the first digit, a 0
    split = "train" if i in train else "val"
    png = Image.open(out / split / "0" / f"{i}.png")
    assert png.mode == "RGB" and png.size == (16, 16)
    got = np.asarray(png).astype(float)
    assert np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 0], got[..., 2])
    grey = np.rint(images[i] * 255 / 16).astype(np.uint8)
    pil = Image.fromarray(grey, mode="L").resize((16, 16), Image.Resampling.BICUBIC)
    assert np.array_equal(got[..., 0], np.asarray(pil))
    # By hand: Keys' cubic (a = -0.5) weights, renormalised where the window leaves the image; PIL
    # resizes rows first and rounds and clips to 0..255 between the two passes.
    u = (np.arange(16) + 0.5) / 2
    w = mod.cubic_kernel(u[:, None] - (np.arange(8) + 0.5))
    w /= w.sum(1, keepdims=True)
    q = lambda a: np.clip(np.floor(a + 0.5), 0, 255)  # noqa: E731
    hand = q(w @ q(grey.astype(float) @ w.T))
    assert np.abs(hand - got[..., 0]).max() <= 1  # PIL's fixed-point arithmetic
    assert np.array_equal(mod.digit_image(images[i], 8).getchannel(0), Image.fromarray(grey))  # 8x8: no resize


def test_a_step_gives_floor_dlog_over_c_events_at_interpolated_times():
    dvs_events = load().dvs_events
    c = 0.2
    # pixel (0, 0) brightens 0.2 -> 0.9, pixel (1, 0) darkens 1.0 -> 0.3, pixel (2, 0) stays
    log_i = np.log(np.array([[[0.2, 1.0, 0.5]], [[0.9, 0.3, 0.5]]]))  # [K=2, H=1, W=3]
    ev = dvs_events(log_i, np.array([0.0, 1000.0]), c)
    for x, dl, p in ((0, math.log(0.9 / 0.2), 1), (1, math.log(0.3 / 1.0), 0)):
        n = math.floor(abs(dl) / c)  # 7 ON, 6 OFF
        sel = ev["x"] == x
        assert sel.sum() == n and np.all(ev["p"][sel] == p) and np.all(ev["y"][sel] == 0)
        np.testing.assert_allclose(np.sort(ev["t"][sel]), 1000.0 * c * np.arange(1, n + 1) / abs(dl))
    assert not np.any(ev["x"] == 2)

    # up 0.5 (2 ON), back to 0.25 (no event: within one threshold of the reference), down to -0.1 (2 OFF)
    ev = dvs_events(np.array([0.0, 0.5, 0.25, -0.1])[:, None, None], np.array([0.0, 1.0, 2.0, 3.0]), c)
    assert ev["p"].tolist() == [1, 1, 0, 0]
    np.testing.assert_allclose(ev["t"], [0.4, 0.8, 2 + 0.05 / 0.35, 2 + 0.25 / 0.35])


def test_a_still_image_without_noise_gives_no_events():
    mod = load()
    ev = mod.digit_recording(ring(), np.random.default_rng(0), amplitude=0.0, noise_hz=0.0, **FAST)
    assert ev["t"].size == 0


def test_a_recording_reads_back_through_snnkd(tmp_path):
    mod = load()
    ev = mod.digit_recording(ring(), np.random.default_rng(3), **FAST)
    n = ev["t"].size
    assert 2_000 < n < 40_000
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"][-1] - ev["t"][0] <= 0.3e6
    on = ev["p"].mean()
    assert 0.3 < on < 0.7  # a closed path: as much brightening as darkening
    # the events lie on the digit's outline: far more inside the 64x64 square (plus movement) than outside
    inside = (abs(ev["x"] - 63.5) < 36) & (abs(ev["y"] - 63.5) < 36)
    assert inside.mean() > 0.8
    path = tmp_path / "r.aedat"
    write_aedat2(path, ev["x"], ev["y"], ev["p"], ev["t"])
    back = read_events(path)
    for k in "txyp":
        assert np.array_equal(back[k].astype(np.int64), ev[k]), k


def test_events_tree_has_the_cifar10dvs_layout(tmp_path):
    mod = load()
    images, labels = np.stack([ring(), ring().T, ring()[::-1]]), np.array([0, 1, 1])
    files = mod.write_events(tmp_path, images, labels, per_class=1, seed=0, **FAST)
    assert sorted(files) == ["0/digits_0_0.aedat", "1/digits_1_0.aedat"]
    assert files["0/digits_0_0.aedat"]["index"] == 0 and files["1/digits_1_0.aedat"]["index"] in (1, 2)
    classes, items = scan_recordings(tmp_path)
    assert classes == ("0", "1") and [lab for _, lab in items] == [0, 1]
    assert read_events(tmp_path / "1/digits_1_0.aedat")["t"].size == files["1/digits_1_0.aedat"]["events"]


def test_refuses_to_overwrite_with_one_line(tmp_path, capsys):
    mod = load()
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    for argv in (["images", str(out)], ["events", str(out), "--per-class", "1"], ["images", str(out), "--overwrite"]):
        assert mod.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(out) in err
    assert (out / "mine.txt").read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert mod.main(["images", str(tmp_path / "f" / "x"), "--val-fraction", "1.5"]) == 2
    assert "--val-fraction" in capsys.readouterr().err


def test_overwrite_replaces_what_it_wrote(digits, tmp_path, capsys):
    mod = load()
    out = tmp_path / "img"
    assert mod.main(["images", str(out), "--size", "8"]) == 0
    assert mod.main(["images", str(out), "--size", "8"]) == 2
    assert mod.main(["images", str(out), "--size", "9", "--overwrite"]) == 0
    assert Image.open(next((out / "val" / "5").iterdir())).size == (9, 9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]
