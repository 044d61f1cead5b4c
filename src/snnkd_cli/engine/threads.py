"""CPU threads: a default that cannot collapse when the cores are shared with the DataLoader's workers.

On a 2-core machine torch's default (one OpenMP thread per core) beside 2 loader workers, or beside another
job, made OpenMP's spinning threads wait on each other: ten steps took 30.7 s instead of 0.3 s
(``bench/threads.py`` measures it). snnkd takes the cores this process may use, shares them among the
processes of this node (torchrun) and leaves one per loader worker.
"""

from __future__ import annotations

import os

import torch

from snnkd_cli.errors import SnnkdError


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads(workers: int) -> int:
    """``usable_cores / processes on this node - workers``, at least 1."""
    per_process = usable_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, per_process - max(0, workers))


def set_threads(threads: int | None, workers: int) -> int:
    """Set torch's intra-op threads to ``threads`` (None: :func:`default_threads`); return the number set."""
    if threads is not None and threads < 1:
        raise SnnkdError(f"--threads must be >= 1, got {threads}")
    n = default_threads(workers) if threads is None else threads
    torch.set_num_threads(n)
    return n
