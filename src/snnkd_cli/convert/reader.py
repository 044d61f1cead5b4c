"""Read a state dict saved by other code: a ``.pth``/``.pt`` pickle (weights only, never code) or a plain
``.safetensors`` file, unwrapped from the usual containers (the paper's ``{"best_net": ...}``)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from snnkd_cli.errors import SnnkdError
from snnkd_cli.format import FORMAT
from snnkd_cli.fsutil import read_safetensors

# Containers that hold the weights under one key, first match wins: the paper's code saves
# {"best_acc", "best_epoch", "best_net", "optimizer"}; others use the rest.
WRAPPERS = ("best_net", "state_dict", "model_state_dict", "model", "net", "state_dict_ema", "model_ema")
PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def _first_line(err: BaseException) -> str:
    """The first line of an error's message, without terminal colour codes (torch's load errors have them)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(err).splitlines()[0]) if str(err) else ""


def _load_pickle(path: Path) -> object:
    """``torch.load(path, weights_only=True)`` with one-line errors."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # not a pickle torch can read at all
            raise SnnkdError(f"{path} is not a PyTorch state dict file (it cannot be unpickled)") from None
        raise SnnkdError(  # torch's weights-only unpickler met an object other than tensors
            f"{path} holds pickled Python objects (a whole model?), not only tensors: snnkd reads .pth files "
            "weights-only and never runs their code; save model.state_dict() and pass that file"
        ) from None
    except Exception as e:  # noqa: BLE001  (a file torch cannot parse at all: refuse it in one line)
        raise SnnkdError(f"{path} is not a PyTorch state dict file ({type(e).__name__}: {_first_line(e)})") from None


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    state, meta = read_safetensors(path, "state dict")
    if meta.get("format") == FORMAT:
        raise SnnkdError(f"{path} is already a snnkd checkpoint: use it as it is (no import needed)")
    return state


def is_safetensors(path: Path) -> bool:
    """True when ``path`` starts like a safetensors file (an 8-byte header length, then ``{``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30)


def unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a loaded file: ``obj`` itself or its first :data:`WRAPPERS` entry, with a
    :data:`PREFIXES` prefix that every key shares removed.

    Raises:
        SnnkdError: no state dict of tensors in it.
    """
    for key in WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())
    ):
        keys = ", ".join(map(str, list(obj)[:5])) if isinstance(obj, dict) else type(obj).__name__
        raise SnnkdError(
            f"{path} does not hold a state dict of tensors (found: {keys}); snnkd looks for the tensors themselves or "
            f"under one of {', '.join(WRAPPERS)}"
        )
    state = dict(obj)
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict a foreign file holds, in its own key layout.

    Args:
        path: a ``.pth``/``.pt``/``.bin`` file (``torch.save``; read with ``weights_only=True``) or a
            ``.safetensors`` file without snnkd metadata (e.g. timm's ``model.safetensors``).

    Returns:
        ``{key: tensor}`` on the CPU, unwrapped (see :func:`unwrap`).

    Raises:
        SnnkdError: missing file, not a state dict, pickled objects, a snnkd checkpoint (one line each).
    """
    path = Path(path)
    if not path.exists():
        raise SnnkdError(f"state dict not found: {path}")
    if not path.is_file():
        raise SnnkdError(f"state dict is not a file: {path}")
    if is_safetensors(path):
        return unwrap(_load_safetensors(path), path)
    return unwrap(_load_pickle(path), path)
