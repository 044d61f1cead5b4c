"""How every command runs: errors as one line and an exit code, progress on stderr, ``--resume`` alone,
help wrapped at the terminal's width."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable

import typer
from typer.core import TyperGroup

from snnkd_cli.dist import is_main_process
from snnkd_cli.errors import SnnkdError, command_line_names

try:  # Typer 0.2x carries its own copy of Click
    from typer import _click as click
except ImportError:  # pragma: no cover - an older Typer, on Click itself
    import click

_NB_HYPHEN = "\u2011"  # a hyphen textwrap does not break at, put back before the help is printed


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
            if is_main_process():  # under torchrun every rank fails alike: say it once
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


class _HelpFormatter(click.HelpFormatter):
    """Click's plain help, wrapped between words only: an option's value such as ``cosine-epoch`` is never
    split at its hyphen (textwrap would), so what is shown can be typed as read."""

    def write_text(self, text: str) -> None:
        super().write_text(text.replace("-", _NB_HYPHEN))

    def write_dl(self, rows, col_max: int = 30, col_spacing: int = 2) -> None:
        super().write_dl([(term, text.replace("-", _NB_HYPHEN)) for term, text in rows], col_max, col_spacing)

    def getvalue(self) -> str:
        return super().getvalue().replace(_NB_HYPHEN, "-")


class _HelpContext(click.Context):
    formatter_class = _HelpFormatter


def usage_line(e: click.ClickException) -> str:
    """A usage error (unknown option, bad value, missing argument) as one line, with where to read the options."""
    message = re.sub(r"(?<!\.)\.$", "", " ".join(e.format_message().split()))
    ctx = getattr(e, "ctx", None)
    if ctx is not None and ctx.help_option_names:
        message += f"; see '{ctx.command_path} {ctx.help_option_names[0]}'"
    return message


class SnnkdGroup(TyperGroup):
    """The ``snnkd`` command group: plain help wrapped at the terminal's width (up to ``max_content_width``),
    and usage errors in the one ``error: ...`` line (exit 2) of every other mistake, not Click's block."""

    context_class = _HelpContext

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for command in self.commands.values():  # each command's help is formatted in its own context
            command.context_class = _HelpContext

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as e:  # a usage error (exit 2), or a file Click could not open
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `snnkd`: the help, on standard output
                print(e.format_message())
            elif is_main_process():  # as handle_errors: said once under torchrun
                print(f"error: {usage_line(e)}", file=sys.stderr)  # _output.print_error's line, without torch
            sys.exit(e.exit_code)
        except typer.Abort:
            print("error: aborted", file=sys.stderr)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
