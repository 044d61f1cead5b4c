"""The one-pass sweep equals separate runs at each T, and its spike rates equal a manual count."""

import torch
from spikingjelly.activation_based import functional, neuron
from torch.utils.data import DataLoader, TensorDataset

from snnkd_cli.evaluation.sweep import sweep
from snnkd_cli.models import create_model
from snnkd_cli.models.contract import time_major


def _data(n=24, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 12, 12, generator=g) * 2, torch.randint(0, classes, (n,), generator=g))


def _separate_run_accuracy(net, loader, T):
    """Reference: a fresh run at exactly T steps per batch, accuracy of the time-averaged logits."""
    c1 = c5 = n = 0
    with torch.no_grad():
        for x, y in loader:
            functional.reset_net(net)
            logits = net(time_major(x, T, False)).mean(0)
            c1 += int((logits.argmax(-1) == y).sum())
            c5 += int((logits.topk(5, -1).indices == y[:, None]).any(-1).sum())
            n += len(y)
    return 100.0 * c1 / n, 100.0 * c5 / n


def test_one_pass_equals_separate_runs_at_each_T():
    torch.manual_seed(0)
    net = create_model("resnet18", 5, kind="snn", width=8).eval()
    loader = DataLoader(_data(), batch_size=8)
    res = sweep(net, loader, 5)
    assert [r["T"] for r in res.rows] == [1, 2, 3, 4, 5]
    assert res.num_samples == 24
    for row in res.rows:
        top1, top5 = _separate_run_accuracy(net, loader, row["T"])
        assert row["top1"] == top1 and row["top5"] == top5


def test_spike_rate_equals_manual_count():
    torch.manual_seed(0)
    net = create_model("resnet18", 5, kind="snn", width=8).eval()
    ds = _data(n=8)
    res = sweep(net, DataLoader(ds, batch_size=8), 3)
    spikes, neurons = torch.zeros(3), 0
    outs = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: outs.append(o)) for m in net.modules() if isinstance(m, neuron.LIFNode)
    ]
    with torch.no_grad():
        functional.reset_net(net)
        net(time_major(ds.tensors[0], 3, False))
    for h in hooks:
        h.remove()
    for o in outs:
        spikes += o.reshape(3, -1).sum(1)
        neurons += o[0].numel()
    for t in range(3):
        want = float(spikes[: t + 1].sum() / (neurons * (t + 1)))
        assert abs(res.rows[t]["spike_rate"] - want) < 1e-6
    assert 0 < res.rows[0]["spike_rate"] < 1


def test_ann_gives_one_row():
    net = create_model("resnet18", 5, kind="ann", width=8).eval()
    loader = DataLoader(_data(), batch_size=8)
    res = sweep(net, loader, None, spiking=False)
    assert len(res.rows) == 1 and res.rows[0]["T"] is None and res.rows[0]["spike_rate"] is None
    with torch.no_grad():
        x, y = _data().tensors
        want = 100.0 * int((net(x).argmax(-1) == y).sum()) / len(y)
    assert abs(res.rows[0]["top1"] - want) < 1e-9


def test_sweep_and_energy_restore_the_mode_and_refuse_unknown_options():
    """Both run the model in eval mode and give it back as they found it (also after an error); an option
    that is not one of Pass's fields is refused, not ignored."""
    import pytest

    from snnkd_cli.evaluation.energy import measure_energy
    from snnkd_cli.evaluation.sweep import Pass

    net = create_model("resnet18", 5, kind="snn", width=4)
    loader = DataLoader(_data(8), batch_size=4)
    net.train()
    sweep(net, loader, 2)
    assert net.training
    net.eval()
    measure_energy(net, loader, 2, max_samples=4)
    assert not net.training
    net.train()
    with pytest.raises(TypeError):
        sweep(net, loader, 2, temporl=True)
    with pytest.raises(TypeError):
        measure_energy(net, loader, 2, precison="bf16")
    with pytest.raises(ValueError):  # a batch the network cannot take: the mode must still come back
        sweep(net, [(torch.randn(4, 7), torch.zeros(4, dtype=torch.long))], 2)
    assert net.training
    resolved = Pass(precision="auto").on(net)
    assert resolved.device == torch.device("cpu") and resolved.precision in ("fp32", "bf16")
