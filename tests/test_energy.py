"""``eval-sweep --energy``: SynOps and MACs against hand counts and spikingjelly's own rule."""

import json
from pathlib import Path

import pytest
import torch
from spikingjelly.activation_based import layer
from spikingjelly.activation_based.op_counter.ac import _spike_convolution
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snnkd_cli.errors import SnnkdError
from snnkd_cli.evaluation.energy import E_AC_PJ, E_MAC_PJ, conv_synops, measure_energy
from snnkd_cli.models.contract import reset_state, time_major
from snnkd_cli.models.neurons import make_lif


@pytest.mark.parametrize(
    "cin,cout,k,stride,padding,dilation,groups",
    [(3, 5, 3, 1, 1, 1, 1), (4, 6, 3, 2, 1, 1, 2), (2, 3, 5, 1, 2, 2, 1), (6, 6, 1, 1, 0, 1, 6), (3, 4, 3, 2, 0, 1, 1)],
)
def test_conv_synops_equals_spikingjellys_rule(cin, cout, k, stride, padding, dilation, groups):
    torch.manual_seed(0)
    x = (torch.rand(2, cin, 9, 9) < 0.3).float()
    w = torch.randn(cout, cin // groups, k, k)
    args = (x, w, None, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0], groups)
    out = torch.nn.functional.conv2d(x, w, None, stride, padding, dilation, groups)
    assert conv_synops(args, {}, out) == _spike_convolution(args, {}, out) > 0


def tiny_snn():
    """[T, B, 3, 8, 8] -> conv 3->4 (real input: MACs) -> LIF -> linear 256->5 (spike input: SynOps)."""
    return nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(3, 4, 3, padding=1, bias=False)),
        make_lif(0.5),
        layer.SeqToANNContainer(nn.Flatten(), nn.Linear(256, 5)),
    )


def test_counts_match_a_hand_count_at_every_T():
    torch.manual_seed(0)
    model = tiny_snn()
    x = torch.randn(6, 3, 8, 8) * 3
    loader = DataLoader(TensorDataset(x, torch.zeros(6, dtype=torch.long)), batch_size=4)
    res = measure_energy(model, loader, 3)
    # by hand: the conv reads the image at every step (3*9 MACs for each of 4*8*8 outputs); each
    # spike of the LIF layer drives the 5 outputs of the linear layer (5 accumulates)
    reset_state(model)
    with torch.no_grad():
        spikes = model[1](model[0](time_major(x, 3, False)))  # [T, B, 4, 8, 8]
    reset_state(model)
    per_step_spikes = spikes.reshape(3, 6, -1).sum((1, 2))  # [T]
    mac_step = 3 * 9 * 4 * 8 * 8
    for t, row in enumerate(res.rows):
        synops = 5 * float(per_step_spikes[: t + 1].sum()) / 6
        assert row["T"] == t + 1
        assert row["synops"] == pytest.approx(synops)
        assert row["macs"] == mac_step * (t + 1)
        assert row["energy_uj"] == pytest.approx((E_AC_PJ * synops + E_MAC_PJ * mac_step * (t + 1)) / 1e6)
    assert sum(res.step_energy_uj) == pytest.approx(res.rows[-1]["energy_uj"])
    assert res.layers == [
        {"name": "1", "neurons": 256, "spike_rate": pytest.approx(float(spikes.mean()))},
    ]
    assert res.num_samples == 6 and res.method == "step-by-step"


def test_step_by_step_equals_a_separate_run_per_T():
    torch.manual_seed(1)
    model = tiny_snn()
    loader = DataLoader(TensorDataset(torch.randn(4, 3, 8, 8) * 3, torch.zeros(4, dtype=torch.long)), batch_size=4)
    stepwise = measure_energy(model, loader, 4)
    model.mixes_time = True  # forces one run of T' steps per row
    per_T = measure_energy(model, loader, 4)
    assert per_T.method == "per-T"
    assert [r["synops"] for r in per_T.rows] == [r["synops"] for r in stepwise.rows]
    assert [r["macs"] for r in per_T.rows] == [r["macs"] for r in stepwise.rows]


def test_ann_counts_every_multiply_accumulate():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 5))
    loader = DataLoader(TensorDataset(torch.randn(3, 3, 8, 8), torch.zeros(3, dtype=torch.long)), batch_size=2)
    res = measure_energy(model, loader, None, spiking=False)
    macs = 3 * 9 * 4 * 8 * 8 + 256 * 5  # BatchNorm folds into the conv: not counted
    assert res.rows == [{"T": None, "synops": 0.0, "macs": macs, "energy_uj": pytest.approx(E_MAC_PJ * macs / 1e6)}]


class LooksAhead(nn.Module):
    """Every step's logits use the mean over all steps of the call: one step at a time gives others."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 5)

    def forward(self, x):  # [T, B, 3, 8, 8] -> [T, B, 5]
        return self.fc(x.flatten(2).mean(0)).expand(len(x), -1, -1)


class _Frames(torch.utils.data.Dataset):
    """Two event samples whose frames differ over time ([T=3, 3, 8, 8])."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(i)), 0


def test_a_model_that_does_not_carry_state_is_refused():
    with pytest.raises(SnnkdError, match="state is not carried"):
        measure_energy(LooksAhead(), DataLoader(_Frames(), batch_size=2), 3, temporal=True)


def test_eval_sweep_energy_json_and_csv(cli, student_ckpt: Path, teacher_ckpt: Path, tmp_path: Path) -> None:
    js, cs = tmp_path / "e.json", tmp_path / "e.csv"
    args = ["eval-sweep", student_ckpt, teacher_ckpt, "--max-T", "3", "--energy", "--energy-samples", "16"]
    res = cli([*args, "--json", js, "--csv", cs])
    assert res.exit_code == 0, res.output
    assert "accuracy and cost per sample at every T" in res.stdout and "spike rate per layer" in res.stdout
    student, teacher = json.loads(js.read_text())["checkpoints"]
    assert [r["T"] for r in student["results"]] == [1, 2, 3]
    for r in student["results"] + teacher["results"]:
        assert r["energy_uj"] == pytest.approx((E_AC_PJ * r["synops"] + E_MAC_PJ * r["macs"]) / 1e6)
    syn = [r["synops"] for r in student["results"]]
    assert syn == sorted(syn) and syn[-1] > 0  # cumulative over steps
    assert teacher["results"][0]["synops"] == 0 and teacher["results"][0]["macs"] > 0
    assert student["energy"]["num_samples"] == 16 and "Horowitz" in student["energy"]["source"]
    assert len(student["energy"]["step_energy_uj"]) == 3 and student["energy"]["layers"]
    rows = cs.read_text().splitlines()
    assert rows[0].endswith("spike_rate,synops,macs,energy_uj") and len(rows) == 5


def test_energy_bad_input_is_one_line(cli, student_ckpt: Path) -> None:
    res = cli(["eval-sweep", student_ckpt, "--energy", "--energy-samples", "0"])
    assert res.exit_code == 2 and res.stderr.strip() == "error: --energy-samples must be >= 1, got 0"


def test_dynamic_with_energy_weighs_each_step_by_the_share_still_running(cli, student_ckpt: Path, tmp_path: Path):
    js = tmp_path / "d.json"
    args = ["eval-sweep", student_ckpt, "--max-T", "3", "--energy", "--energy-samples", "16", "--dynamic"]
    res = cli([*args, "--json", js])
    assert res.exit_code == 0, res.output
    assert "energy vs T=3" in res.stdout
    entry = json.loads(js.read_text())["checkpoints"][0]
    step = entry["energy"]["step_energy_uj"]
    full = entry["results"][-1]["energy_uj"]
    for p in [*entry["dynamic"]["curve"], entry["dynamic"]["chosen"]]:
        still = [1.0 - sum(p["exit_share"][:t]) for t in range(3)]  # share of samples running at step t
        by_hand = sum(s * e for s, e in zip(still, step, strict=True)) / sum(step)
        assert p["energy_rel"] == pytest.approx(by_hand)
        assert p["energy_uj"] == pytest.approx(by_hand * full)


def test_the_private_apis_the_counter_uses_behave_as_assumed():
    """Pins the non-public spikingjelly/torch functions energy.py relies on (no public equivalent): a
    spikingjelly or torch update that changes them fails here, by name."""
    from spikingjelly.activation_based.op_counter.ac import _spike_convolution, _spike_nnz

    assert _spike_nnz(torch.tensor([0.0, 1.0, 1.0])) == 2  # a 0/1 tensor: its spike count
    assert _spike_nnz(torch.tensor([0.5, 1.0])) is None  # real values: not spikes
    assert callable(_spike_convolution)  # compared with conv_synops in test_conv_synops_equals_spikingjellys_rule
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.Python)
    with torch._C._ExcludeDispatchKeyGuard(keys):  # the counter's own convolution is not counted again
        assert torch.ones(2).sum().item() == 2.0
