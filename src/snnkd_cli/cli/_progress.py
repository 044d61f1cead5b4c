"""How the command line shows the engine's progress (:mod:`snnkd_cli.progress`) and a training run's epochs
(:class:`RichReporter`, a :class:`~snnkd_cli.train.report.Reporter`): a transient Rich bar on a terminal;
plain periodic lines when the output is a file or a pipe (batch jobs, logs)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from snnkd_cli.train.report import Reporter

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


EPOCH_PLAIN_EVERY_S = 30.0


class RichReporter(Reporter):
    """Rich progress bar with loss and running accuracy (a plain line every ``every`` seconds when the
    console is not a terminal); one line per epoch."""

    def __init__(
        self,
        console: Console | None = None,
        every: float = EPOCH_PLAIN_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.every, self.clock = every, clock  # plain progress lines (not a terminal): at most one per `every` s

    def config(self, cfg_json: dict[str, Any]) -> None:
        parts = []
        for section, values in cfg_json.items():
            if isinstance(values, dict):
                parts.append(f"[bold]{section}[/]: " + ", ".join(f"{k}={v}" for k, v in values.items()))
            elif values is not None:
                parts.append(f"[bold]{section}[/]: {values}")
        self.console.print("[bold cyan]configuration[/]\n  " + "\n  ".join(parts))

    @contextlib.contextmanager
    def epoch_progress(self, epoch: int, epochs: int, total: int) -> Iterator[Any]:
        if not self.console.is_terminal:  # a log file or a pipe: a plain line now and then, no bar
            yield self._plain_progress(epoch, epochs, total)
            return
        progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        with progress:
            task = progress.add_task("train", total=total, stats="")

            def update(stats: dict[str, float]) -> None:
                text = " ".join(f"{k} {v:.3f}" if k == "loss" else f"{k} {v:.1f}" for k, v in stats.items())
                progress.update(task, advance=1, stats=text)

            yield update

    def _plain_progress(self, epoch: int, epochs: int, total: int) -> Callable[[dict[str, float]], None]:
        start = last = self.clock()
        done = 0

        def update(stats: dict[str, float]) -> None:
            nonlocal last, done
            done += 1
            now = self.clock()
            if now - last >= self.every and done < total:
                text = "  ".join(_fmt(k, v) for k, v in stats.items())
                line = f"epoch {epoch:>3}/{epochs}  step {done}/{total}  {text}  ({now - start:.0f} s)"
                self.console.print(line, soft_wrap=True, highlight=False)
                last = now

        return update

    def epoch_end(self, epoch: int, epochs: int, stats: dict[str, float]) -> None:
        text = "  ".join(_fmt(k, v) for k, v in stats.items())
        self.console.print(f"epoch {epoch:>3}/{epochs}  {text}", soft_wrap=True)

    def message(self, text: str) -> None:
        self.console.print(text, soft_wrap=True)  # messages name paths: never fold them


def _fmt(key: str, value: float) -> str:
    if key == "loss":
        return f"loss {value:.4f}"
    if key == "lr":
        return f"lr {value:.3g}"
    if key == "time":
        return f"{value:.1f}s"
    return f"{key} {value:.2f}"
