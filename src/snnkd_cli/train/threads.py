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
import time

import torch

from snnkd_cli.dist import local_world_size
from snnkd_cli.errors import SnnkdError, option


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """``usable_cores / processes on this node``, at least 1."""
    return max(1, usable_cores() // local_world_size())


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads to ``threads`` (None: :func:`default_threads`); return the number set."""
    if threads is not None and threads < 1:
        raise SnnkdError(f"{option('threads')} must be >= 1, got {threads}")
    n = default_threads() if threads is None else threads
    torch.set_num_threads(n)
    return n


# beside a job that keeps its own threads (bench/threads.py --rival torch|matmul), snnkd's default lost 1.4-1.5x
# and --threads 1 was slower still; two snnkd runs side by side did best with --threads 1 each (docs/benchmarks.md)
BUSY_ADVICE = "its timings are not an idle machine's; two snnkd runs side by side do best with --threads 1 each"


def _busy_seconds(cpus: set[int]) -> float | None:
    """CPU seconds ever spent busy on ``cpus`` (``/proc/stat``; None where it cannot be read)."""
    try:
        with open("/proc/stat") as f:
            lines = [line.split() for line in f if line.startswith("cpu") and line[3].isdigit()]
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    busy = 0
    for name, *values in lines:
        if int(name[3:]) in cpus:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
            busy += user + nice + system + irq + softirq + steal
    return busy / tick


def others_load(seconds: float = 0.2) -> float | None:
    """Cores' worth of CPU that other processes used on this process's cores over the next ``seconds``
    (this process's own use subtracted); None where the counters cannot be read (not Linux)."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        return None
    start, own = _busy_seconds(cpus), time.process_time()
    if start is None:
        return None
    time.sleep(seconds)
    end = _busy_seconds(cpus)
    return None if end is None else max(0.0, (end - start - (time.process_time() - own)) / seconds)


def busy_note(threads: int, load: float | None, cores: int) -> str | None:
    """The note for a run whose cores other processes keep busy (``load`` cores' worth), else None."""
    if load is None or load < 0.75 * cores:
        return None
    return (
        f"other processes keep {load:.1f} of the {cores} cores this run may use busy: this run's {threads} "
        f"threads share them; {BUSY_ADVICE}"
    )
