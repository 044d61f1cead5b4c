"""Test helpers: broken recordings, and the same events in the other formats preprocess-dvs reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snnkd_cli.testing import AEDAT2_HEADER, write_aedat2


def write_broken_recordings(folder: Path, good: Path) -> dict[str, str]:
    """Write recordings that must be skipped into ``folder``, derived from the good AEDAT file ``good``.

    Returns:
        ``{file name: a word the skip reason must contain}``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    cases = {
        "cut_mid_event.aedat": (data[:-3], "truncated"),  # not a multiple of 4 bytes
        "cut_half_event.aedat": (data[:-4], "truncated"),  # an odd number of 32-bit words
        "header_only.aedat": (AEDAT2_HEADER, "no events"),
        "aedat1.aedat": (b"#!AER-DAT1.0\r\n" + data[len(AEDAT2_HEADER) :], "version"),
        "no_header.aedat": (b"\x00\x01" * 50, "header"),
        "empty.aedat": (b"", "empty"),
        "not_a_zip.npz": (b"garbage", "not a numpy"),
    }
    for name, (content, _) in cases.items():
        (folder / name).write_bytes(content)
    return {name: word for name, (_, word) in cases.items()}


def write_event_formats(folder: Path, stem: str, ev: dict[str, np.ndarray]) -> list[Path]:
    """The same events as AEDAT 2.0, spikingjelly ``events_np`` (.npz) and a tonic structured array (.npy)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_aedat2(folder / f"{stem}.aedat", ev["x"], ev["y"], ev["p"], ev["t"])
    np.savez(folder / f"{stem}_sj.npz", t=ev["t"], x=ev["x"], y=ev["y"], p=ev["p"])
    dtype = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])  # tonic's events_struct
    arr = np.empty(len(ev["t"]), dtype=dtype)
    for k in "xytp":
        arr[k] = ev[k]
    np.save(folder / f"{stem}_tonic.npy", arr)
    return [folder / f"{stem}.aedat", folder / f"{stem}_sj.npz", folder / f"{stem}_tonic.npy"]
