"""preprocess-dvs throughput: events per second with 1 worker and with all cores, on generated recordings.

    python bench/preprocess.py --files 200 --events 200000 [--json out.json]

Writes a CIFAR10-DVS-layout tree of AEDAT 2.0 files (snnkd_cli.testing), then runs
``preprocess_dvs`` on it into two fresh caches, one per worker count, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from snnkd_cli.data.dvs import preprocess_dvs
from snnkd_cli.testing import make_cifar10dvs_tree


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200, help="recordings in all (spread over 10 classes)")
    ap.add_argument("--events", type=int, default=200_000, help="events per recording")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        make_cifar10dvs_tree(src, per_class=max(1, args.files // 10), classes=10, events=args.events, seed=0)
        rows = []
        for workers in sorted({1, cores}):
            rep = preprocess_dvs(src, Path(tmp) / f"out{workers}", frames=args.frames, workers=workers)
            rows.append(
                {
                    "workers": workers,
                    "files": rep.files,
                    "events": rep.events,
                    "seconds": rep.seconds,
                    "events_per_second": rep.events_per_second,
                }
            )
            print(
                f"workers={workers:2d}  files={rep.files}  events={rep.events:,}  {rep.seconds:.2f} s  "
                f"{rep.events_per_second / 1e6:.1f} M events/s"
            )
    if len(rows) == 2:
        print(f"speed-up with {cores} workers: {rows[1]['events_per_second'] / rows[0]['events_per_second']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"cpu_count": cores, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
