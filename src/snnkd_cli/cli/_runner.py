"""How every command runs: errors as one line and an exit code, progress on stderr, ``--resume`` alone."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import typer

from snnkd_cli.errors import SnnkdError, command_line_names


def handle_errors(fn: Callable) -> Callable:
    """Turn :class:`SnnkdError` into one line on stderr (rank 0 only under torchrun) and its exit code (2),
    never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from snnkd_cli.cli._output import err_console, print_error
        from snnkd_cli.cli._progress import ConsoleProgress
        from snnkd_cli.progress import reporting

        try:
            with reporting(ConsoleProgress(err_console)), command_line_names():
                return fn(*args, **kwargs)
        except SnnkdError as e:
            if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike: say it once
                print_error(e.message)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:  # a training run says what it saved (train.resume.interrupted_note)
            print_error(f"interrupted: {e}" if str(e) else "interrupted")
            raise typer.Exit(130) from None

    return wrapper


def bare_resume(argv: list[str]) -> list[str]:
    """``--resume`` with no value means ``--resume auto`` (OUT/resume.safetensors).

    Typer options cannot take an optional value, so the console script fills it in.
    """
    out = list(argv)
    for i, a in enumerate(out):
        if a == "--resume" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out[i] = "--resume=auto"
    return out
