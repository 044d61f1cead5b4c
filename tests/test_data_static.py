"""Static datasets and transforms, on small files written here in the real formats (no mocks, no download)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from snnkd_cli.config import DataConfig
from snnkd_cli.data import build_datasets
from snnkd_cli.data.static import build_static
from snnkd_cli.data.transforms import Cutout
from snnkd_cli.errors import SnnkdError

# Written out by hand here, independent of transforms.py: the paper's util/data.py.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _dump(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj))


def _images(n: int, seed: int) -> np.ndarray:
    """``n`` CIFAR rows: uint8 ``[n, 3072]`` = 1024 red, 1024 green, 1024 blue values, row-major."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int = 2, n_test: int = 3) -> dict:
    """The official ``cifar-10-batches-py`` layout with ``per_batch`` images per train batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_data, train_labels = [], []
    for b in range(1, 6):
        data, labels = _images(per_batch, b), [(b + i) % 10 for i in range(per_batch)]
        _dump(folder / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "data": data, "labels": labels})
        train_data.append(data)
        train_labels += labels
    test_data, test_labels = _images(n_test, 0), [9, 0, 3][:n_test]
    test_data[2, 1 * 1024 + 5 * 32 + 7] = 200  # green channel, row 5, column 7
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "data": test_data, "labels": test_labels})
    names = [f"class{i}" for i in range(10)]
    _dump(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072})
    return {"train": (np.concatenate(train_data), train_labels), "test": (test_data, test_labels), "names": names}


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 4) -> dict:
    """The official ``cifar-100-python`` layout."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        data, fine = _images(n, seed), [(7 * i + seed) % 100 for i in range(n)]
        _dump(folder / split, {"data": data, "fine_labels": fine, "coarse_labels": [f % 20 for f in fine]})
        out[split] = (data, fine)
    out["names"] = [f"fine{i:02d}" for i in range(100)]
    _dump(folder / "meta", {"fine_label_names": out["names"], "coarse_label_names": [f"c{i}" for i in range(20)]})
    return out


def cifar_cfg(root: Path, dataset: str = "cifar10", download: bool = False) -> DataConfig:
    return DataConfig(dataset=dataset, data_dir=str(root), download=download)


def normalised(rows: np.ndarray, mean: tuple, std: tuple) -> torch.Tensor:
    """Second implementation of the eval transform: ``[N, 3072]`` uint8 -> ``[N, 3, 32, 32]``."""
    x = torch.from_numpy(rows.reshape(-1, 3, 32, 32).astype(np.float32) / 255)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def assert_one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


# --- CIFAR ---------------------------------------------------------------------------------------


def test_cifar10_real_parser_shapes_labels_and_classes(tmp_path: Path) -> None:
    ref = write_cifar10(tmp_path)
    tr, val, info = build_datasets(cifar_cfg(tmp_path))
    assert (len(tr), len(val)) == (10, 3)
    assert info.name == "cifar10" and info.num_classes == 10 and info.in_channels == 3
    assert info.image_size == 32 and info.temporal is False and info.classes == tuple(ref["names"])
    assert [tr[i][1] for i in range(10)] == ref["train"][1]  # batches 1..5 in order
    x, y = tr[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    assert pickle.loads(pickle.dumps(tr))[0][0].shape == (3, 32, 32)  # DataLoader workers may spawn
    assert [val[i][1] for i in range(3)] == ref["test"][1]
    images = torch.stack([val[i][0] for i in range(3)])
    torch.testing.assert_close(images, normalised(ref["test"][0], CIFAR10_MEAN, CIFAR10_STD))
    # One pixel by hand: raw 200 in the green channel -> (200 / 255 - 0.4822) / 0.1994.
    assert val[2][0][1, 5, 7].item() == pytest.approx((200 / 255 - 0.4822) / 0.1994, abs=1e-5)


def test_cifar100_real_parser(tmp_path: Path) -> None:
    ref = write_cifar100(tmp_path)
    tr, val, info = build_static(cifar_cfg(tmp_path, "cifar100"), 32)
    assert (len(tr), len(val)) == (6, 4)
    assert info.num_classes == 100 and info.classes == tuple(ref["names"])
    assert [tr[i][1] for i in range(6)] == ref["train"][1]  # fine labels, not coarse
    assert [val[i][1] for i in range(4)] == ref["test"][1]
    assert tr[0][0].shape == (3, 32, 32)
    torch.testing.assert_close(val[0][0], normalised(ref["test"][0][:1], CIFAR100_MEAN, CIFAR100_STD)[0])


def test_cifar_no_augment_eval_only_and_data_dir_naming_the_folder(tmp_path: Path) -> None:
    ref = write_cifar10(tmp_path)
    expected = normalised(ref["train"][0][:1], CIFAR10_MEAN, CIFAR10_STD)[0]
    tr, _, _ = build_static(cifar_cfg(tmp_path), 32, augment=False)
    torch.testing.assert_close(tr[0][0], expected)  # deterministic eval transform on the train set
    tr, val, _ = build_static(cifar_cfg(tmp_path / "cifar-10-batches-py"), 32, train=False)
    assert tr is None and len(val) == 3


def test_cifar_download_flag_keeps_an_existing_copy(tmp_path: Path) -> None:
    """torchvision would re-download a copy whose md5s differ; an existing complete copy must be used."""
    write_cifar10(tmp_path)
    _, val, _ = build_static(cifar_cfg(tmp_path, download=True), 32, train=False)
    assert len(val) == 3


@pytest.mark.parametrize(("dataset", "folder"), [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_cifar_says_where_and_how(tmp_path: Path, dataset: str, folder: str) -> None:
    with pytest.raises(SnnkdError) as err:
        build_static(cifar_cfg(tmp_path / "nowhere", dataset), 32)
    msg = assert_one_line(err)
    assert str(tmp_path / "nowhere" / folder) in msg and "--download" in msg and "--data-dir" in msg
    assert "no such folder" in msg


def test_partial_cifar_names_the_missing_files(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(SnnkdError) as err:
        build_static(cifar_cfg(tmp_path), 32)
    assert "data_batch_4" in assert_one_line(err)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("test_batch", b"\x80\x04 this is not a pickle"),
        ("test_batch", {"pixels": _images(2, 0), "labels": [0, 1]}),
        ("test_batch", {"data": _images(2, 0), "labels": [0, 10]}),  # label out of range
        ("test_batch", {"data": _images(2, 0), "labels": [0]}),  # one label for two images
        ("batches.meta", {"names": ["a"]}),
    ],
)
def test_corrupt_cifar_file_is_named(tmp_path: Path, name: str, content: object) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / name
    path.write_bytes(content) if isinstance(content, bytes) else _dump(path, content)
    with pytest.raises(SnnkdError) as err:
        build_static(cifar_cfg(tmp_path), 32, train=False)
    assert str(path) in assert_one_line(err)


def test_cifar_rejects_another_image_size(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(SnnkdError, match="32"):
        build_static(cifar_cfg(tmp_path), 24)


# --- Image folders -------------------------------------------------------------------------------


def write_folders(root: Path, train: dict[str, int], val: dict[str, int]) -> None:
    """``root/{train,val}/<class>/<i>.png`` with the given number of 40x30 images per class."""
    rng = np.random.default_rng(0)
    for split, counts in (("train", train), ("val", val)):
        for cls, n in counts.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")


def folder_cfg(root: Path, dataset: str = "imagefolder", size: int = 24) -> DataConfig:
    return DataConfig(dataset=dataset, data_dir=str(root), image_size=size)


def test_imagefolder_classes_lengths_shapes(tmp_path: Path) -> None:
    write_folders(tmp_path, {"cat": 3, "dog": 2}, {"cat": 1, "dog": 2})
    (tmp_path / "val" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    tr, val, info = build_datasets(folder_cfg(tmp_path))
    assert info.classes == ("cat", "dog") and info.num_classes == 2 and info.image_size == 24
    assert (len(tr), len(val)) == (5, 3)
    assert [y for _, y in tr] == [0, 0, 0, 1, 1] and [y for _, y in val] == [0, 1, 1]
    for x, _ in (tr[0], val[0], pickle.loads(pickle.dumps(tr))[0]):
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32


def test_imagefolder_eval_values_of_constant_images(tmp_path: Path) -> None:
    """Resize and crop keep a constant image constant; RGB conversion turns grey into three equal channels."""
    for c in ("a", "b"):  # two classes: a classifier needs them
        (tmp_path / "val" / c).mkdir(parents=True)
    Image.new("RGB", (50, 37), (200, 100, 50)).save(tmp_path / "val" / "a" / "0.png")
    Image.new("L", (20, 31), 128).save(tmp_path / "val" / "b" / "1.png")
    _, val, _ = build_static(folder_cfg(tmp_path), 24, train=False)
    colour = [(200 / 255 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, (50 / 255 - 0.406) / 0.225]
    grey = [(128 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    for (x, _), want in zip(val, (colour, grey), strict=True):
        assert x.shape == (3, 24, 24)
        torch.testing.assert_close(x, torch.tensor(want).view(3, 1, 1).expand(3, 24, 24), atol=1e-5, rtol=0)


def test_imagenet_layout_and_eval_only_ignores_train(tmp_path: Path) -> None:
    write_folders(tmp_path, {}, {"n01": 1, "n02": 1, "n03": 1})  # no train/ folder at all
    tr, val, info = build_static(folder_cfg(tmp_path, "imagenet", 32), 32, train=False)
    assert tr is None and len(val) == 3 and info.num_classes == 3 and val[0][0].shape == (3, 32, 32)


def test_imagenet_train_transform_shape(tmp_path: Path) -> None:
    write_folders(tmp_path, {"n01": 1, "n02": 1}, {"n01": 1, "n02": 1})
    tr, _, _ = build_static(folder_cfg(tmp_path, "imagenet", 32), 32)
    assert tr[1][0].shape == (3, 32, 32) and tr[1][1] == 1


def make_tree(root: Path, paths: list[str]) -> None:
    """Create ``paths`` under ``root``: ``x/`` a folder, ``*.png`` a small image, anything else a text file."""
    for rel in paths:
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".png"):
            Image.new("RGB", (8, 8)).save(path)
        else:
            path.write_text("not an image")


@pytest.mark.parametrize(
    ("paths", "expect"),
    [
        ([], "does not exist"),
        (["val/a/0.png"], "no train/ folder"),
        (["train/a/0.png"], "no val/ folder"),
        (["train/a/0.png", "val/"], "no class folders"),
        (["train/a/0.png", "train/b/0.png", "val/a/notes.txt", "val/b/0.png"], "no images"),
        (["train/a/0.png", "val/a/0.png"], "val has one class folder (a): a classifier needs at least 2"),
        (["train/a/0.png", "train/b/0.png", "val/a/0.png", "val/fish/0.png"], "only in train: b; only in val: fish"),
    ],
    ids=["no-data-dir", "no-train", "no-val", "no-classes", "no-images", "one-class", "classes-differ"],
)
def test_imagefolder_layout_errors(tmp_path: Path, paths: list[str], expect: str) -> None:
    root = tmp_path / "data"
    make_tree(root, paths)
    with pytest.raises(SnnkdError) as err:
        build_static(folder_cfg(root), 24)
    msg = assert_one_line(err)
    assert expect in msg and str(root) in msg


# --- Cutout --------------------------------------------------------------------------------------


def test_cutout_zeroes_the_hand_computed_square() -> None:
    """Cutout draws the centre row, then column; the square spans [c - 8, c + 8) clipped to the image."""
    img, cut, length = torch.rand(3, 32, 32) + 1, Cutout(16), 16
    seen_inside = seen_clipped = False
    for seed in range(40):
        torch.manual_seed(seed)
        cy, cx = int(torch.randint(32, ())), int(torch.randint(32, ()))
        torch.manual_seed(seed)
        out = cut(img)
        keep = torch.ones(32, 32)
        for y in range(32):
            for x in range(32):
                if cy - 8 <= y < cy + 8 and cx - 8 <= x < cx + 8:
                    keep[y, x] = 0
        torch.testing.assert_close(out, img * keep, atol=0, rtol=0)
        zeros = (out == 0).sum(dim=(1, 2))
        inside = 8 <= cy <= 24 and 8 <= cx <= 24
        clipped = (min(cy + 8, 32) - max(cy - 8, 0)) * (min(cx + 8, 32) - max(cx - 8, 0))
        expected = length * length if inside else clipped
        assert zeros.tolist() == [expected] * 3
        seen_inside |= inside
        seen_clipped |= not inside
    assert seen_inside and seen_clipped
    assert (img > 0).all()  # the input is not modified
