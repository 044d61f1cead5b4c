"""bench/ablation.py's tables: mean and standard deviation by hand, and the marked block replaced in place."""

import importlib.util
import statistics
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ablation.py"


def load():
    spec = importlib.util.spec_from_file_location("ablation", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


RESULTS = {
    "teachers": [{"dataset": "synthetic", "precision": "bf16", "top1": 96.0, "path": "t"}],
    "runs": [
        {"dataset": "synthetic", "precision": "bf16", "loss": loss, "seed": seed, "train_T": 4, "top1": top1}
        for loss, seed, top1 in [
            ("twce", 0, [80.0, 90.0]),
            ("twce", 1, [84.0, 92.0]),
            ("full-range", 0, [91.0, 93.0]),
            ("full-range", 1, [93.0, 95.0]),
        ]
    ],
}


def test_table_rows_are_mean_and_std_over_seeds():
    md = load().markdown(RESULTS)
    lines = [line for line in md.splitlines() if line.startswith("| twce") or line.startswith("| full-range")]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines}
    # twce at T=1: mean(80, 84) = 82.0, sample std = 2.8; mean over T per seed: 85, 88 -> 86.5 ± 2.1
    assert rows["twce"] == ["82.0 ± 2.8", "91.0 ± 1.4", "86.5 ± 2.1"]
    assert rows["full-range"][0] == f"{statistics.fmean([91, 93]):.1f} ± {statistics.stdev([91, 93]):.1f}"
    assert "ANN teacher 96.0" in md and "seeds 0, 1" in md


def test_doc_block_is_replaced_and_the_rest_kept(tmp_path):
    mod = load()
    doc = tmp_path / "results.md"
    doc.write_text("# Title\n\nintro\n\n<!-- ablation:start -->\nold\n<!-- ablation:end -->\n\nafter\n")
    mod.write_doc(doc, mod.markdown(RESULTS))
    text = doc.read_text()
    assert text.startswith("# Title\n\nintro\n\n<!-- ablation:start -->")
    assert text.endswith("<!-- ablation:end -->\n\nafter\n")
    assert "old" not in text and text.count("<!-- ablation:start -->") == 1
    mod.write_doc(doc, mod.markdown(RESULTS, "precision"), "precision")  # another block is appended, not mixed
    assert doc.read_text().count("<!-- precision:start -->") == 1 and "after" in doc.read_text()
