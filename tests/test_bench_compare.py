"""bench/compare.py: variants side by side and their paired differences from the base, by hand."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("compare", Path(__file__).parents[1] / "bench" / "compare.py")
compare = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("compare", compare)
_spec.loader.exec_module(compare)


def _run(seed, top1, loss="full-range", side="snnkd", exit_top1=None):
    r = {"side": side, "seed": seed, "loss": loss, "top1": top1}
    if exit_top1 is not None:
        r["exit"] = {"top1": exit_top1, "best_fixed_top1": max(top1)}
    return r


def _results(path: Path, runs: list[dict]) -> str:
    path.write_text(json.dumps({"runs": runs}))
    return str(path)


def test_rows_and_paired_differences_by_hand(tmp_path):
    runs = [_run(0, [90.0, 92.0], exit_top1=91.0), _run(1, [80.0, 84.0], exit_top1=84.0)]
    a = _results(tmp_path / "a.json", [*runs, _run(0, [95.0, 95.0], loss="twce"), _run(1, [99.0, 99.0], side="ref")])
    b = _results(tmp_path / "b.json", [_run(0, [91.0, 95.0]), _run(1, [84.0, 84.0]), _run(2, [50.0, 50.0])])
    doc = tmp_path / "r.md"
    text = compare.main(["--run", f"base={a}", "--run", f"twce={a}:twce", "--run", f"skip={b}", "--doc", str(doc),
                         "--marker", "cmp"])  # fmt: skip
    assert doc.read_text().count("<!-- cmp:start -->") == 1 and "`python bench/compare.py --run base=" in text
    # base: T=1 (90, 80) -> 85.0 ± 7.1; T=2 (92, 84) -> 88.0 ± 5.7; mean 86.5; exit gaps -1, 0 -> -0.5 ± 0.7
    assert "| base | 0,1 | 85.0 ± 7.1 | 88.0 ± 5.7 | 86.5 | -0.5 ± 0.7 |" in text
    assert "| twce | 0 | 95.0 | 95.0 | 95.0 |  |" in text  # the ref run of seed 1 is not snnkd's
    # skip - base on seeds 0, 1: T=1 (+1, +4) -> +2.5 ± 2.1; T=2 (+3, 0) -> +1.5 ± 2.1; per seed (+2, +2)
    assert "| skip - base | 0,1 | +2.5 ± 2.1 | +1.5 ± 2.1 | +2.0 ± 0.0 | |" in text
    assert "| twce - base | 0 | +5.0 | +3.0 | +4.0 | |" in text


@pytest.mark.parametrize(
    ("spec", "message"),
    [("nolabel", "write LABEL=RESULTS.json"), ("x={missing}", "no "), ("x={a}:standard-kd", "no snnkd student")],
)
def test_bad_runs_are_one_line_errors(tmp_path, spec, message):
    a = _results(tmp_path / "a.json", [_run(0, [1.0])])
    with pytest.raises(SystemExit, match=message):
        compare.main(["--run", spec.format(a=a, missing=tmp_path / "m.json")])


def test_suite_columns_are_sets_paired_by_seed(tmp_path):
    """--suite: one column per set of the base folder; each variant's mean over T minus the base's, by seed."""
    for name, runs in {"base": {"a": [_run(0, [90.0, 92.0]), _run(1, [80.0, 84.0])], "b": [_run(0, [50.0, 50.0])]},
                       "var": {"a": [_run(0, [91.0, 95.0]), _run(1, [84.0, 84.0]), _run(0, [1.0, 1.0], side="ref")]},
                       "ref": {"b": [_run(0, [40.0, 44.0], side="ref-step")]}}.items():  # fmt: skip
        for s, rs in runs.items():
            (tmp_path / name / s).mkdir(parents=True)
            _results(tmp_path / name / s / "results.json", rs)
    text = compare.main(["--suite", "--run", f"base={tmp_path / 'base'}", "--run", f"var={tmp_path / 'var'}",
                         "--run", f"ref={tmp_path / 'ref'}:full-range:ref-step"])  # fmt: skip
    assert "| variant | a | b |" in text
    # base means over T: a (91, 82) -> 86.5 ± 6.4; b 50.0
    assert "| base (mean over T) | 86.5 ± 6.4 | 50.0 |" in text
    # var - base on a: seed 0 (+1, +3) -> +2, seed 1 (+4, 0) -> +2: +2.0 ± 0.0; T=1 (+1, +4) -> +2.5 ± 2.1; no b
    assert "| var - base | +2.0 ± 0.0 (T=1 +2.5 ± 2.1) |  |" in text
    # ref-step's students on b: (40, 44) - (50, 50) -> -8.0, T=1 -10.0; none on a
    assert "| ref - base |  | -8.0 (T=1 -10.0) |" in text
    with pytest.raises(SystemExit, match="no folder"):
        compare.main(["--suite", "--run", f"base={tmp_path / 'nothing'}"])
