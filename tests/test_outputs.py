"""No output option destroys a file: one check (``checkpoint.check_outputs``) for every command that writes.

Each case: one ``error:`` line, exit 2, and every file of the user's byte for byte as before (checksums).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conftest import TINY
from helpers import assert_one_line_error, files_under
from snnkd_cli.checkpoint import check_outputs
from snnkd_cli.errors import SnnkdError

pytestmark = pytest.mark.usefixtures("one_thread")


def _sums(*folders: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in files_under(f)}


@pytest.fixture
def run_copy(student_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session's student run (so a failing case cannot spoil other tests)."""
    return Path(shutil.copytree(student_dir, tmp_path / "student"))


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["eval-sweep", "{ckpt}", "--json", "{ckpt}"], "is an input of this command"),
        (["eval-sweep", "{ckpt}", "--csv", "{ckpt}"], "is an input of this command"),
        (["predict", "{ckpt}", "{run}/config.json", "--json", "{ckpt}"], "is an input of this command"),
        (["eval-sweep", "{ckpt}", "--json", "{tmp}/x", "--csv", "{tmp}/x"], "--json and --csv are both"),
        (["export", "{ckpt}", "-f", "safetensors", "--out", "{ckpt}"], "is the checkpoint itself"),
        (["export", "{ckpt}", "-f", "onnx", "--out", "{run}/last.safetensors", "--overwrite"],
         "is a file of the training run"),
        (["export", "{ckpt}", "-f", "onnx", "--out", "{run}/log.jsonl"], "is a file of the training run"),
        (["eval-sweep", "{ckpt}", "--json", "{run}/config.json", "--overwrite"], "is a file of the training run"),
    ],
)  # fmt: skip
def test_an_output_on_an_input_or_a_run_file_is_refused_and_nothing_changes(cli, run_copy, tmp_path, argv, fragment):
    ckpt = run_copy / "best.safetensors"
    args = [a.format(ckpt=ckpt, run=run_copy, tmp=tmp_path) for a in argv]
    before = _sums(run_copy, tmp_path)
    assert_one_line_error(cli(args), fragment)
    assert _sums(run_copy, tmp_path) == before
    assert not (tmp_path / "x").exists()  # nothing half-written either


def test_an_existing_output_is_kept_unless_overwrite(cli, run_copy, tmp_path):
    """--json, --csv, export --out: an existing file is refused; with --overwrite it is replaced."""
    ckpt = run_copy / "best.safetensors"
    for option, name, extra in (("--json", "s.json", []), ("--csv", "s.csv", [])):
        target = tmp_path / name
        target.write_text("mine")
        line = assert_one_line_error(cli(["eval-sweep", ckpt, option, target, *extra]), "already exists")
        assert "--overwrite" in line and target.read_text() == "mine"
        res = cli(["eval-sweep", ckpt, option, target, "--overwrite"])
        assert res.exit_code == 0, res.output
        assert target.read_text() != "mine"
    out = tmp_path / "m.safetensors"
    assert cli(["export", ckpt, "-f", "safetensors", "--out", out]).exit_code == 0
    first = out.read_bytes()
    assert_one_line_error(cli(["export", ckpt, "-f", "safetensors", "--out", out]), "already exists")
    assert out.read_bytes() == first
    assert cli(["export", ckpt, "-f", "safetensors", "--out", out, "--overwrite"]).exit_code == 0


def test_predict_json_keeps_an_existing_file(cli, run_copy, tmp_path):
    out = tmp_path / "p.json"
    out.write_text("mine")
    res = cli(["predict", run_copy / "best.safetensors", run_copy / "config.json", "--json", out])
    assert_one_line_error(res, "already exists")
    assert out.read_text() == "mine"


def test_save_threshold_on_a_read_only_checkpoint_is_refused_before_the_work(cli, run_copy):
    ckpt = run_copy / "best.safetensors"
    ckpt.chmod(0o444)
    before = _sums(run_copy)
    res = cli(["eval-sweep", ckpt, "--dynamic", "--save-threshold"])
    assert_one_line_error(res, "--save-threshold cannot write")
    assert _sums(run_copy) == before and ckpt.stat().st_mode & 0o777 == 0o444


def test_overwrite_leaves_no_tensorboard_folder_of_the_old_run(cli, tmp_path):
    out = tmp_path / "run"
    assert cli(["train-teacher", *TINY, "--out", out]).exit_code == 0
    (out / "tensorboard").mkdir()
    (out / "tensorboard" / "events.out.tfevents.old").write_bytes(b"old curves")
    assert cli(["train-teacher", *TINY, "--out", out, "--overwrite"]).exit_code == 0
    assert not (out / "tensorboard").exists()


def test_check_outputs_by_hand(tmp_path):
    """The rules one by one, from Python (options named as keywords there)."""
    (tmp_path / "a").write_text("a")
    check_outputs({"json": "-", "csv": None, "out": tmp_path / "new"})  # stdout, none, a free path
    check_outputs({"out": tmp_path / "a"}, overwrite=True)  # consent
    with pytest.raises(SnnkdError, match=r"^out=.*already exists: pass overwrite"):
        check_outputs({"out": tmp_path / "a"})
    with pytest.raises(SnnkdError, match="is an input"):
        check_outputs({"out": tmp_path / "sub" / ".." / "a"}, inputs=(tmp_path / "a",), overwrite=True)
    with pytest.raises(SnnkdError, match="json and csv are both"):
        check_outputs({"json": tmp_path / "b", "csv": tmp_path / "b"})
    (tmp_path / "log.jsonl").write_text("{}\n")  # now tmp_path holds a training run
    with pytest.raises(SnnkdError, match="file of the training run"):
        check_outputs({"out": tmp_path / "best.safetensors"}, overwrite=True)
    check_outputs({"out": tmp_path / "sweep.json"})  # a new file beside a run is fine
