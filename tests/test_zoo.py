"""Students from spikingjelly's zoo, and the per-T sweep of a model that mixes timesteps.

Each zoo student is compared with a second implementation: the zoo's own ``forward`` (which averages
over T, or not), separate runs at every T (the one-pass sweep), and spikingjelly's LIF settings. The
models are width-4 on 16x16 inputs, with BatchNorm statistics taken from one batch so that neurons
spike (an untrained Spikformer is silent), so the comparisons are not of silent networks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from spikingjelly.activation_based import layer, neuron, surrogate
from spikingjelly.activation_based.model import ms_resnet, sew_resnet, spike_driven_transformer, spikformer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import one_torch_thread
from snnkd_cli.checkpoint import load_checkpoint, model_from_checkpoint
from snnkd_cli.config import DataConfig
from snnkd_cli.data import build_datasets
from snnkd_cli.errors import SnnkdError
from snnkd_cli.evaluation.sweep import SpikeCounter, sweep
from snnkd_cli.models import create_model, list_models, model_info
from snnkd_cli.models.contract import check_student, mixes_time, reset_state, time_major
from snnkd_cli.models.neurons import make_lif

ZOO = ("spikformer", "spike_driven_transformer", "sew_resnet18", "ms_resnet18")
INPUTS = {"images-3ch": (3, False), "events-2ch": (2, True)}  # in_channels, temporal
T_MAX = 4


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


def batch(in_channels: int, temporal: bool, B: int = 4, seed: int = 0) -> torch.Tensor:
    """Static images ``[B, C, 16, 16]`` or event frames ``[B, T_MAX, C, 16, 16]`` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    shape = (B, T_MAX, in_channels, 16, 16) if temporal else (B, in_channels, 16, 16)
    x = torch.randn(shape, generator=g)
    return (x > 0.5).float() if temporal else x  # events: sparse 0/1 counts


def calibrated(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """BatchNorm running statistics from one batch ``x [T, B, ...]`` (momentum None: exactly that batch), then eval."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    model.train()
    with torch.no_grad():
        reset_state(model)
        model(x)
    reset_state(model)
    return model.eval()


def tiny(name: str, in_channels: int, temporal: bool, **kw) -> tuple[nn.Module, torch.Tensor]:
    """A width-4 zoo student with BN statistics from its own input, and that input ``[T_MAX, B, C, 16, 16]``."""
    torch.manual_seed(0)
    net = create_model(name, 10, in_channels=in_channels, width=4, **kw)
    x = time_major(batch(in_channels, temporal), T_MAX, temporal)
    return calibrated(net, x), x


def test_zoo_names_are_registered_with_their_neuron() -> None:
    assert set(ZOO) <= set(list_models("snn"))
    for name in ZOO:
        info = model_info("snn", name)
        assert info["note"].startswith("zoo: ") and info["neuron"], name
    assert "zoo's own" in model_info("snn", "ms_resnet18")["neuron"]
    assert model_info("snn", "resnet18") == {}


@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("name", ZOO)
def test_zoo_student_meets_the_contract_and_sweeps_exactly(name: str, inputs: str) -> None:
    """[T, B, C, H, W] -> [T, B, 10]; two resets give the same output; the run at T' is the first T' steps of the
    run at T_MAX (so the one-pass sweep is exact), checked with neurons that spike."""
    in_channels, temporal = INPUTS[inputs]
    net, x = tiny(name, in_channels, temporal)
    check_student(net, x, 10)
    assert not mixes_time(net)
    with torch.no_grad(), SpikeCounter(net) as counter:
        reset_state(net)
        full = net(x)  # [T_MAX, B, 10]
    rate = float(counter.spikes.sum()) / counter.neurons / T_MAX
    assert full.shape == (T_MAX, 4, 10) and 0.02 < rate < 0.6, rate
    for T in range(1, T_MAX):
        with torch.no_grad():
            reset_state(net)
            part = net(x[:T])
        torch.testing.assert_close(part, full[:T], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ZOO)
def test_imagenet_size_layout(name: str) -> None:
    net = create_model(name, 7, width=4, stem="imagenet").eval()
    x = time_major(torch.randn(2, 3, 64, 64), 2, False)
    check_student(net, x, 7)


# The zoo's own forward on the same weights: a second implementation of the per-step heads.
ZOO_FORWARD = {
    "spikformer": (spikformer.Spikformer.forward, False),  # already per step
    "spike_driven_transformer": (spike_driven_transformer.SpikeDrivenTransformer.forward, True),  # head(x.mean(0))
    "sew_resnet18": (sew_resnet.SEWResNet.forward, False),
    "ms_resnet18": (ms_resnet.MSResNet.forward, True),  # head(x).mean(0)
}


@pytest.mark.parametrize("name", ZOO)
def test_per_step_logits_average_to_the_zoo_output(name: str) -> None:
    net, x = tiny(name, 3, False)
    zoo_forward, averages = ZOO_FORWARD[name]
    with torch.no_grad():
        reset_state(net)
        ours = net(x)  # [T, B, 10]
        reset_state(net)
        theirs = zoo_forward(net, x)
    torch.testing.assert_close(ours.mean(0) if averages else ours, theirs, rtol=1e-5, atol=1e-6)


def lif_settings(lif: neuron.LIFNode) -> tuple:
    sg = lif.surrogate_function
    return (float(lif.tau), lif.decay_input, lif.v_reset, lif.detach_reset, type(sg), getattr(sg, "alpha", None))


@pytest.mark.parametrize("decay, soft", [(0.5, False), (0.2, True)])
@pytest.mark.parametrize("name", ["spikformer", "spike_driven_transformer", "sew_resnet18"])
def test_zoo_neurons_are_the_papers_lif(name: str, decay: float, soft: bool) -> None:
    """Every neuron has make_lif's settings (tau, no input decay, reset, not detached, sigmoid alpha 4);
    thresholds are the zoo's (1.0, and 0.5 in the attention)."""
    net = create_model(name, 10, width=4, decay=decay, soft_reset=soft)
    lifs = [m for m in net.modules() if isinstance(m, neuron.BaseNode)]
    want = lif_settings(make_lif(decay, soft))
    assert lifs and all(type(m) is type(make_lif()) and lif_settings(m) == want for m in lifs)
    thresholds = {float(m.v_threshold) for m in lifs}
    assert thresholds == ({0.5, 1.0} if name != "sew_resnet18" else {1.0})


def test_ms_resnet_keeps_its_own_neuron() -> None:
    net = create_model("ms_resnet18", 10, width=4, decay=0.2, soft_reset=True)
    lifs = [m for m in net.modules() if isinstance(m, neuron.BaseNode)]
    assert lifs and all(
        float(m.tau) == pytest.approx(4 / 3) and m.v_threshold == 0.5 and m.v_reset == 0.0 and not m.decay_input
        for m in lifs
    )
    assert all(isinstance(m.surrogate_function, surrogate.Rect) for m in lifs)


def test_zoo_bad_options_are_one_line_errors() -> None:
    with pytest.raises(SnnkdError, match="unknown stem 'tiny'"):
        create_model("spikformer", 10, stem="tiny")
    with pytest.raises(SnnkdError, match="^width must be >= 2"):
        create_model("spike_driven_transformer", 10, width=1)
    with pytest.raises(SnnkdError, match=r"unexpected model option\(s\): dropout"):
        create_model("sew_resnet18", 10, dropout=0.1)
    with pytest.raises(ValueError, match=r"expects \[T, B, C, H, W\]"):
        create_model("ms_resnet18", 10, width=4)(torch.randn(2, 3, 16, 16))


def test_snnkd_models_lists_the_zoo_with_its_note(cli) -> None:
    res = cli(["models"])
    assert res.exit_code == 0, res.output
    rows: dict[str, str] = {}  # name -> the model's cells, its wrapped description lines joined
    name = ""
    for line in res.stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 4:
            name = cells[1] or name
            rows[name] = " ".join([rows.get(name, ""), *cells]).strip()
    for name in ZOO:
        assert name in rows and rows[name].startswith("snn") and " M " in rows[name] and "zoo:" in rows[name], name
    header = next(line for line in res.stdout.splitlines() if "parameters" in line)
    assert [h.strip() for h in header.split("┃")[1:-1]] == ["kind", "name", "parameters", "input; neuron; note"]


# --- a model that mixes timesteps: the sweep runs once per T -------------------------------------


class TimeMixer(nn.Module):
    """``[T, B, 3, 16, 16] -> [T, B, 10]`` whose step t sees the mean over all T steps (so later steps)."""

    mixes_time = True

    def __init__(self) -> None:
        super().__init__()
        self.embed = layer.SeqToANNContainer(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 32))
        self.lif = make_lif(0.5)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif(2.0 * self.embed(x))  # [T, B, 32] spikes, different at each step
        return self.head(s - 0.5 * s.mean(0, keepdim=True))  # every step depends on every other


def test_sweep_runs_a_time_mixing_model_once_per_T() -> None:
    torch.manual_seed(0)
    model = TimeMixer().eval()
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(96, 3, 16, 16, generator=g), torch.randint(0, 10, (96,), generator=g))
    loader = DataLoader(data, batch_size=32)
    res = sweep(model, loader, T_MAX)
    assert res.method == "per-T" and [r["T"] for r in res.rows] == list(range(1, T_MAX + 1))
    for T in range(1, T_MAX + 1):  # a separate evaluation at each T, by hand
        correct = 0
        with torch.no_grad():
            for x, y in loader:
                reset_state(model)
                correct += int((model(time_major(x, T, False)).mean(0).argmax(-1) == y).sum())
        assert res.at(T)["top1"] == pytest.approx(100.0 * correct / len(data))
        alone = sweep(model, loader, T).at(T)  # a run at T, read at its last row
        assert res.at(T) == pytest.approx(alone)
    model.mixes_time = False  # what the one-pass sweep would have reported
    one_pass = sweep(model, loader, T_MAX)
    assert one_pass.method == "one-pass"
    assert any(one_pass.at(T)["top1"] != res.at(T)["top1"] for T in range(1, T_MAX))
    assert 0.0 < res.at(T_MAX)["spike_rate"] < 1.0


# --- through the command line ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def spikformer_dir(cli, teacher_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``snnkd distill --student-arch spikformer`` on synthetic: width 4, T=2, 30 steps (enough for spikes)."""
    out = tmp_path_factory.mktemp("spikformer") / "run"
    args = ["distill", "--teacher", teacher_ckpt, "--student-arch", "spikformer", "--width", "4", "--T", "2"]
    res = cli([*args, "--epochs", "1", "--max-steps", "30", "--batch-size", "32", "--out", out])
    assert res.exit_code == 0, res.output
    return out


def test_spikformer_distils_and_eval_sweep_equals_runs_at_each_T(cli, spikformer_dir: Path, tmp_path: Path) -> None:
    ckpt_path = spikformer_dir / "best.safetensors"
    res = cli(["eval-sweep", ckpt_path, "--max-T", "3", "--json", tmp_path / "sweep.json"])
    assert res.exit_code == 0, res.output
    (entry,) = json.loads((tmp_path / "sweep.json").read_text())["checkpoints"]
    assert entry["arch"] == "spikformer" and entry["sweep"] == "one-pass"
    assert [r["T"] for r in entry["results"]] == [1, 2, 3]
    # separate runs at T = 1, 2, 3 of the model rebuilt from the file, on the same data and batches
    ckpt = load_checkpoint(ckpt_path)
    net = model_from_checkpoint(ckpt).eval()
    _, val, _ = build_datasets(DataConfig(dataset="synthetic", image_size=16), train=False)
    loader = DataLoader(val, batch_size=ckpt.config.train.batch_size)
    for row in entry["results"]:
        T, correct = row["T"], 0
        with torch.no_grad():
            for x, y in loader:
                reset_state(net)
                correct += int((net(time_major(x, T, False)).mean(0).argmax(-1) == y).sum())
        assert row["top1"] == pytest.approx(100.0 * correct / len(val)), T
    assert entry["results"][-1]["spike_rate"] > 0.005  # the numbers compared come from a spiking network


@pytest.mark.slow
def test_spikformer_exports_to_onnx_and_refuses_nir_in_one_line(cli, spikformer_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    ok = cli(["export", spikformer_dir / "best.safetensors", "--format", "onnx", "--out", tmp_path / "s.onnx"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "s.onnx").stat().st_size > 0
    bad = cli(["export", spikformer_dir / "best.safetensors", "--format", "nir", "--out", tmp_path / "s.nir"])
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    assert bad.exit_code == 2 and "Traceback" not in bad.output and len(errors) == 1, bad.output
    assert errors[0].startswith("error: cannot export ZooSpikformer to NIR") and "--format onnx" in errors[0]
    assert bad.stderr.rstrip().endswith(errors[0])  # after the "exporting ..." line, nothing else
    assert not (tmp_path / "s.nir").exists()


def test_the_zoo_internals_we_build_with_still_mean_what_we_assume() -> None:
    """Pins the zoo's non-public members snnkd builds with: SEWResNet._make_layer (with _norm_layer, inplanes,
    dilation, groups, base_width) and MSResNet._first_stage_stride. At the zoo's own size (ImageNet stem, width
    64, 3 channels) snnkd's SEW ResNet-18 has the zoo constructor's parameter names and shapes, and the CIFAR
    MS-ResNet's first stage keeps the resolution that the ImageNet one halves."""
    ours = create_model("sew_resnet18", 10, width=64, stem="imagenet")
    theirs = sew_resnet.sew_resnet18(num_classes=10, cnf="ADD", spiking_neuron=neuron.LIFNode)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(ours) == shapes(theirs)

    def first_stage_out(stem: str) -> int:
        net = create_model("ms_resnet18", 10, width=4, stem=stem)
        net.eval()
        return net.layer1(net.stem(torch.zeros(1, 1, 3, 32, 32))).shape[-1]

    assert ms_resnet.MSResNet._first_stage_stride == 2
    assert first_stage_out("cifar") == 32  # 3x3/1 stem, stride-1 first stage
    assert first_stage_out("imagenet") < 32
