"""How the command line shows the engine's progress (:mod:`snnkd_cli.progress`): a transient Rich bar on a
terminal; plain periodic lines when the output is a file or a pipe (batch jobs, logs). A training run's epochs
are shown by :class:`~snnkd_cli.reporting.RichReporter` (re-exported here), which the Python API uses too."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from snnkd_cli.reporting import EPOCH_PLAIN_EVERY_S, RichReporter

__all__ = ["EPOCH_PLAIN_EVERY_S", "PLAIN_EVERY_S", "ConsoleProgress", "RichReporter"]

PLAIN_EVERY_S = 10.0  # a plain line at most this often per loop, and a last one if any was printed


class ConsoleProgress:
    """A progress hook ``(what, done, total)`` printing to ``console`` (standard error)."""

    def __init__(self, console: Console, every: float = PLAIN_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.console, self.every, self.clock = console, every, clock
        self.bar: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.started: dict[str, float] = {}
        self.printed: dict[str, float] = {}

    def __call__(self, what: str, done: int, total: int | None) -> None:
        if self.console.is_terminal:
            self._bar(what, done, total)
        else:
            self._line(what, done, total)

    def _bar(self, what: str, done: int, total: int | None) -> None:
        if self.bar is None:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
        if done == 0 and what in self.tasks:  # a loop that stopped early runs again
            self.bar.remove_task(self.tasks.pop(what))
        if what not in self.tasks:
            self.tasks[what] = self.bar.add_task(what, total=total)
        self.bar.update(self.tasks[what], completed=done, total=total)
        if total is not None and done >= total:
            self.bar.remove_task(self.tasks.pop(what))
            if not self.tasks:
                self.close()

    def _line(self, what: str, done: int, total: int | None) -> None:
        now = self.clock()
        if done == 0:
            self.started[what], self.printed[what] = now, now
            return
        start = self.started.setdefault(what, now)
        finished = total is not None and done >= total
        if now - self.printed.setdefault(what, start) >= self.every or (finished and self.printed[what] > start):
            of = f"/{total}" if total is not None else ""
            self.console.print(f"{what}: {done}{of} ({now - start:.0f} s)", soft_wrap=True, highlight=False)
            self.printed[what] = now

    def close(self) -> None:
        """Stop the bar (a loop that raised, or ended early, leaves no bar behind)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar, self.tasks = None, {}
