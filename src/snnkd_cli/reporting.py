"""What a training run tells the user: the :class:`Reporter` protocol (its quiet base: the Python API's
default with ``verbose=False``) and :class:`RichReporter`, a Rich progress bar on a terminal and plain periodic
lines in a log file or a pipe, one line per epoch (the command line's and ``distill(verbose=True)``'s).

It lives below ``cli/`` so that the Python API prints progress without importing the command line.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter:
    """What a run reports, and the silent form of it (``distill(verbose=False)``, and the processes other than
    the main one): override what you want to see."""

    def config(self, cfg_json: dict[str, Any]) -> None:
        """The resolved configuration, once at the start."""

    @contextlib.contextmanager
    def epoch_progress(self, epoch: int, epochs: int, total: int) -> Iterator[Any]:
        """Context yielding ``update(stats: dict)`` called after every step."""
        yield lambda stats: None

    def epoch_end(self, epoch: int, epochs: int, stats: dict[str, float]) -> None:
        """One line per epoch."""

    def message(self, text: str) -> None:
        """A free-form line (where checkpoints went, warnings)."""


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
