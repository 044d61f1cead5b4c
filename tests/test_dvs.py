"""CIFAR10-DVS preprocessing on real AEDAT 2.0 files written here, the frame cache, augmentation, synthetic events."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from spikingjelly.datasets.utils import cal_fixed_frames_number_segment_index, integrate_events_by_fixed_frames_number
from torch.utils.data import DataLoader
from torchvision import transforms as tvt
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from dvs_files import write_broken_recordings, write_event_formats
from snnkd_cli.data.aedat import expected_frame_counts, frame_events, read_events
from snnkd_cli.data.dvs import (
    DVSAugment,
    DVSFrames,
    open_dvs_cache,
    preprocess_dvs,
    split_indices,
)
from snnkd_cli.data.dvs_synthetic import SyntheticEvents
from snnkd_cli.errors import SnnkdError
from snnkd_cli.testing import make_cifar10dvs_tree, synthetic_recording

CLASSES, PER_CLASS, EVENTS, T = 3, 4, 3000, 10
KEY = "frames10-number-size48-random-bilinear"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Path, int]]:
    """``src/<class>/cifar10_<class>_<i>.aedat``: 3 classes x 4 recordings of 3000-3300 events."""
    src = tmp_path_factory.mktemp("dvs") / "src"
    return src, make_cifar10dvs_tree(src, PER_CLASS, classes=CLASSES, events=EVENTS, seed=1)


@pytest.fixture(scope="module")
def cache(tree, tmp_path_factory: pytest.TempPathFactory):
    """One preprocessing run (workers=1, the paper's parameters) and the progress calls it made."""
    calls = []
    report = preprocess_dvs(tree[0], tmp_path_factory.mktemp("out1"), progress=lambda d, n: calls.append((d, n)))
    return report, calls


def _files(cache_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cache_dir)): p.read_bytes() for p in sorted(cache_dir.rglob("*")) if p.is_file()}


def test_decoding_matches_spikingjellys_reader(tmp_path: Path) -> None:
    """snnkd decodes AEDAT 2.0 with tonic's public readers; the paper used spikingjelly's CIFAR10-DVS reader
    (a private function, pinned here): both give the recorded events, in spikingjelly's convention."""
    from spikingjelly.datasets.cifar10_dvs import _load_origin_data

    ev = synthetic_recording(2, 10, 5000, np.random.default_rng(0))
    path = write_event_formats(tmp_path, "rec", ev)[0]
    got = read_events(path)
    paper = _load_origin_data(str(path))
    for k in "txyp":
        np.testing.assert_array_equal(got[k].astype(np.int64), ev[k])
        np.testing.assert_array_equal(got[k].astype(np.int64), np.asarray(paper[k]).astype(np.int64))


def test_other_formats_give_the_same_frames(tmp_path: Path) -> None:
    ev = synthetic_recording(4, 10, 4000, np.random.default_rng(3))
    frames = [frame_events(read_events(p), 6, "time", 32) for p in write_event_formats(tmp_path, "rec", ev)]
    assert all(torch.equal(frames[0], f) for f in frames[1:])


def test_split_by_number_is_spikingjellys(tree) -> None:
    path, n = next(iter(tree[1].items()))
    ev = read_events(path)
    assert len(ev["t"]) == n
    full = frame_events(ev, T, "number", 128)  # no resize: counts
    assert full.shape == (T, 2, 128, 128) and full.dtype == torch.float32
    assert full.sum((1, 2, 3)).tolist() == expected_frame_counts(n, T) == [n // T] * (T - 1) + [n - (T - 1) * (n // T)]
    ref = integrate_events_by_fixed_frames_number(ev, "number", T, 128, 128)
    assert torch.equal(full, torch.from_numpy(ref).float())
    small = frame_events(ev, T, "number", 48)
    assert small.shape == (T, 2, 48, 48)
    # the paper's pipeline: torchvision's Resize((48, 48)) on spikingjelly's float64 frames, then .float()
    paper = tvt.Resize(size=(48, 48))(torch.from_numpy(ref)).float()
    assert torch.equal(small, paper)
    area = frame_events(ev, T, "number", 48, resize="area")
    assert torch.equal(area, F.interpolate(full.double(), size=(48, 48), mode="area").float())
    assert not torch.equal(area, small)
    for x in (small, area):  # both keep the mean count per pixel (roughly)
        assert abs(float(x.sum()) * (128 / 48) ** 2 / n - 1) < 0.05


def test_split_by_time_matches_spikingjelly_and_survives_a_pause() -> None:
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 10_000, 2000))
    ev = {"t": t, "x": rng.integers(0, 128, 2000), "y": rng.integers(0, 128, 2000), "p": rng.integers(0, 2, 2000)}
    left, right = cal_fixed_frames_number_segment_index(t, "time", 5)
    got = frame_events(ev, 5, "time", 128).sum((1, 2, 3))
    assert got.tolist() == (right - left).tolist()
    t2 = np.where(t < 4000, t, t + 100_000)  # a pause: spikingjelly raises IndexError on its empty windows
    with pytest.raises(IndexError):
        cal_fixed_frames_number_segment_index(t2, "time", 5)
    dt = (t2[-1] - t2[0]) // 5
    edges = t2[0] + dt * np.arange(1, 5)
    want = np.diff(np.concatenate([[0], np.searchsorted(t2, edges), [len(t2)]]))
    assert frame_events({**ev, "t": t2}, 5, "time", 128).sum((1, 2, 3)).tolist() == want.tolist()
    assert 0 in want.tolist()


def test_preprocess_end_to_end(tree, cache) -> None:
    report, calls = cache
    src, written = tree
    assert report.cache_dir.name == KEY
    assert (report.files, report.frames, report.skipped, report.reused) == (12, 120, [], 0)
    assert report.events == report.decoded_events == sum(written.values())
    assert report.events_per_second > 0
    assert calls[-1] == (12, 12) and len(calls) == 12
    man = json.loads((report.cache_dir / "manifest.json").read_text())
    assert man["classes"] == ["airplane", "automobile", "bird"]
    assert man["params"]["frames"] == T and man["params"]["size"] == 48 and man["split"]["name"] == "random"
    for path, n in written.items():
        rel = f"{path.parent.name}/{path.name}.safetensors"
        with safe_open(str(report.cache_dir / rel), framework="pt") as f:
            x = f.get_tensor("frames")
            meta = json.loads(f.metadata()["snnkd"])
        assert x.shape == (T, 2, 48, 48) and x.dtype == torch.float32
        assert meta["events"] == n and meta["source"] == f"{path.parent.name}/{path.name}"
        assert man["classes"][meta["label"]] == path.parent.name
        assert torch.equal(x, frame_events(read_events(path), T, "number", 48))


def test_random_split_is_torch_random_split_seed_42(tree, cache) -> None:
    man = json.loads((cache[0].cache_dir / "manifest.json").read_text())
    order = [f"{c}/cifar10_{c}_{i}.aedat.safetensors" for c in man["classes"] for i in range(PER_CLASS)]
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(42)).tolist()
    assert [e[0] for e in man["train"]] == [order[i] for i in sorted(perm[:11])]  # floor(10.8) + the remainder
    assert [e[0] for e in man["val"]] == [order[perm[11]]]
    labels = {e[0]: e[1] for e in man["train"] + man["val"]}
    assert all(man["classes"][lab] == path.split("/")[0] for path, lab in labels.items())


def test_per_class_split_is_tebns() -> None:
    names = [f"cat/cifar10_cat_{i}.aedat" for i in range(1000)]  # lexicographic order: _0, _1, _10, _100, ...
    items = [(n, 0) for n in sorted(names)]
    train, val = split_indices(items, "per-class")
    assert sorted(items[i][0] for i in val) == sorted(names[:100]) and len(train) == 900


def test_workers_give_byte_identical_output(tree, cache, tmp_path: Path) -> None:
    report = preprocess_dvs(tree[0], tmp_path, workers=2)
    assert _files(report.cache_dir) == _files(cache[0].cache_dir)


def test_resume_redoes_only_missing_files(cache, tree, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(cache[0].cache_dir, out / KEY)
    before = _files(out / KEY)
    assert len(before) == 13
    (out / KEY / "bird/cifar10_bird_2.aedat.safetensors").unlink()
    (out / KEY / "manifest.json").unlink()
    torn = out / KEY / "automobile" / "cifar10_automobile_1.aedat.safetensors"
    torn.write_bytes(before[f"{torn.parent.name}/{torn.name}"][:100])  # e.g. a copy cut short: redone, not read
    (out / KEY / "bird/.cifar10_bird_2.aedat.safetensors.123.tmp").write_bytes(b"partial")  # an interrupted write
    report = preprocess_dvs(tree[0], out)
    assert (report.reused, report.files, report.events) == (10, 12, cache[0].events)
    redone = [tree[0] / "bird/cifar10_bird_2.aedat", tree[0] / "automobile/cifar10_automobile_1.aedat"]
    assert report.decoded_events == sum(tree[1][p] for p in redone)
    assert _files(out / KEY) == before


def test_bad_recordings_are_skipped_and_reported(tree, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(tree[0], src)
    expect = write_broken_recordings(src / "bird", src / "bird/cifar10_bird_0.aedat")
    report = preprocess_dvs(src, tmp_path / "out", frames=4, size=16)
    assert report.files == 12 and report.events == sum(tree[1].values())
    reasons = dict(report.skipped)
    assert sorted(reasons) == sorted(f"bird/{name}" for name in expect)
    for name, word in expect.items():
        assert word in reasons[f"bird/{name}"] and "\n" not in reasons[f"bird/{name}"]
    man = json.loads((report.cache_dir / "manifest.json").read_text())
    listed = [e[0] for e in man["train"] + man["val"]]
    assert len(listed) == 12 and not any("cut" in p or "empty" in p for p in listed)
    assert sorted(k for k, _ in man["skipped"]) == sorted(reasons)
    bad_only = tmp_path / "bad"
    write_broken_recordings(bad_only / "cat", src / "bird/cifar10_bird_0.aedat")
    with pytest.raises(SnnkdError, match="none of the 7 recordings"):
        preprocess_dvs(bad_only, tmp_path / "out2")


def test_new_parameters_new_cache_and_open_dvs_cache(cache, tree, tmp_path: Path) -> None:
    out = cache[0].cache_dir.parent
    other = preprocess_dvs(tree[0], out, frames=4, size=16, split="per-class")
    assert other.cache_dir.name == "frames4-number-size16-per-class-bilinear" and other.cache_dir != cache[0].cache_dir
    man = json.loads((other.cache_dir / "manifest.json").read_text())
    assert [e[0].split(".")[0] for e in man["val"]] == [f"{c}/cifar10_{c}_0" for c in man["classes"]]
    assert open_dvs_cache(out, frames=10) == cache[0].cache_dir
    assert open_dvs_cache(out, split="per-class") == other.cache_dir
    assert open_dvs_cache(cache[0].cache_dir) == cache[0].cache_dir
    with pytest.raises(SnnkdError, match="several DVS caches") as err:
        open_dvs_cache(out)
    assert KEY in str(err.value)
    assert f"pass --data-dir {out / cache[0].cache_dir.name}" in str(err.value)  # an option every command has
    with pytest.raises(SnnkdError) as err:
        open_dvs_cache(cache[0].cache_dir, frames=8)
    msg = str(err.value)
    assert "\n" not in msg and "frames=10" in msg and "frames=8" in msg and "preprocess-dvs" in msg
    assert "--frames 8" in msg
    with pytest.raises(SnnkdError, match="no DVS cache .* matches frames=8"):
        open_dvs_cache(out, frames=8)
    with pytest.raises(SnnkdError, match="no DVS cache"):
        open_dvs_cache(tmp_path / "nothing")


def test_resize_is_in_the_key_and_an_area_cache_is_not_reused(tree, tmp_path: Path) -> None:
    """An area cache (snnkd before --resize, or --resize area) keeps its old name and is never opened for bilinear."""
    from snnkd_cli.config import DataConfig, RunConfig
    from snnkd_cli.data import build_datasets

    area = preprocess_dvs(tree[0], tmp_path, frames=4, size=16, resize="area")
    assert area.cache_dir.name == "frames4-number-size16-random"  # the name older snnkd gave it
    path = next(iter(tree[1]))
    with safe_open(str(area.cache_dir / f"{path.parent.name}/{path.name}.safetensors"), framework="pt") as f:
        assert torch.equal(f.get_tensor("frames"), frame_events(read_events(path), 4, "number", 16, resize="area"))
    with pytest.raises(SnnkdError) as err:  # the default (bilinear) does not take the area cache
        build_datasets(DataConfig(dataset="cifar10dvs", data_dir=str(tmp_path)))
    assert "resize=bilinear" in str(err.value) and "--resize bilinear" in str(err.value)
    man_path = area.cache_dir / "manifest.json"
    man = json.loads(man_path.read_text())
    del man["params"]["resize"]  # a manifest from before the parameter was recorded: area
    man_path.write_text(json.dumps(man))
    with pytest.raises(SnnkdError, match="resize=area but resize=bilinear was asked"):
        open_dvs_cache(area.cache_dir, resize="bilinear")
    assert open_dvs_cache(area.cache_dir, resize="area") == area.cache_dir
    bil = preprocess_dvs(tree[0], tmp_path, frames=4, size=16)
    assert bil.cache_dir.name == "frames4-number-size16-random-bilinear"
    assert open_dvs_cache(tmp_path, resize="bilinear") == bil.cache_dir
    assert build_datasets(DataConfig(dataset="cifar10dvs", data_dir=str(tmp_path)))[1].root == bil.cache_dir
    old = json.loads(RunConfig(data=DataConfig(dataset="cifar10dvs")).to_json())
    del old["data"]["resize"]  # a checkpoint written before the option: its cache was area
    assert RunConfig.from_dict(old).data.resize == "area"
    assert RunConfig.from_dict({"data": {"dataset": "cifar10"}}).data.resize == "bilinear"


def test_layout_and_argument_errors(tree, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SnnkdError, match="no recognised recordings"):
        preprocess_dvs(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(SnnkdError, match="does not exist"):
        preprocess_dvs(tmp_path / "missing", tmp_path / "out")
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(next(iter(tree[1])), flat)
    with pytest.raises(SnnkdError, match="directly in"):
        preprocess_dvs(flat, tmp_path / "out")
    with pytest.raises(SnnkdError, match=f"pass {tree[0]}"):
        preprocess_dvs(tree[0].parent, tmp_path / "out")
    (tmp_path / "zips").mkdir()
    (tmp_path / "zips/airplane.zip").write_bytes(b"PK")
    with pytest.raises(SnnkdError, match="extract them"):
        preprocess_dvs(tmp_path / "zips", tmp_path / "out")
    if importlib.util.find_spec("aedat") is None:  # tonic reads .aedat4 with the optional `aedat` package
        (tmp_path / "v4/cat").mkdir(parents=True)
        (tmp_path / "v4/cat/cifar10_cat_0.aedat4").write_bytes(b"")
        with pytest.raises(SnnkdError, match="pip install aedat"):
            preprocess_dvs(tmp_path / "v4", tmp_path / "out")
    bad = [dict(frames=0), dict(size=4), dict(split_by="space"), dict(split="odd"), dict(workers=0), dict(resize="x")]
    for kw in bad:
        with pytest.raises(SnnkdError):
            preprocess_dvs(tree[0], tmp_path / "out", **kw)


def test_dvs_frames_dataset(cache) -> None:
    cache_dir = cache[0].cache_dir
    train, val = DVSFrames(cache_dir, train=True), DVSFrames(cache_dir, train=False, augment=True)
    assert (len(train), len(val), train.frames, train.size) == (11, 1, T, 48)
    assert train.classes == ("airplane", "automobile", "bird")
    x, y = train[0]
    assert x.shape == (T, 2, 48, 48) and x.dtype == torch.float32 and isinstance(y, int)
    assert val[0][0].shape == (T, 2, 48, 48)
    xb, yb = next(iter(DataLoader(train, batch_size=4)))
    assert xb.shape == (4, T, 2, 48, 48) and yb.shape == (4,)


def test_augment_is_the_same_for_every_frame() -> None:
    frame = torch.rand(2, 24, 24)
    x = frame.expand(5, 2, 24, 24).clone()
    aug = DVSAugment()
    flipped = frame.flip(-1)
    got = aug.apply(x, {"flip": True, "op": "roll", "shift": (3, -5)})
    assert torch.equal(got, torch.roll(flipped, shifts=(3, -5), dims=(1, 2)).expand_as(x))
    assert torch.equal(got[2, 1, 3, 0], flipped[1, 0, 5])  # hand check: (y, x) came from (y - 3, x + 5)
    cut = aug.apply(x, {"flip": False, "op": "cutout", "center": (2, 20)})
    want = frame.clone()
    want[:, 0:10, 12:24] = 0  # the 16x16 square centred at (2, 20), clipped at the borders
    assert torch.equal(cut, want.expand_as(x))
    rot = aug.apply(x, {"flip": False, "op": "rotate", "angle": 17.0})
    assert torch.equal(rot, TF.rotate(frame, 17.0, interpolation=InterpolationMode.NEAREST).expand_as(x))
    g = torch.Generator().manual_seed(0)
    ops = set()
    for _ in range(30):
        params = aug.sample(24, 24, generator=g)
        ops.add(params["op"])
        out = aug.apply(x, params)
        assert out.shape == x.shape and all(torch.equal(out[0], out[t]) for t in range(5))
    assert ops == {"roll", "rotate", "cutout"}


def test_synthetic_events_deterministic_and_learnable() -> None:
    a, b = SyntheticEvents(40, seed=3), SyntheticEvents(40, seed=3)
    assert torch.equal(a.counts, b.counts) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.counts, SyntheticEvents(40, seed=4).counts)
    x, y = a[0]
    assert x.shape == (8, 2, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    train, val = SyntheticEvents(600, split_seed=0), SyntheticEvents(200, split_seed=1)

    def nearest_mean(features) -> float:
        xtr, xva = features(train.counts.float()), features(val.counts.float())
        means = torch.stack([xtr[train.labels == c].mean(0) for c in range(10)])
        return (torch.cdist(xva, means).argmin(1) == val.labels).float().mean().item()

    seq, mean_image = nearest_mean(lambda v: v.flatten(1)), nearest_mean(lambda v: v.mean(1).flatten(1))
    assert seq > 0.8  # chance is 0.1
    assert mean_image < seq - 0.2  # pairs differ only in the order of their frames


@pytest.mark.slow
def test_the_cifar10dvs_preset_runs_end_to_end_on_small_files(cli, tmp_path):
    """The paper's CIFAR10-DVS recipe (T=10, batch 32, ResNet-19 teacher and student) through the CLI on
    recordings written here: preprocess, train-teacher, distill, eval-sweep; the stored configs are the preset's."""
    from snnkd_cli.checkpoint import load_checkpoint

    make_cifar10dvs_tree(tmp_path / "src", per_class=12, classes=3, events=2000, seed=2)
    res = cli(["preprocess-dvs", tmp_path / "src", tmp_path / "cache", "--size", "16"])
    assert res.exit_code == 0, res.output
    common = ["--dataset", "cifar10dvs", "--data-dir", tmp_path / "cache", "--width", "4", "--epochs", "1"]
    res = cli(["train-teacher", *common, "--out", tmp_path / "t"])
    assert res.exit_code == 0, res.output
    res = cli(["distill", *common, "--teacher", tmp_path / "t" / "best.safetensors", "--out", tmp_path / "s"])
    assert res.exit_code == 0, res.output
    cfg = load_checkpoint(tmp_path / "s" / "best.safetensors").config
    assert (cfg.train.T, cfg.train.batch_size, cfg.model.arch, cfg.teacher_model.arch) == (
        10,
        32,
        "resnet19",
        "resnet19",
    )
    assert (cfg.data.frames, cfg.data.image_size, cfg.data.resize, cfg.model.in_channels) == (10, 16, "bilinear", 2)
    assert cfg.data.augment == "none" and cfg.kd.loss == "full-range"  # auto on a 1-epoch run: no augmentation
    res = cli(["eval-sweep", tmp_path / "s" / "best.safetensors", "--json", tmp_path / "sweep.json"])
    assert res.exit_code == 0, res.output
    (entry,) = json.loads((tmp_path / "sweep.json").read_text())["checkpoints"]
    assert [r["T"] for r in entry["results"]] == list(range(1, 11)) and entry["train_T"] == 10, entry
