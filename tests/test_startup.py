"""The command line starts fast: help, version and option errors load neither torch nor its libraries."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import atexit, sys
heavy = ("torch", "torchvision", "spikingjelly", "tonic")
atexit.register(lambda: print("LOADED=" + ",".join(m for m in heavy if m in sys.modules), file=sys.stderr))
sys.argv = ["snnkd", *sys.argv[1:]]
from snnkd_cli.cli.app import main
main()
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["distill", "--help"],
        ["eval-sweep", "--help"],
        ["import", "--help"],
        ["distill", "--no-such-option"],
    ],
    ids=["help", "version", "distill-help", "sweep-help", "import-help", "option-error"],
)
def test_help_and_option_errors_do_not_import_torch(argv: list[str]) -> None:
    res = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    loaded = [line for line in res.stderr.splitlines() if line.startswith("LOADED=")]
    assert loaded == ["LOADED="], res.stderr


def test_the_probe_sees_an_import() -> None:
    """The probe itself works: a command that trains does load torch."""
    argv = ["train-teacher", "--epochs", "0"]  # refused after the config is built, torch loaded by then
    res = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    assert any(line.startswith("LOADED=torch") for line in res.stderr.splitlines()), res.stderr
