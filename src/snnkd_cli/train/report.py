"""What the training loop tells the user: the quiet base class. The command line's Rich implementation is
:class:`snnkd_cli.cli._progress.RichReporter` (all Rich output lives under ``cli/``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class Reporter:
    """Silent reporter (the Python API's default). Override what you want to see."""

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
