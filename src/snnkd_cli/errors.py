"""The one error type users see: a message and an exit code (2 for bad input)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_COMMAND_LINE: ContextVar[bool] = ContextVar("snnkd_command_line", default=False)


def option(name: str) -> str:
    """An option as the user gave it, for messages: ``--max-drop`` under ``snnkd``, ``max_drop`` from Python."""
    return "--" + name.replace("_", "-") if _COMMAND_LINE.get() else name


def given(name: str, value: object) -> str:
    """An option with its value, for messages: ``--arch resnet18`` under ``snnkd``, ``arch='resnet18'`` from Python."""
    return f"{option(name)} {value}" if _COMMAND_LINE.get() else f"{name}={value!r}"


@contextmanager
def command_line_names() -> Iterator[None]:
    """Inside the block :func:`option` names options as flags (the CLI runs every command in it)."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


class SnnkdError(Exception):
    """A user-facing error: printed as one line by the CLI, which exits with ``exit_code``.

    Args:
        message: what is wrong and what to do about it, in one line.
        exit_code: process exit status (2 for bad input, as Typer does for bad parameters).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        if message.startswith("Caught SnnkdError"):  # re-raised by a DataLoader from its worker, with a traceback
            message = message.rstrip().splitlines()[-1].split("SnnkdError: ", 1)[-1]
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
