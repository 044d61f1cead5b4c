"""Resume files: everything a run needs to continue exactly where it stopped.

``resume.safetensors`` holds the model, the optimiser's buffers and the RNG states as tensors,
and the rest (loop position, schedule, scaler, history, Python/NumPy RNG, the config) as JSON
metadata. Nothing is unpickled. Written atomically like every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save

from snnkd_cli.config import RunConfig
from snnkd_cli.errors import SnnkdError
from snnkd_cli.fsutil import atomic_write_bytes, read_safetensors

FORMAT = "snnkd-resume"
# Fields that may differ between the interrupted run and its resumption. train.sync_bn: the ImageNet recipe
# turns it on by the number of processes, which may change on resumption (as the per-rank batch does).
MAY_CHANGE = {"data.workers", "data.data_dir", "data.download", "train.out", "train.compile", "train.sync_bn"}


@dataclass
class LoopState:
    """Where the loop is: the next step to run is ``step`` (0-based) of ``epoch`` (1-based)."""

    epoch: int = 1
    step: int = 0
    best_top1: float = -1.0
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0


def save_resume(
    path: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    scaler: Any,
    loop: LoopState,
    config: RunConfig,
) -> None:
    """Write the whole training state to ``path`` atomically."""
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    osd = opt.state_dict()
    for idx, st in osd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim/{idx}/{name}"] = val.detach().cpu().contiguous()
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    py_state = random.getstate()
    sched_state = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
    meta = {
        "format": FORMAT,
        "config": config.to_json(),
        "loop": json.dumps(dataclasses.asdict(loop)),
        "param_groups": json.dumps(osd["param_groups"]),
        "scheduler": json.dumps(sched_state),
        "scaler": json.dumps(scaler.state_dict()),
        "rng_python": json.dumps([py_state[0], list(py_state[1]), py_state[2]]),
    }
    try:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        tensors["rng/numpy"] = torch.from_numpy(keys.astype(np.int64))
        meta["rng_numpy"] = json.dumps([kind, int(pos), int(has_gauss), float(gauss)])
    except ImportError:  # numpy is optional
        pass
    atomic_write_bytes(Path(path), st_save(tensors, metadata=meta))


@dataclass
class ResumeFile:
    """A loaded resume file."""

    path: Path
    config: RunConfig
    tensors: dict[str, torch.Tensor]
    meta: dict[str, str]

    def loop(self) -> LoopState:
        return LoopState(**json.loads(self.meta["loop"]))


def read_resume(path: str | Path) -> ResumeFile:
    """Read a resume file; one-line errors for a missing, corrupt or foreign file."""
    path = Path(path)
    tensors, meta = read_safetensors(path, "resume file", hint=" (it is written to --out as resume.safetensors)")
    if meta.get("format") != FORMAT:
        raise SnnkdError(f"{path} is not a snnkd resume file; pass the resume.safetensors of an earlier run")
    return ResumeFile(path, RunConfig.from_dict(json.loads(meta["config"])), tensors, meta)


def interrupted_note(out: Path) -> str:
    """What an interrupted run in ``out`` left: where its resume file stands and how to continue."""
    path = Path(out) / "resume.safetensors"
    try:
        loop = LoopState(**json.loads(read_safetensors(path, "resume file", tensors=False)[1]["loop"]))
    except (SnnkdError, KeyError, TypeError, ValueError):
        return f"no resume point was saved in {out} yet: run the same command again to start over"
    where = f"after epoch {loop.epoch - 1}" if loop.step == 0 else f"at epoch {loop.epoch}, step {loop.step}"
    return f"{path} holds the run {where}: add --resume to the same command to continue it"


def config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    """``section.field (old -> new)`` for every value that differs (ignoring :data:`MAY_CHANGE`)."""

    def flat(cfg: RunConfig) -> dict[str, Any]:
        out = {}
        for section, values in dataclasses.asdict(cfg).items():
            if isinstance(values, dict):
                out.update({f"{section}.{k}": v for k, v in values.items()})
            else:
                out[section] = values
        return out

    a, b = flat(old), flat(new)
    keys = sorted(k for k in set(a) | set(b) if k not in MAY_CHANGE and a.get(k) != b.get(k))
    return [f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in keys]


def restore(res: ResumeFile, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, scaler: Any) -> LoopState:
    """Load model, optimiser, schedule, scaler and RNG states from ``res``; return the loop position."""
    t = res.tensors
    model = getattr(model, "module", model)  # DistributedDataParallel wraps the network
    model.load_state_dict({k[len("model/") :]: v for k, v in t.items() if k.startswith("model/")}, strict=True)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in t.items():
        if k.startswith("optim/"):
            _, idx, name = k.split("/", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(res.meta["param_groups"])})
    sched_state = json.loads(res.meta["scheduler"])
    sched_state["lr_lambdas"] = [None] * len(sched.lr_lambdas)
    sched.load_state_dict(sched_state)
    # the lr of the saved position under this run's schedule (the same unless --epochs changed)
    for group, base, fn in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True):
        group["lr"] = base * fn(sched.last_epoch)
    scaler.load_state_dict(json.loads(res.meta["scaler"]))
    torch.set_rng_state(t["rng/torch"])
    cuda = [t[k] for k in sorted(t) if k.startswith("rng/cuda/")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    v, state_py, gauss = json.loads(res.meta["rng_python"])
    random.setstate((v, tuple(state_py), gauss))
    if "rng_numpy" in res.meta:
        import numpy as np

        kind, pos, has_gauss, g = json.loads(res.meta["rng_numpy"])
        np.random.set_state((kind, t["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, g))
    return res.loop()
