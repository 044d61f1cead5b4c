"""Where this process stands among torchrun's, read in one place: rank, world size, "is this the main
process", and the sum over processes. Below every user of them (training, evaluation, inference, the command
line); torch loads only when a sum is taken. Process groups and synchronised BatchNorm are training's
(:mod:`snnkd_cli.train.distributed`).

One process: rank 0 of world 1, and a sum is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` picks the GPU)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_primary(self) -> bool:
        """Only the main process prints, logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_env() -> DistEnv:
    """Read torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (defaults: one process)."""
    env = os.environ
    return DistEnv(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def is_main_process() -> bool:
    """Whether this is the main process (rank 0, or the only one): the one that prints and writes files."""
    return dist_env().is_primary


def local_world_size() -> int:
    """torchrun's processes on this node (``LOCAL_WORLD_SIZE``; 1 without torchrun)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def all_reduce_sum(*tensors: torch.Tensor) -> None:
    """Sum tensors over processes in place (a no-op on one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        for t in tensors:
            dist.all_reduce(t)
