"""The one error type users see: a message and an exit code (2 for bad input)."""

from __future__ import annotations


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
