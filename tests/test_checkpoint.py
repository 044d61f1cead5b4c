"""Checkpoints: round trip, atomic writes, and one-line errors for every kind of bad file."""

import json

import pytest
import torch
from safetensors.torch import save_file

from snnkd_cli.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from snnkd_cli.config import RunConfig, from_preset
from snnkd_cli.errors import SnnkdError


@pytest.fixture
def ckpt(tmp_path):
    cfg = from_preset("distill", "synthetic", epochs=2, T=3, out=str(tmp_path))
    state = {"w": torch.arange(6.0).view(2, 3), "n": torch.tensor(5)}
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, state, "student", cfg, {"epoch": "2", "metrics": {"val": [1, 2]}})
    return path, cfg, state


def test_round_trip(ckpt):
    path, cfg, state = ckpt
    c = load_checkpoint(path)
    assert c.kind == "student" and c.config == cfg
    assert all(torch.equal(c.state[k], v) for k, v in state.items())
    assert c.metrics == {"val": [1, 2]} and c.meta["epoch"] == "2"
    assert json.loads(read_metadata(path)["config"])["train"]["T"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["best.safetensors"]  # no temp file left


def test_overwrite_is_atomic_and_failed_write_keeps_nothing(ckpt, tmp_path):
    path, cfg, state = ckpt
    save_checkpoint(path, {"w": torch.zeros(1)}, "student", cfg)
    assert list(load_checkpoint(path).state) == ["w"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SnnkdError, match="cannot write"):
        save_checkpoint(blocker / "sub" / "x.safetensors", state, "student", cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors", "file"]


def test_config_from_dict_ignores_unknown_keys(ckpt):
    _, cfg, _ = ckpt
    d = json.loads(cfg.to_json())
    d["train"]["added_in_a_later_version"] = 1
    assert RunConfig.from_dict(d) == cfg


def test_wrong_kind(ckpt):
    with pytest.raises(SnnkdError, match="is a student checkpoint, but an ANN teacher checkpoint"):
        load_checkpoint(ckpt[0], expect="teacher")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "foreign", "missing", "folder"])
def test_bad_files_give_one_line(ckpt, tmp_path, damage):
    path = ckpt[0]
    bad = tmp_path / "bad.safetensors"
    if damage == "truncate":
        bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        bad.write_bytes(b"not a checkpoint at all" * 10)
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "foreign":
        save_file({"x": torch.zeros(2)}, str(bad))
    elif damage == "folder":
        bad.mkdir()
    with pytest.raises(SnnkdError) as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)
    if damage == "foreign":
        assert "not a snnkd checkpoint" in str(e.value)


def test_one_table_translates_task_network_and_checkpoint_kinds():
    """A run's task, its network's kind and its checkpoint's kind are three words for one idea; the config's
    table is the one translation, and every checkpoint kind the format accepts comes from it."""
    from snnkd_cli.config import CHECKPOINT_OF_NETWORK, NETWORK_OF_TASK, TASK_OF_NETWORK, from_preset
    from snnkd_cli.format import KINDS

    assert from_preset("teacher", "synthetic").checkpoint_kind == "teacher"
    assert from_preset("distill", "synthetic").checkpoint_kind == "student"
    assert {NETWORK_OF_TASK[TASK_OF_NETWORK[k]] for k in ("ann", "snn")} == {"ann", "snn"}
    assert set(KINDS) == set(CHECKPOINT_OF_NETWORK.values()) == {"teacher", "student"}
