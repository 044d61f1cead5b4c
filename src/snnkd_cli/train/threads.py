"""CPU threads: a default that does not collapse when the cores are shared.

torch's default (one OpenMP thread per core, spinning while it waits for work) collapsed beside a second
job or the DataLoader's workers: 4.2-4.7x fewer steps per second on a 2-core machine (``bench/threads.py``,
``docs/benchmarks.md``). What fixed it there was OpenMP's passive wait (``OMP_WAIT_POLICY=PASSIVE``, set by
the ``snnkd`` command before torch loads), not fewer threads: leaving a core per loader worker cost a third
of the speed on an idle machine and bought nothing beside a second job. So snnkd takes the cores this
process may use, shared among torchrun's processes on the node.
"""

from __future__ import annotations

import os

import torch

from snnkd_cli.errors import SnnkdError, option


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """``usable_cores / processes on this node``, at least 1."""
    return max(1, usable_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads to ``threads`` (None: :func:`default_threads`); return the number set."""
    if threads is not None and threads < 1:
        raise SnnkdError(f"{option('threads')} must be >= 1, got {threads}")
    n = default_threads() if threads is None else threads
    torch.set_num_threads(n)
    return n
