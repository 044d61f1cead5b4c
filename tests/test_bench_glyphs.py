"""bench/glyphs.py (``realdata.py glyphs``): the typeface split holds out whole designs, images are what the
docstring says, and the same seed gives the same files."""

import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCH = Path(__file__).resolve().parents[1] / "bench"
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")


def load(name):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def faces():
    """DejaVu's faces (on Debian with fonts-dejavu-core), given two made-up design groups: "a" and "b"."""
    glyphs = load("glyphs")
    found = glyphs.find_faces([DEJAVU], "0123") if DEJAVU.is_dir() else []
    if len(found) < 4:
        pytest.skip("needs the DejaVu fonts (Debian: fonts-dejavu-core)")
    found = found[:4]
    return [glyphs.Face(f.path, f.family, f.style, "ab"[i % 2]) for i, f in enumerate(found)]


def tree(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*.png"))}


def test_typeface_split_holds_out_whole_groups(faces, tmp_path):
    glyphs = load("glyphs")
    info = glyphs.write_glyphs(tmp_path / "g", faces, "0123", 16, 2, 0, "typeface", val_groups=("b",))
    assert info["counts"] == {"train": 2 * 4 * 2, "val": 2 * 4 * 2}  # 2 faces x 4 chars x 2 variants each
    assert info["groups"] == {"train": ["a"], "val": ["b"]}
    val_stems = {f.path.stem for f in faces if f.group == "b"}
    for p in (tmp_path / "g" / "val").rglob("*.png"):
        assert p.stem.rsplit("-", 1)[0] in val_stems
    for p in (tmp_path / "g" / "train").rglob("*.png"):
        assert p.stem.rsplit("-", 1)[0] not in val_stems
    assert sorted(d.name for d in (tmp_path / "g" / "train").iterdir()) == ["0", "1", "2", "3"]


def test_images_are_rgb_two_colours_and_reproducible(faces, tmp_path):
    glyphs = load("glyphs")
    glyphs.write_glyphs(tmp_path / "a", faces, "01", 24, 1, 3, "random", val_fraction=0.5)
    glyphs.write_glyphs(tmp_path / "b", faces, "01", 24, 1, 3, "random", val_fraction=0.5)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    for p in (tmp_path / "a").rglob("*.png"):
        img = np.asarray(Image.open(p), dtype=np.float64) / 255
        assert img.shape == (24, 24, 3)
        luma = img @ np.array([0.299, 0.587, 0.114])
        # ink and paper differ by >= 0.35 in luma; blur and noise (std <= 0.04) leave most of it
        assert np.percentile(luma, 98) - np.percentile(luma, 2) > 0.2


def test_the_command_refuses_what_it_cannot_split(tmp_path, capsys):
    realdata = load("realdata")
    code = realdata.main(["glyphs", str(tmp_path / "g"), "--font-dir", str(tmp_path)])
    assert code == 2 and not (tmp_path / "g").exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "found 0 usable fonts" in err
    assert realdata.main(["glyphs", str(tmp_path / "g"), "--chars", "0a"]) == 2
