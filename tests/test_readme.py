"""The README's Python examples run as written."""

import re
from pathlib import Path

from helpers import README_EARLY_EXIT_SNIPPET, README_SNIPPET

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_api_example_runs(tmp_path, monkeypatch, capsys):
    block = next(b for b in _blocks() if "from snnkd_cli import distill, sweep" in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.split("\n")
    rows = [line.split() for line in printed if re.fullmatch(r"\d \d+(\.\d+)?", line.strip())]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4]


def test_onnx_example_is_the_tested_one():
    """tests/test_export.py runs README_SNIPPET (tests/helpers.py) literally; the README shows that same code."""
    assert README_SNIPPET.strip() in [b.strip() for b in _blocks()]


def test_onnx_early_exit_example_is_the_tested_one():
    assert README_EARLY_EXIT_SNIPPET.strip() in [b.strip() for b in _blocks()]
