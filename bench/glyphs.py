"""Printed glyphs from real typefaces: image folders with a typeface shift between train and val.

Used by ``bench/realdata.py glyphs``. The typefaces come from Debian's font packages (see
:data:`DEBIAN_FONT_PACKAGES`); every font file under ``--font-dir`` that has an outline for each
character is used, except symbol and decorative fonts (:data:`SKIPPED_FAMILIES`). Fonts of one design
(a family and its clones: Nimbus Sans, FreeSans and Liberation Sans are all Helvetica or Arial
shapes) form one *design group* (:data:`DESIGN_GROUPS`), so a held-out group shares no shapes with
training.

Each image: one character, cropped to its ink, scaled to a height of ``U(0.55, 0.8)`` of the canvas
(width at most 0.9 of it), placed at the centre shifted by ``U(-0.08, 0.08)`` of the side, rotated by
``U(-8, 8)`` degrees, drawn at 4x and reduced with a Lanczos filter; ink and paper are random RGB
colours whose luma differs by at least 0.35; then a Gaussian blur of radius ``U(0, 0.6)`` px and
Gaussian pixel noise of std ``U(0, 0.04)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DEBIAN_FONT_PACKAGES = (
    "fonts-dejavu-core fonts-urw-base35 fonts-liberation fonts-freefont-ttf fonts-noto-core "
    "fonts-crosextra-carlito fonts-crosextra-caladea fonts-linuxlibertine fonts-cantarell"
)
DIGITS = "0123456789"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LATIN_CHECK = DIGITS + LETTERS  # a font is used only if it draws all of these (Latin text fonts)
# symbol, mathematical and decorative fonts: their letters are ornaments, boxed initials or keycaps
SKIPPED_FAMILIES = (
    "D050000L",
    "Standard Symbols PS",
    "Noto Sans Symbols",
    "Noto Sans Math",
    "DejaVu Math TeX Gyre",
    "Noto Traditional Nushu",
    "Linux Biolinum Keyboard O",
    "Linux Libertine Initials O",
)
# family -> design group: clones and close relatives of one design share a group
DESIGN_GROUPS = {
    "Nimbus Sans": "helvetica-arial",
    "Nimbus Sans Narrow": "helvetica-arial",
    "FreeSans": "helvetica-arial",
    "Liberation Sans": "helvetica-arial",
    "Liberation Sans Narrow": "helvetica-arial",
    "Nimbus Roman": "times",
    "FreeSerif": "times",
    "Liberation Serif": "times",
    "Nimbus Mono PS": "courier",
    "FreeMono": "courier",
    "Liberation Mono": "courier",
    "DejaVu Sans": "dejavu",
    "DejaVu Sans Mono": "dejavu",
    "DejaVu Serif": "dejavu",
    "Noto Sans": "noto",
    "Noto Sans Display": "noto",
    "Noto Serif": "noto",
    "Noto Serif Display": "noto",
    "Linux Libertine O": "libertine",
    "Linux Libertine Display O": "libertine",
    "Linux Libertine Mono O": "libertine",
    "Linux Biolinum O": "libertine",
    "P052": "palatino",
    "C059": "century-schoolbook",
    "URW Bookman": "bookman",
    "URW Gothic": "avant-garde",
    "Z003": "zapf-chancery",
}
# held out by default in a typeface split: four designs of four kinds (old-style serif, geometric sans,
# humanist sans, modern serif), none of them a clone of a training design
VAL_GROUPS = ("palatino", "avant-garde", "cantarell", "caladea")
OVERSAMPLE = 4


@dataclass(frozen=True)
class Face:
    """One usable font file: its path, family, style and design group."""

    path: Path
    family: str
    style: str
    group: str


def design_group(family: str) -> str:
    """The design group of a family (:data:`DESIGN_GROUPS`; otherwise its own name, lower case)."""
    return DESIGN_GROUPS.get(family, family.lower().replace(" ", "-"))


def _draws(font: ImageFont.FreeTypeFont, chars: str) -> bool:
    """Whether ``font`` has a visible outline, other than its missing-glyph box, for every character."""
    missing = bytes(font.getmask("\U0010fffd"))
    return all(font.getmask(c).getbbox() and bytes(font.getmask(c)) != missing for c in chars)


def find_faces(font_dirs: list[Path], chars: str) -> list[Face]:
    """Every ``.ttf``/``.otf`` under ``font_dirs`` that draws :data:`LATIN_CHECK` and ``chars``, sorted by path;
    :data:`SKIPPED_FAMILIES` left out."""
    faces = []
    files = sorted({p for d in font_dirs for p in d.rglob("*") if p.suffix.lower() in (".ttf", ".otf")})
    for path in files:
        try:
            font = ImageFont.truetype(str(path), 40)
        except OSError:
            continue
        family, style = font.getname()
        if family in SKIPPED_FAMILIES or not _draws(font, LATIN_CHECK + chars):
            continue
        faces.append(Face(path, family, style, design_group(family)))
    return faces


def _ink(face: Face, char: str) -> Image.Image:
    """The character drawn white on black at 160 px, cropped to its ink (``L`` mode)."""
    font = ImageFont.truetype(str(face.path), 160)
    canvas = Image.new("L", (400, 400), 0)
    ImageDraw.Draw(canvas).text((100, 60), char, font=font, fill=255)
    return canvas.crop(canvas.getbbox())


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ink and paper RGB in [0, 1] whose luma differs by at least 0.35."""
    weights = np.array([0.299, 0.587, 0.114])
    while True:
        ink, paper = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        if abs(float((ink - paper) @ weights)) >= 0.35:
            return ink, paper


def render(face: Face, char: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One ``size`` x ``size`` RGB image of ``char`` in ``face`` with the variation of the module docstring."""
    big = size * OVERSAMPLE
    ink = _ink(face, char)
    height = rng.uniform(0.55, 0.8) * big
    scale = min(height / ink.height, 0.9 * big / ink.width)
    glyph = ink.resize((max(1, round(ink.width * scale)), max(1, round(ink.height * scale))), Image.Resampling.LANCZOS)
    mask = Image.new("L", (big, big), 0)
    dx, dy = rng.uniform(-0.08, 0.08, 2) * big
    mask.paste(glyph, (round((big - glyph.width) / 2 + dx), round((big - glyph.height) / 2 + dy)))
    mask = mask.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BICUBIC)
    alpha = np.asarray(mask.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64)[..., None] / 255
    fg, bg = _colours(rng)
    img = Image.fromarray(np.rint(255 * (alpha * fg + (1 - alpha) * bg)).astype(np.uint8), "RGB")
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.6)))
    noisy = np.asarray(img, dtype=np.float64) / 255 + rng.normal(0, rng.uniform(0, 0.04), (size, size, 3))
    return Image.fromarray(np.rint(255 * np.clip(noisy, 0, 1)).astype(np.uint8), "RGB")


def split_faces(faces: list[Face], val_groups: tuple[str, ...]) -> dict[str, list[Face]]:
    """Typeface split: the faces of ``val_groups`` to val, every other face to train."""
    return {
        "train": [f for f in faces if f.group not in val_groups],
        "val": [f for f in faces if f.group in val_groups],
    }


def _seed(face: Face, char: str, variant: int, seed: int) -> list[int]:
    """A generator seed for one image that does not depend on which other fonts exist."""
    digest = hashlib.sha256(f"{face.path.name}|{char}|{variant}".encode()).digest()
    return [seed, int.from_bytes(digest[:8], "little")]


def write_glyphs(
    out: Path,
    faces: list[Face],
    chars: str,
    size: int,
    variants: int,
    seed: int,
    split: str,
    val_groups: tuple[str, ...] = VAL_GROUPS,
    val_fraction: float = 0.2,
) -> dict:
    """Write ``out/{train,val}/<char>/<font>-<variant>.png``; returns counts, fonts and groups per split.

    ``split`` ``"typeface"``: the faces of ``val_groups`` are val, the rest train (a shift: no val
    typeface is seen in training). ``"random"``: every (face, character) pair goes to val with probability
    ``val_fraction`` (all its variants together), drawn from ``seed``.
    """
    for part in ("train", "val"):
        for c in chars:
            (out / part / c).mkdir(parents=True)
    counts = {"train": 0, "val": 0}
    used: dict[str, set[str]] = {"train": set(), "val": set()}
    pick = np.random.default_rng([seed, 7])
    by_split = split_faces(faces, val_groups) if split == "typeface" else {"train": faces, "val": []}
    for part, chosen in by_split.items():
        for face in chosen:
            for c in chars:
                where = part
                if split == "random":
                    where = "val" if pick.uniform() < val_fraction else "train"
                used[where].add(face.group)
                for v in range(variants):
                    img = render(face, c, size, np.random.default_rng(_seed(face, c, v, seed)))
                    img.save(out / where / c / f"{face.path.stem}-{v}.png")
                    counts[where] += 1
    return {
        "counts": counts,
        "groups": {k: sorted(v) for k, v in used.items()},
        "fonts": [{"file": f.path.name, "family": f.family, "style": f.style, "group": f.group} for f in faces],
    }
