"""bench/threads.py runs: its worker trains and reports steps per second with the threads it was given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "threads.py"


@pytest.mark.parametrize(("threads", "want"), [("1", 1), ("snnkd", None)])
@pytest.mark.slow
def test_worker_reports_steps_per_second_and_threads(threads: str, want: int | None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(BENCH), "--worker", "--threads", threads, "--workers", "0", "--steps", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["steps_per_s"] > 0
    assert row["threads"] == (want or len(os.sched_getaffinity(0)))  # snnkd's default: every core, no workers
