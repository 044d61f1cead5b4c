"""Atomic file writes, shared by checkpoints, reports, the DVS cache and exports."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from snnkd_cli.errors import SnnkdError


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename.

    A crash or an error never leaves a partial ``path``; the temp file is removed on error.

    Args:
        path: the target (its parent folders are created).
        data: the bytes.
        fsync: flush to disk before the rename (off where a reader verifies files anyway).

    Raises:
        SnnkdError: the file cannot be written (one line, with the OS reason).
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise SnnkdError(
            f"cannot write {path}: {e.strerror or e}; choose a writable location with free space"
        ) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
