"""``--memopt`` (issue 26, item 1): a student whose blocks are spikingjelly memopt checkpoints trains to the numbers
of an ordinary run (weights and BatchNorm buffers), saves ordinary checkpoints, resumes and evaluates as built."""

import json
import shutil

import pytest
import torch
from spikingjelly.activation_based import layer
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper
from torch.utils.data import DataLoader, TensorDataset

from snnkd_cli import distill
from snnkd_cli.checkpoint import load_checkpoint, model_from_checkpoint
from snnkd_cli.config import TrainConfig, from_preset
from snnkd_cli.data.synthetic import SyntheticImages
from snnkd_cli.errors import SnnkdError
from snnkd_cli.models import create_model
from snnkd_cli.models.contract import reset_state, time_major
from snnkd_cli.models.neurons import make_lif
from snnkd_cli.reporting import Reporter
from snnkd_cli.train import memopt

pytestmark = pytest.mark.usefixtures("one_thread")


class Said(Reporter):
    """A reporter that keeps the run's messages."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def _distil(out, memopt_choice="off", precision="fp32", **kw):
    """3 steps of a width-4 ResNet-18 student (batch 4, 16 px, T=3) from a width-4 teacher, full-range loss."""
    torch.manual_seed(0)
    teacher = create_model("resnet18", 10, kind="ann", width=4)
    student = create_model("resnet18", 10, kind="snn", width=4)
    train = DataLoader(SyntheticImages(16, split_seed=0), batch_size=4)
    val = DataLoader(SyntheticImages(8, split_seed=1), batch_size=8)
    said = Said()
    opts = {"T": 3, "epochs": 1, "max_steps": 3, "lr": 0.05, "precision": precision, **kw}
    result = distill(student, teacher, train, val, reporter=said, out=out, memopt=memopt_choice, **opts)
    return student, result, said


@pytest.fixture(scope="module")
def off_runs(tmp_path_factory):
    """The ordinary runs to compare with, per precision."""
    root = tmp_path_factory.mktemp("off")
    return {p: _distil(root / p, precision=p) for p in ("fp32", "bf16")}


@pytest.mark.parametrize(
    ("choice", "precision", "checkpointed"),
    [("memory", "fp32", 9), ("balanced", "fp32", 7), ("speed", "fp32", 5), ("memory", "bf16", 9)],
)
def test_an_optimised_run_equals_an_ordinary_one(off_runs, tmp_path, choice, precision, checkpointed):
    """Weights and buffers after 3 steps equal the ordinary run's (rtol 1e-4), BatchNorm counted each step once
    (no second update from the recomputation), and validation (on the network as built) gives the same rows.
    The 9 candidates are the stem's LIF and the 8 blocks: the budget takes ceil(50 / 75 / 100 % of 9)."""
    off, off_result, _ = off_runs[precision]
    on, result, said = _distil(tmp_path, choice, precision)
    assert f"memopt: level 1, budget {choice}: {checkpointed} modules of the student checkpointed" in "\n".join(
        said.lines
    )
    a, b = off.state_dict(), on.state_dict()
    assert list(a) == list(b)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6, msg=key)
    tracked = {v.item() for k, v in b.items() if k.endswith("num_batches_tracked")}
    assert tracked == {3}
    assert not torch.equal(b["blocks.0.conv1.1.running_mean"], torch.zeros(4))
    assert result.history[-1]["val"] == off_result.history[-1]["val"]
    assert not any(isinstance(m, CheckpointWrapper) for m in on.modules())  # given back as built


def test_the_checkpoints_of_an_optimised_run_load_into_an_ordinary_model(tmp_path):
    student, _, _ = _distil(tmp_path, "memory")
    plain = create_model("resnet18", 10, kind="snn", width=4)
    for name in ("best.safetensors", "last.safetensors"):
        ckpt = load_checkpoint(tmp_path / name)
        assert ckpt.config.train.memopt == "memory" and ckpt.config.train.memopt_level == 1
        assert sorted(ckpt.state) == sorted(plain.state_dict())  # the keys of the network as built
        rebuilt = model_from_checkpoint(ckpt)  # strict load
        for key, value in student.state_dict().items():
            assert torch.equal(rebuilt.state_dict()[key], value), key
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["train"]["memopt"] == "memory" and saved["train"]["memopt_level"] == 1


def test_a_run_resumed_with_memopt_equals_the_uninterrupted_ordinary_run(off_runs, tmp_path):
    """Epoch 1 without memopt, epoch 2 resumed with --memopt memory: the 2-epoch ordinary run's weights (under
    the per-epoch cosine, whose first epoch runs at the peak lr whatever the run's length)."""
    per_epoch = {"schedule": "cosine-epoch"}
    whole, _, _ = _distil(tmp_path / "whole", epochs=2, **per_epoch)
    _distil(tmp_path / "split", epochs=1, **per_epoch)
    resumed, result, said = _distil(tmp_path / "split", "memory", epochs=2, resume=True, **per_epoch)
    assert any(line.startswith("memopt: level 1") for line in said.lines)
    assert [r["epoch"] for r in result.history] == [1, 2]
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_memopt_is_refused_for_a_teacher_and_checked_as_a_choice():
    with pytest.raises(SnnkdError, match="applies to distill"):
        from_preset("teacher", "synthetic", memopt="memory")
    with pytest.raises(SnnkdError, match="unknown memopt 'all': choose one of off, speed, balanced, memory"):
        from_preset("distill", "synthetic", memopt="all")
    assert memopt.resolve_level("off", torch.device("cuda")) == 0
    assert memopt.resolve_level("speed", torch.device("cpu")) == 1
    assert memopt.resolve_level("memory", torch.device("cuda")) == 4


def _sgd_steps(model, net, xs, y, steps=2):
    """``steps`` SGD steps of ``net`` (``model`` or its DDP wrapper) on ``xs [T, B, ...]``; returns the state."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        reset_state(model)
        loss = nn.functional.cross_entropy(net(xs).mean(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    reset_state(model)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_optimise_under_a_process_group_and_ddp_equals_the_plain_model(tmp_path):
    """The probe's reductions over a (one-process, gloo) group and DistributedDataParallel around the optimised
    model: the plain model's numbers."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    plain = create_model("resnet18", 10, kind="snn", width=4)
    model = create_model("resnet18", 10, kind="snn", width=4)
    model.load_state_dict(plain.state_dict())
    data = SyntheticImages(4, split_seed=0)
    loader = DataLoader(data, batch_size=4)
    x, y = next(iter(loader))
    cfg = TrainConfig(T=3, memopt="memory", memopt_level=1, precision="fp32")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        said = memopt.optimise(model, loader, cfg, torch.device("cpu"), temporal=False)
        assert "9 modules of the student checkpointed" in said
        got = _sgd_steps(model, DistributedDataParallel(model), time_major(x, 3, False), y)
    finally:
        dist.destroy_process_group()
    want = _sgd_steps(plain, plain, time_major(x, 3, False), y)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-6, msg=key)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = layer.SeqToANNContainer(nn.Conv2d(cin, cout, 3, padding=1))
        self.act = make_lif(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class _EventNet(nn.Module):
    """Event frames ``[T, B, 2, 8, 8]`` -> ``[T, B, 3]``; its first block reads the frames themselves."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = _Block(2, 4), _Block(4, 4)
        self.head = layer.SeqToANNContainer(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(self.a(x)))


def test_a_checkpoint_reading_the_input_keeps_it_whole_even_if_the_probe_saw_only_0_and_1():
    """The probe batch holds event counts of 0 and 1 only; a later one holds 2s. The block that reads the frames is
    not bit-packed (packing a 2 would corrupt it), the one that reads spikes is: gradients equal the plain net's."""
    torch.manual_seed(0)
    plain = _EventNet()
    model = _EventNet()
    model.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(0)
    binary = torch.randint(0, 2, (4, 3, 2, 8, 8), generator=g).float()  # [B, T, 2, 8, 8]
    loader = DataLoader(TensorDataset(binary, torch.zeros(4, dtype=torch.long)), batch_size=4)
    memopt.optimise(model, loader, TrainConfig(T=3, memopt="memory", memopt_level=1), torch.device("cpu"), True)
    packing = {p: w.checkpoint_fn.keywords["compressor"] is not None for p, w in memopt._wrappers(model)}
    assert packing == {"a": False, "b": True}
    counts = time_major(torch.randint(0, 3, (4, 3, 2, 8, 8), generator=g).float() * 2, 3, True)
    y = torch.tensor([0, 1, 2, 0])
    got = _sgd_steps(model, model, counts, y, steps=1)
    want = _sgd_steps(plain, plain, counts, y, steps=1)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6, msg=key)


class _DropBlock(_Block):
    """conv -> dropout -> LIF: its recomputation must replay the dropout mask of the first forward."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout)
        self.drop = layer.SeqToANNContainer(nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(self.conv(x)))


class _DropNet(_EventNet):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = _DropBlock(2, 4), _DropBlock(4, 4)


def test_the_recomputation_draws_no_random_number_twice_and_optimise_draws_none():
    """Dropout inside the checkpoints: two steps give the plain net's weights (the same masks), and the random
    stream ends where the plain net's does; optimise (its probe, its batch) leaves torch's and Python's state."""
    import random

    torch.manual_seed(0)
    plain = _DropNet()
    model = _DropNet()
    model.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 3, (4, 3, 2, 8, 8), generator=g).float()
    loader = DataLoader(TensorDataset(frames, torch.zeros(4, dtype=torch.long)), batch_size=4)
    before, py = torch.get_rng_state(), random.getstate()
    memopt.optimise(model, loader, TrainConfig(T=3, memopt="memory", memopt_level=1), torch.device("cpu"), True)
    assert torch.equal(torch.get_rng_state(), before) and random.getstate() == py
    assert [p for p, _ in memopt._wrappers(model)] == ["a", "b"]
    x, y = time_major(frames, 3, True), torch.tensor([0, 1, 2, 0])
    runs = []
    for net in (plain, model):
        torch.manual_seed(1)
        runs.append((_sgd_steps(net, net, x, y), torch.rand(3)))
    for key, value in runs[0][0].items():
        torch.testing.assert_close(runs[1][0][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert torch.equal(runs[1][1], runs[0][1])


def test_the_lif_functional_form_keeps_fp32_state_under_autocast():
    """spikingjelly's checkpoints call LIF.functional_forward: the same spikes and fp32 state as its forward."""
    lif = make_lif(0.5)
    x = (torch.randn(4, 2, 8) * 2).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reset_state(lif)
        want = lif(x)
        (spikes,), (v,) = lif.functional_forward((x,), (0.0,))
    assert v.dtype == torch.float32 and torch.equal(spikes, want) and torch.equal(v, lif.v)


def test_distill_memopt_on_the_command_line_prints_and_records_the_level(cli, tmp_path):
    from conftest import TINY

    res = cli(["distill", "--loss", "twce", *TINY, "--T", "2", "--memopt", "balanced", "--out", tmp_path / "r"])
    assert res.exit_code == 0, res.output
    assert "memopt=balanced" in res.stderr and "memopt_level=1" in res.stderr
    assert "memopt: level 1, budget balanced: 7 modules of the student checkpointed" in res.stderr
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["memopt_level"] == 1


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")), reason="inductor on CPU needs a C++ compiler"
)
@pytest.mark.slow
def test_memopt_with_compile_equals_the_eager_ordinary_run(off_runs, tmp_path):
    """--compile --memopt memory (fp32): inductor compiles the checkpointed forward; the weights stay those of the
    eager ordinary run."""
    off, off_result, _ = off_runs["fp32"]
    on, result, _ = _distil(tmp_path, "memory", compile=True)
    for key, value in off.state_dict().items():
        torch.testing.assert_close(on.state_dict()[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert result.history[-1]["val"] == off_result.history[-1]["val"]
