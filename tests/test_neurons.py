"""The LIF layer against a hand-written loop of METHOD.md's equations, forward and backward."""

import pytest
import torch

from snnkd_cli.models.neurons import make_lif


class SigmoidSpike(torch.autograd.Function):
    """H(x) forward, alpha*sig(alpha x)*(1-sig(alpha x)) backward (alpha = 4)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(4.0 * x)
        return g * 4.0 * s * (1 - s)


def reference_lif(x_seq, decay, soft_reset):
    """v = decay*v + x; spike = H(v - 1); hard reset v = v*(1-spike) or soft v = v - spike (reset not detached)."""
    v = torch.zeros_like(x_seq[0])
    spikes = []
    for x in x_seq:
        v = decay * v + x
        s = SigmoidSpike.apply(v - 1.0)
        v = v - s if soft_reset else v * (1.0 - s)
        spikes.append(s)
    return torch.stack(spikes), v


@pytest.mark.parametrize("decay,soft", [(0.5, False), (0.2, True), (0.5, True), (0.2, False)])
def test_lif_matches_hand_written_equations(decay, soft):
    torch.manual_seed(0)
    x = (torch.rand(6, 3, 5) * 1.6).requires_grad_(True)  # [T, B, N]
    x_ref = x.detach().clone().requires_grad_(True)
    lif = make_lif(decay, soft_reset=soft)
    out = lif(x)
    ref, v_ref = reference_lif(x_ref, decay, soft)
    assert out.shape == (6, 3, 5)
    assert torch.equal(out, ref)
    assert 0 < out.sum() < out.numel()  # the test exercises both spiking and silent neurons
    torch.testing.assert_close(lif.v, v_ref)
    w = torch.randn(6, 3, 5)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_hand_computed_trace():
    """decay 0.5, inputs 0.6, 0.6, 0.6: v = 0.6, 0.9, 1.05 -> spike at step 3 then v = 0 (hard reset)."""
    lif = make_lif(0.5)
    out = lif(torch.tensor([[0.6], [0.6], [0.6], [0.6]]))
    assert out.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    assert lif.v.item() == pytest.approx(0.6)


def test_decay_out_of_range_is_a_clear_error():
    from snnkd_cli.errors import SnnkdError

    with pytest.raises(SnnkdError, match="decay"):
        make_lif(1.0)
