"""Shared fixtures: a CLI runner and tiny checkpoints trained once per session through the CLI itself."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner, Result

from snnkd_cli.cli.app import app

# The smallest runs that still go through every stage (data, model, loop, checkpoint, sweep).
TINY = ["--width", "8", "--epochs", "1", "--max-steps", "2", "--batch-size", "32"]
STUDENT_T = 2
FOLDER_CLASSES = ("cat", "dog", "emu")


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread while the tiny runs go: on a busy 2-core machine OpenMP's spin-waiting made the
    file 5x slower (80 s instead of 15 s). The previous setting is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """Every test leaves torch's intra-op thread count as it found it (a test or an in-process CLI run that
    sets it must not slow the tests after it: two threads beside another job made one 10x slower)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """A test that runs with one intra-op thread (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    with one_torch_thread():
        yield


def invoke(args: list[str]) -> Result:
    """Run ``snnkd ARGS`` in-process; stdout and stderr stay separate (``result.stdout``/``result.stderr``)."""
    with one_torch_thread():
        return CliRunner().invoke(app, [str(a) for a in args])


def _trained(args: list[str], out: Path) -> Path:
    res = invoke([*args, "--out", out])
    assert res.exit_code == 0, f"snnkd {' '.join(map(str, args))} failed ({res.exit_code}):\n{res.output}"
    return out


@pytest.fixture(scope="session")
def cli():
    """``cli(args) -> Result``: the snnkd command line, in-process."""
    return invoke


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output folder of ``snnkd train-teacher`` on synthetic data (ANN resnet18, width 8, 2 steps)."""
    return _trained(["train-teacher", *TINY], tmp_path_factory.mktemp("teacher") / "run")


@pytest.fixture(scope="session")
def teacher_ckpt(teacher_dir: Path) -> Path:
    return teacher_dir / "best.safetensors"


@pytest.fixture(scope="session")
def student_dir(tmp_path_factory: pytest.TempPathFactory, teacher_ckpt: Path) -> Path:
    """Output folder of ``snnkd distill`` (full-range, T=2) from :func:`teacher_ckpt`."""
    args = ["distill", "--teacher", teacher_ckpt, "--T", STUDENT_T, *TINY]
    return _trained(args, tmp_path_factory.mktemp("student") / "run")


@pytest.fixture(scope="session")
def student_ckpt(student_dir: Path) -> Path:
    return student_dir / "best.safetensors"


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/{train,val}/<class>/*.png``: 3 classes of 16x16 RGB PNGs (4 train and 2 val images each)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for c, name in enumerate(FOLDER_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                pixels[..., c] = 255  # each class leans towards one colour channel
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def folder_teacher_ckpt(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> Path:
    """A teacher trained on :func:`image_folder` (3 classes), so it does not fit the synthetic data (10)."""
    args = ["train-teacher", "--dataset", "imagefolder", "--data-dir", image_folder, "--image-size", "16"]
    args += ["--arch", "resnet18", "--workers", "0", *TINY]
    return _trained(args, tmp_path_factory.mktemp("folder-teacher") / "run") / "best.safetensors"
