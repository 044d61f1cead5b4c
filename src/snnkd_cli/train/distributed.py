"""Training on several processes: the process group, and BatchNorm synchronised over ranks. Where this process
stands (rank, world size, the sum over ranks) is read in :mod:`snnkd_cli.dist`, re-exported here.

One process: rank 0 of world 1, no process group, no DDP wrapper (an off switch costs nothing).
"""

from __future__ import annotations

import torch

from snnkd_cli.config import PRESETS, RunConfig
from snnkd_cli.dist import DistEnv, all_reduce_sum, dist_env
from snnkd_cli.errors import SnnkdError

__all__ = [
    "CPUSyncBatchNorm",
    "DistEnv",
    "MultiStepCPUSyncBatchNorm",
    "MultiStepSyncBatchNorm",
    "all_reduce_sum",
    "convert_sync_bn",
    "dist_env",
    "finish_distributed",
    "init_distributed",
    "resolve_sync_bn",
]


def resolve_sync_bn(cfg: RunConfig, env: DistEnv | None = None) -> bool:
    """Whether the run synchronises BatchNorm over ranks: ``--sync-bn``/``--no-sync-bn`` when given, else
    what the recipe does: on for the ImageNet preset (as the paper's code) when torchrun started more than
    one process, off otherwise.

    Args:
        cfg: the run (its ``train.sync_bn`` and ``data.dataset``).
        env: this process's place (default: read from torchrun's environment by :func:`dist_env`).
    """
    if cfg.train.sync_bn is not None:  # --sync-bn or --no-sync-bn given
        return bool(cfg.train.sync_bn)
    env = env or dist_env()
    preset = PRESETS.get(cfg.data.dataset)
    return env.distributed and preset is not None and preset.sync_bn


def init_distributed(env: DistEnv) -> torch.device:
    """Join torchrun's process group (nccl on GPUs, gloo on CPU) and return this rank's device."""
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)
        device = torch.device("cuda", env.local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def finish_distributed() -> None:
    """Wait for every rank, then leave the process group (a no-op on one process).

    Without this, a rank that finishes first exits while gloo's threads still run and aborts
    ("terminate called without an active exception").
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class CPUSyncBatchNorm(torch.nn.BatchNorm2d):
    """BatchNorm whose batch statistics cover every rank's batch, for gloo on CPU.

    ``torch.nn.SyncBatchNorm`` runs on GPUs only; this computes the same statistics with an
    autograd-aware all-reduce of the per-channel sum, sum of squares and count, so training on N
    processes equals one process with the global batch. Input ``[N, C, H, W]``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        xf = x.float()
        C = x.shape[1]
        n = torch.tensor([x.numel() / C], dtype=torch.float32, device=x.device)
        stats = all_reduce(torch.cat([xf.sum((0, 2, 3)), n]))  # [C + 1]: sum and count over ranks
        count = stats[-1]
        mean = stats[:C] / count
        # second pass, (x - mean)^2: E[x^2] - mean^2 cancels badly in float32
        var = all_reduce(((xf - mean.view(1, C, 1, 1)) ** 2).sum((0, 2, 3))) / count  # biased, as BN normalises
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 0.1
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * (var.detach() * count / (count - 1)))
            self.num_batches_tracked.add_(1)
        shape = (1, C, 1, 1)
        y = (xf - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


class _MultiStep:
    """Mixin: spikingjelly's multi-step BatchNorm input ``[T, B, C, H, W]`` is normalised as ``[T*B, C, H, W]``
    (its own ``step_mode='m'`` behaviour), so the replaced layer keeps its semantics and its state-dict keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            T, B = x.shape[:2]
            return super().forward(x.flatten(0, 1)).unflatten(0, (T, B))
        return super().forward(x)


class MultiStepSyncBatchNorm(_MultiStep, torch.nn.SyncBatchNorm):
    """torch's SyncBatchNorm (GPUs) for a multi-step spikingjelly BatchNorm2d."""


class MultiStepCPUSyncBatchNorm(_MultiStep, CPUSyncBatchNorm):
    """:class:`CPUSyncBatchNorm` for a multi-step spikingjelly BatchNorm2d."""


def convert_sync_bn(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``--sync-bn``: every BatchNorm (torch's and its subclasses, spikingjelly's multi-step ones included)
    becomes torch's SyncBatchNorm on GPUs or :class:`CPUSyncBatchNorm` on CPU, weights and statistics kept.

    Raises:
        SnnkdError: a BatchNorm this cannot synchronise (on CPU: anything but 2-d).
    """
    for name, child in model.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, (torch.nn.SyncBatchNorm, CPUSyncBatchNorm)
        ):
            setattr(model, name, _synced(child, device, f"{type(model).__name__}.{name}"))
        else:
            convert_sync_bn(child, device)
    return model


def _synced(bn: torch.nn.Module, device: torch.device, where: str) -> torch.nn.Module:
    multi = getattr(bn, "step_mode", "s") == "m"
    if device.type == "cuda":
        cls = MultiStepSyncBatchNorm if multi else torch.nn.SyncBatchNorm
    elif isinstance(bn, torch.nn.BatchNorm2d):
        cls = MultiStepCPUSyncBatchNorm if multi else CPUSyncBatchNorm
    else:
        raise SnnkdError(
            f"--sync-bn on CPU synchronises 2-d BatchNorm only; {where} is a {type(bn).__name__}: drop --sync-bn"
        )
    new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    new.load_state_dict(bn.state_dict())
    return new.to(next(bn.parameters(), torch.empty(0)).device)
