"""Atomic file writes, shared by checkpoints, reports, the DVS cache and exports."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from snnkd_cli.errors import SnnkdError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_beside(path: Path) -> tuple[int, str]:
    """A new temp file next to ``path`` (``.NAME.xxx.tmp``), open: ``(fd, name)``.

    Its mode follows the umask as ``open()`` would (``mkstemp`` alone makes it 0600, which would leave
    checkpoints and shared caches unreadable to colleagues after the rename).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


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
        fd, tmp = temp_beside(path)
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


STDOUT = "-"


def check_output_file(path: Path | str | None, option: str) -> None:
    """Before any long work: ``path`` can be written (``-``, standard output, always can).

    Nothing is created; the nearest existing folder above ``path`` must be a writable folder.

    Raises:
        SnnkdError: ``path`` is a folder, or its folder cannot be created or written.
    """
    if path is None or str(path) == STDOUT:
        return
    path = Path(path)
    if path.is_dir():
        raise SnnkdError(f"{option} {path} is a folder: give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise SnnkdError(f"cannot write {option} {path}: {parent} is not a writable folder; choose another path")


def read_safetensors(path: Path, what: str = "checkpoint", *, hint: str = "", tensors: bool = True):
    """Read a safetensors file: ``(tensors, metadata)``; one-line errors for a missing or damaged file.

    Args:
        path: the file.
        what: what the file is, for the messages ("checkpoint", "resume file"...).
        hint: appended to the "not found" message (where such files come from).
        tensors: also read the tensors (False: metadata only, ``{}`` for the tensors).

    Raises:
        SnnkdError: missing file, a folder, or not a readable safetensors file (corrupt, truncated).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.exists():
        raise SnnkdError(f"{what} not found: {path}{hint}")
    if not path.is_file():
        raise SnnkdError(f"{what} is not a file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SnnkdError(f"{path} is not a readable safetensors file (corrupt or truncated?): {msg}") from None
    return state, meta
