"""The one-pass sweep equals separate runs at each T, and its spike rates equal a manual count."""

import pytest
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


# --- a long pass in chunks of steps (issue 26, item 3) --------------------------------------------------------


def _chunk_case(temporal: bool):
    """A firing width-8 student (float32) and a loader of 12 samples: images [3, 16, 16] or event frames
    [9, 2, 16, 16] (counts 0-2)."""
    from helpers import firing_student

    net = firing_student(torch.float32, in_channels=2 if temporal else 3)
    g = torch.Generator().manual_seed(1)
    if temporal:
        x = torch.randint(0, 3, (12, 9, 2, 16, 16), generator=g).float()
    else:
        x = torch.randn(12, 3, 16, 16, generator=g) * 2
    return net, DataLoader(TensorDataset(x, torch.randint(0, 10, (12,), generator=g)), batch_size=6)


@pytest.mark.parametrize("temporal", [False, True], ids=["images", "events"])
def test_a_pass_in_chunks_gives_the_logits_and_the_sweep_of_one_pass(temporal):
    """Max-T 9 in chunks of 4 (4 + 4 + 1 steps, the state carried): the per-T cumulative logits equal those of
    one forward at 1e-6, and the sweep's rows (top-1, top-5, spike rates) and early-exit trace are the same."""
    from snnkd_cli.evaluation.sweep import forward_in_chunks

    net, loader = _chunk_case(temporal)
    x = time_major(next(iter(loader))[0], 9, temporal)  # [9, 6, C, 16, 16]
    with torch.no_grad():
        functional.reset_net(net)
        whole = net(x).cumsum(0)  # [9, 6, 10]
        functional.reset_net(net)
        chunked = forward_in_chunks(net, x, 4).cumsum(0)
        functional.reset_net(net)
        first = net(x[:4])
        functional.reset_net(net)  # a restart instead of the carried state
        restarted = torch.cat([first, net(x[4:])]).cumsum(0)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(restarted[4:], whole[4:], atol=1e-3)  # the carried state is what makes them equal
    one = sweep(net, loader, 9, temporal=temporal, chunk_T=9, keep_trace=True)
    four = sweep(net, loader, 9, temporal=temporal, chunk_T=4, keep_trace=True)
    assert four.rows == one.rows and four.method == one.method == "one-pass"
    assert 0 < one.rows[-1]["spike_rate"] < 1
    for name in ("confidence", "entropy", "pred"):
        torch.testing.assert_close(getattr(four.trace, name), getattr(one.trace, name), rtol=1e-6, atol=1e-6)


def test_the_default_chunk_leaves_short_passes_whole_and_a_chunk_below_1_is_refused():
    from snnkd_cli.errors import SnnkdError
    from snnkd_cli.evaluation.sweep import SWEEP_CHUNK_T, Pass

    net, loader = _chunk_case(False)
    assert Pass().on(net).chunk_T == SWEEP_CHUNK_T == 16
    calls = []
    hook = net.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    sweep(net, loader, 9)  # 9 <= 16 steps: one forward per batch
    sweep(net, loader, 9, chunk_T=4)
    hook.remove()
    assert calls == [9, 9, 4, 4, 1, 4, 4, 1]
    with pytest.raises(SnnkdError, match="chunk_T must be >= 1"):
        sweep(net, loader, 9, chunk_T=0)


def test_a_cpu_batch_runs_in_slices_with_the_counts_of_the_whole_batch():
    """A batch of 40 on a CPU: forwards of 16, 16 and 8 samples; top-1/top-5 equal the separate runs over the whole
    batches, the spike rates and the early-exit trace those of a loader of 8 (BN in eval mode: samples independent)."""
    from snnkd_cli.evaluation import sweep as sweep_module

    torch.manual_seed(0)
    net = create_model("resnet18", 5, kind="snn", width=8).eval()
    ds = _data(n=40)
    widths = []
    hook = net.register_forward_pre_hook(lambda m, args: widths.append(args[0].shape[1]))  # [T, B, ...]
    whole = sweep(net, DataLoader(ds, batch_size=40), 3, keep_trace=True)
    hook.remove()
    assert sweep_module.SWEEP_SLICE_CPU == 16 and widths == [16, 16, 8]
    small = sweep(net, DataLoader(ds, batch_size=8), 3, keep_trace=True)
    for row, ref in zip(whole.rows, small.rows, strict=True):
        top1, top5 = _separate_run_accuracy(net, DataLoader(ds, batch_size=40), row["T"])
        assert row["top1"] == top1 == ref["top1"] and row["top5"] == top5
        assert row["spike_rate"] == pytest.approx(ref["spike_rate"], rel=1e-12)
    assert torch.equal(whole.trace.pred, small.trace.pred) and torch.equal(whole.trace.target, small.trace.target)
    assert torch.allclose(whole.trace.confidence, small.trace.confidence) and whole.num_samples == 40
