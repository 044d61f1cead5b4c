"""Loading batches: a sampler whose order depends only on (seed, epoch), sharded over ranks, and the
DataLoader every command uses."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from snnkd_cli.data import DataInfo
from snnkd_cli.errors import SnnkdError


class EpochSampler(Sampler[int]):
    """Shuffled (or ordered) indices fixed by ``(seed, epoch)``, sharded over ranks, resumable mid-epoch.

    Like ``DistributedSampler``: with ``drop_last`` the tail that does not fill a global batch
    is dropped, so every rank sees the same number of full batches. ``start_batch`` skips the
    first batches of the epoch (resume after a crash mid-epoch).

    Args:
        n: dataset length.
        batch_size: per-process batch size.
        shuffle: permute with ``torch.randperm`` seeded by ``seed + epoch``.
        seed: base seed.
        rank, world_size: this process's shard.
        drop_last: drop the incomplete last global batch.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        global_batch = self.batch_size * self.world_size
        if self.drop_last:
            order = order[: (self.n // global_batch) * global_batch]
        # rank r takes a contiguous slice of every global batch, so the union of the ranks' batch i
        # is the single-process batch i of the same global size
        out = []
        for b in range(0, len(order), global_batch):
            chunk = order[b : b + global_batch]
            out += chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return out[self.start_batch * self.batch_size :]

    def batches_per_epoch(self) -> int:
        """Batches in a whole epoch on this rank (whatever ``start_batch`` is)."""
        start, self.start_batch = self.start_batch, 0
        n = len(self._indices())
        self.start_batch = start
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def make_loader(
    ds: Dataset,
    batch_size: int,
    *,
    train: bool,
    workers: int,
    seed: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
) -> DataLoader:
    """A DataLoader. Training: an :class:`EpochSampler` (order fixed by seed and epoch, sharded over
    ranks, dropping the last partial batch when ``drop_last`` and there is more than one). Evaluation: in
    order (sharded over ranks under torchrun; the sweep sums the counts)."""
    sampler = None
    if not train and world_size > 1:
        sampler = EpochSampler(len(ds), batch_size, shuffle=False, rank=rank, world_size=world_size, drop_last=False)
    if train:
        drop = drop_last and len(ds) >= 2 * batch_size * world_size
        sampler = EpochSampler(
            len(ds), batch_size, shuffle=True, seed=seed, rank=rank, world_size=world_size, drop_last=drop
        )
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def check_T_fits(T: int, info: DataInfo, option: str) -> None:
    """Event data has a fixed number of frames per sample: T may not exceed it."""
    if info.temporal and info.frames is not None and T > info.frames:
        raise SnnkdError(
            f"{option} {T} is more than the {info.frames} frames per sample of {info.name}; "
            f"use {option} <= {info.frames} or preprocess with more --frames"
        )
