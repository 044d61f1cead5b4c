"""The defaults that decide accuracy on real data: schedule, augmentation policies, neuron precision,
evaluation precision, and short runs that must still train."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as tvt

from snnkd_cli.config import (
    DVS_AUGMENT_MIN_EPOCHS,
    MAX_WARMUP_SHARE,
    PRESETS,
    DataConfig,
    RunConfig,
    from_preset,
    warmup_steps,
)
from snnkd_cli.data import for_run_length
from snnkd_cli.data import transforms as tf
from snnkd_cli.errors import SnnkdError
from snnkd_cli.models.neurons import LIF, make_lif, set_neuron_precision
from snnkd_cli.train.loop import lr_lambda

pytestmark = pytest.mark.usefixtures("one_thread")


def test_presets_have_no_warmup_and_the_paper_lr():
    """The paper's code has no warm-up for any dataset and a peak lr of 0.1 (0.2 on ImageNet)."""
    assert all(p.warmup_epochs == 0 for p in PRESETS.values())
    assert {name: p.lr for name, p in PRESETS.items() if name != "imagenet"} == dict.fromkeys(
        [n for n in PRESETS if n != "imagenet"], 0.1
    )
    assert PRESETS["imagenet"].lr == 0.2
    # the ANN teacher takes half the student's peak lr (an ANN collapsed at 0.1 on 4 epochs of real digits)
    for name, p in PRESETS.items():
        assert from_preset("teacher", name).train.lr == p.lr / 2 == p.teacher_lr
        assert from_preset("distill", name).train.lr == p.lr
    assert from_preset("teacher", "cifar10", lr=0.1).train.lr == 0.1


@pytest.mark.parametrize(
    "epochs,steps,asked,expected",
    [
        (300, 100, 5, 500),  # a long run gets what it asks
        (3, 10, 5, 7),  # 5 epochs of a 3-epoch run: capped at a quarter of 30 steps
        (4, 22, 2, 22),  # 2 of 4 epochs (the old imagefolder preset): a quarter, 22 of 88 steps
        (2, 10, 0, 0),
    ],
)
def test_warmup_is_a_bounded_share_of_the_run(epochs, steps, asked, expected):
    total = epochs * steps
    assert warmup_steps(asked, steps, total) == expected
    assert warmup_steps(asked, steps, total) <= MAX_WARMUP_SHARE * total
    f = lr_lambda(total, expected)
    assert f(total) == pytest.approx(0.0)  # the schedule always reaches 0 at the end of the run


def test_augment_default_by_dataset_and_size():
    assert tf.default_augment("cifar10", 32) == "cifar"
    assert tf.default_augment("imagenet", 224) == "imagenet"
    assert tf.default_augment("imagefolder", 32) == "crop"  # no flip: digits, text, signs
    assert tf.default_augment("imagefolder", 64) == "crop"
    assert tf.default_augment("imagefolder", 128) == "imagenet"
    assert tf.default_augment("cifar10dvs", 48) == "dvs"  # the length of the run not known: the paper's
    assert tf.default_augment("cifar10dvs", 48, DVS_AUGMENT_MIN_EPOCHS) == "dvs"
    assert tf.default_augment("cifar10dvs", 48, DVS_AUGMENT_MIN_EPOCHS - 1) == "none"  # a short run
    assert tf.default_augment("imagefolder", 32, 1) == "crop"  # images: the length of the run does not matter
    assert tf.default_augment("synthetic", 16) == "none"
    assert [tf.crop_padding(s) for s in (16, 32, 64)] == [2, 4, 8]


def test_auto_augment_on_event_data_follows_the_length_of_the_run():
    dvs = DataConfig(dataset="cifar10dvs")
    assert for_run_length(dvs, 3).augment == "none"
    assert for_run_length(dvs, 300).augment == "dvs"  # the paper's CIFAR10-DVS recipe
    assert for_run_length(dataclasses.replace(dvs, augment="dvs"), 3).augment == "dvs"  # asked for: kept
    assert for_run_length(DataConfig(dataset="imagefolder"), 3).augment == "auto"  # settled later, by image size


@pytest.mark.parametrize(
    "dataset,augment,msg",
    [
        ("imagefolder", "dvs", "does not apply to imagefolder"),
        ("cifar10dvs", "crop", "does not apply to cifar10dvs"),
        ("synthetic", "crop", "does not apply to synthetic"),
        ("cifar10", "rotate", "does not apply"),
    ],
)
def test_augment_that_does_not_fit_the_data_is_refused(dataset, augment, msg):
    with pytest.raises(SnnkdError, match=msg):
        from_preset("teacher", dataset, augment=augment)


def test_folder_crop_policy_composition_and_values():
    """crop: RGB, fit to size, RandomCrop(size, padding=size//8), no flip; eval: the whole image fitted."""
    t = tf.folder_train_transform(32, "crop")
    names = [type(op).__name__ for op in t.transforms]
    assert names == ["Lambda", "Resize", "CenterCrop", "RandomCrop", "ToTensor", "Normalize"]
    crop = t.transforms[3]
    assert crop.padding == 4 and crop.size == (32, 32)
    assert not any(isinstance(op, tvt.RandomHorizontalFlip) for op in t.transforms)
    assert any(isinstance(op, tvt.RandomHorizontalFlip) for op in tf.folder_train_transform(32, "crop-flip").transforms)
    cifar = [type(op).__name__ for op in tf.folder_train_transform(32, "cifar").transforms]
    assert cifar[3:] == ["RandomCrop", "RandomHorizontalFlip", "AutoAugment", "ToTensor", "Cutout", "Normalize"]
    # eval of a 32 px image at 32 px is the image itself, normalised (no 87.5% centre crop)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    x = tf.folder_eval_transform(32, "crop")(img)
    mean, std = torch.tensor(tf.IMAGENET_MEAN)[:, None, None], torch.tensor(tf.IMAGENET_STD)[:, None, None]
    expected = (torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255 - mean) / std
    torch.testing.assert_close(x, expected)
    # the ImageNet policy evaluates a centre crop of 87.5% of the resized image
    names = [type(op).__name__ for op in tf.folder_eval_transform(224, "imagenet").transforms]
    assert names == ["Lambda", "Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert tf.folder_eval_transform(224, "imagenet").transforms[1].size == 256


def test_old_configs_with_a_boolean_augment_still_load():
    base = json.loads(RunConfig().to_json())
    assert RunConfig.from_dict({**base, "data": {**base["data"], "augment": True}}).data.augment == "auto"
    assert RunConfig.from_dict({**base, "data": {**base["data"], "augment": False}}).data.augment == "none"


def test_lif_keeps_fp32_state_under_autocast():
    """Under bf16 autocast the default LIF runs on the fp32 input as it would outside autocast; with
    neuron precision "autocast" its state is bf16 (spikingjelly's own behaviour) and can differ."""
    torch.manual_seed(0)
    x = (torch.rand(6, 4, 64) * 1.2).to(torch.bfloat16)  # [T, B, N] currents near the threshold
    plain = make_lif()
    ref = plain(x.float())
    lif = make_lif()
    assert isinstance(lif, LIF) and lif.fp32_state
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lif(x)
    assert lif.v.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    net = torch.nn.Sequential(make_lif(), make_lif())
    assert set_neuron_precision(net, "autocast") == 2 and not any(m.fp32_state for m in net)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net[0](x)
    assert net[0].v.dtype == torch.bfloat16


def test_neuron_precision_is_validated_and_saved(tmp_path):
    with pytest.raises(SnnkdError, match="unknown neuron precision"):
        from_preset("distill", "synthetic", neuron_precision="fp8")
    cfg = from_preset("distill", "synthetic", neuron_precision="autocast")
    assert RunConfig.from_dict(json.loads(cfg.to_json())).train.neuron_precision == "autocast"


def _folder(root: Path, n_train: int = 48, n_val: int = 10, size: int = 16) -> Path:
    """Three classes a network tells apart at once: bright bar at the top, middle or bottom (noisy)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for c in range(3):
            d = root / split / f"c{c}"
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                img[c * size // 3 : (c + 1) * size // 3] = 230
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def test_a_two_epoch_run_trains_on_every_preset_kind(tmp_path):
    """--epochs 2 with each dataset kind's preset schedule (no warm-up, lr 0.1, cosine to 0) learns well
    above chance: the teachers of an image folder and of the built-in image and event data."""
    from snnkd_cli.train.run import train

    small = {"width": 8, "epochs": 2, "precision": "fp32"}
    folder = _folder(tmp_path / "folder")
    runs = {
        # batch 8: 36 steps in all (80 on synthetic), so that BatchNorm's running statistics (momentum 0.1) have
        # settled while the per-step cosine still leaves some lr
        "imagefolder": {"data_dir": str(folder), "image_size": 16, "arch": "resnet18", "batch_size": 8},
        "synthetic": {"synthetic_train": 320, "synthetic_val": 100, "batch_size": 8},
        "synthetic-dvs": {
            "synthetic_train": 320,
            "synthetic_val": 100,
            "image_size": 16,
            "frames": 4,
            "batch_size": 16,
        },
    }
    for dataset, kw in runs.items():
        cfg = from_preset("teacher", dataset, out=str(tmp_path / dataset), **small, **kw)
        assert cfg.train.warmup_epochs == 0
        out = train(cfg)
        chance = 100 / out.config.model.num_classes
        assert out.fit.best_top1 > 2 * chance, (dataset, out.fit.history[-1])
        assert out.config.data.augment == {"imagefolder": "crop"}.get(dataset, "none")


def test_cosine_epoch_schedule_equals_torchs_cosine_annealing_stepped_per_epoch():
    """cosine-epoch (the paper's) gives every step of epoch e the lr CosineAnnealingLR(T_max=E) has after
    e epoch steps, as the paper's code does; cosine-step moves every step and ends at 0."""
    epochs, spe = 4, 5
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=0)
    expected = []
    for _ in range(epochs):
        expected += [opt.param_groups[0]["lr"]] * spe
        opt.step()
        ref.step()
    f = lr_lambda(epochs * spe, 0, spe)
    assert [0.1 * f(i) for i in range(epochs * spe)] == pytest.approx(expected)
    g = lr_lambda(epochs * spe, 0)
    assert g(0) == 1.0 and g(epochs * spe) == pytest.approx(0.0) and g(7) < f(7)
    assert from_preset("distill", "imagefolder").train.schedule == "cosine-step"
