"""Kill a training process with SIGKILL mid-epoch, resume it, and get the uninterrupted run's weights."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open

from snnkd_cli.checkpoint import load_checkpoint

ARGS = ["train-teacher", "--epochs", "2", "--max-steps", "6", "--batch-size", "32", "--width", "8", "--save-every", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def snnkd(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "snnkd_cli", *args],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def resume_position(path):
    try:
        with safe_open(str(path), framework="pt") as f:
            loop = json.loads(f.metadata()["loop"])
        return loop["epoch"], loop["step"]
    except Exception:  # not written yet
        return None


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    ref = snnkd(*ARGS, "--out", str(full))
    victim = snnkd(*ARGS, "--out", str(killed))
    deadline = time.time() + 240
    while time.time() < deadline:  # kill once a mid-epoch resume point of epoch 2 exists
        pos = resume_position(killed / "resume.safetensors")
        if pos is not None and pos[0] == 2 and 0 < pos[1] < 6:
            victim.send_signal(signal.SIGKILL)
            break
        assert victim.poll() is None, victim.stderr.read()
        time.sleep(0.05)
    else:
        pytest.fail("no mid-epoch resume point appeared")
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    for f in killed.glob("*.safetensors"):  # nothing half-written: every checkpoint still loads
        assert f.name == "resume.safetensors" or load_checkpoint(f).kind == "teacher"
    resumed = snnkd(*ARGS, "--out", str(killed), "--resume")
    assert resumed.wait(240) == 0, resumed.stderr.read()
    assert "resuming from" in resumed.stderr.read()
    assert ref.wait(240) == 0, ref.stderr.read()
    a = load_checkpoint(full / "last.safetensors").state
    b = load_checkpoint(killed / "last.safetensors").state
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not list(killed.glob(".*.tmp"))
    log = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]


@pytest.mark.slow
def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    from torch.utils.data import DataLoader

    from snnkd_cli.config import from_preset
    from snnkd_cli.data.loaders import make_loader
    from snnkd_cli.data.synthetic import SyntheticImages
    from snnkd_cli.errors import SnnkdError
    from snnkd_cli.kd.tasks import TeacherTask
    from snnkd_cli.models import create_model
    from snnkd_cli.saver import RunSaver
    from snnkd_cli.train.loop import fit

    class DivergesAt(TeacherTask):
        """Cross-entropy that turns NaN at epoch 2, step 3 (counted by calls: 4 steps per epoch)."""

        calls = 0

        def __call__(self, model, x, y):
            out, logits = super().__call__(model, x, y)
            DivergesAt.calls += 1
            if DivergesAt.calls == 4 + 3:
                out["loss"] = out["loss"] * float("nan")
            return out, logits

    cfg = from_preset("teacher", "synthetic", epochs=3, batch_size=32, width=8, max_steps=4, out=str(tmp_path))
    model = create_model("resnet18", 10, kind="ann", width=8)
    ds = SyntheticImages(256)
    train = make_loader(ds, 32, train=True, workers=0, seed=0, device=torch.device("cpu"))
    val = DataLoader(SyntheticImages(64, split_seed=1), batch_size=64)
    ckpt = RunSaver(tmp_path, model, cfg)
    with pytest.raises(SnnkdError, match="loss is nan at epoch 2 step 3"):
        fit(model, DivergesAt(), train, val, cfg.train, eval_T=None, device=torch.device("cpu"), saver=ckpt)
    assert load_checkpoint(tmp_path / "last.safetensors").meta["epoch"] == "1"


def _file_size_limit(limit):
    """preexec_fn: a real per-file size limit (RLIMIT_FSIZE) so writes past it fail with EFBIG, as on a full disk."""
    import resource

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file size limits")
@pytest.mark.slow
def test_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = ["train-teacher", "--epochs", "2", "--max-steps", "4", "--batch-size", "32", "--width", "8"]
    first = snnkd(*args, "--out", str(out))  # stopped (SIGKILL) once epoch 1's checkpoints are written
    while resume_position(out / "resume.safetensors") != (2, 0):
        assert first.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    good = {p.name: p.read_bytes() for p in out.glob("*.safetensors")}
    assert set(good) == {"best.safetensors", "last.safetensors", "resume.safetensors"}
    limit = min(len(b) for b in good.values()) // 2  # no checkpoint fits any more
    # resume for epoch 2: training runs, then writing its checkpoint fails as on a full disk
    proc = snnkd(*args, "--out", str(out), "--resume", preexec_fn=_file_size_limit(limit))
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 2, err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "cannot write" in lines[0] and "File too large" in lines[0], err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.glob("*.safetensors")} == good  # the last good ones, untouched
    assert not list(out.glob(".*.tmp"))  # no partial file left behind
