"""The public losses against hand computations written as plain loops (METHOD.md, "Loss")."""

import math

import pytest
import torch

from snnkd_cli.kd.losses import (
    full_range_kd_loss,
    full_range_kd_terms,
    self_distillation_target,
    standard_kd_loss,
    twce_loss,
)


def softmax(row, tau=1.0):
    e = [math.exp(v / tau) for v in row]
    s = sum(e)
    return [v / s for v in e]


def ce(row, y):
    return -math.log(softmax(row)[y])


def kd(p_row, q_row, tau):
    """KL(softmax(q/tau) || softmax(p/tau)) * tau^2 for one sample."""
    p, q = softmax(p_row, tau), softmax(q_row, tau)
    return sum(qc * (math.log(qc) - math.log(pc)) for pc, qc in zip(p, q, strict=True)) * tau**2


def hand_full_range(s, z, y, alpha, beta, tau, none_correct="uniform"):
    T, B = len(s), len(y)
    ens = []
    for b in range(B):
        correct = [t for t in range(T) if max(range(len(s[t][b])), key=lambda c: s[t][b][c]) == y[b]]
        if correct:
            ens.append([sum(s[t][b][c] for t in correct) / len(correct) for c in range(len(s[0][b]))])
        else:
            ens.append([0.0] * len(s[0][b]))
    ce_t = [sum(ce(s[t][b], y[b]) for b in range(B)) / B for t in range(T)]
    td_t = [sum(kd(s[t][b], z[b], tau) for b in range(B)) / B for t in range(T)]
    counted = [none_correct == "uniform" or any(ens[b]) for b in range(B)]  # skip: no SD term without a correct step
    sd_t = [sum(kd(s[t][b], ens[b], tau) for b in range(B) if counted[b]) / B for t in range(T)]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return mean(ce_t) + alpha * mean(td_t) + beta * mean(sd_t), ens


@pytest.fixture
def batch():
    torch.manual_seed(1)
    s = torch.randn(3, 4, 5, dtype=torch.float64) * 2  # [T, B, C]
    z = torch.randn(4, 5, dtype=torch.float64) * 2
    y = torch.tensor([0, 1, 2, 3])
    # sample 0: correct at steps 0 and 2 only; sample 3: never correct
    s[:, 0] = torch.tensor([[5.0, 0, 0, 0, 0], [0, 5.0, 0, 0, 0], [3.0, 1, 0, 0, 0]], dtype=torch.float64)
    s[:, 3, 3] = -10.0
    return s, z, y


@pytest.mark.parametrize("alpha,beta,tau", [(0.2, 0.5, 3.0), (1.0, 0.0, 1.0), (0.0, 2.0, 4.0)])
def test_full_range_matches_hand_computation(batch, alpha, beta, tau):
    s, z, y = batch
    want, _ = hand_full_range(s.tolist(), z.tolist(), y.tolist(), alpha, beta, tau)
    got = full_range_kd_loss(s, z, y, alpha=alpha, beta=beta, temperature=tau)
    assert got.dim() == 0
    assert got.item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("alpha,beta,tau", [(0.2, 0.5, 3.0), (0.0, 2.0, 1.0)])
def test_skipping_samples_with_no_correct_step_matches_hand_computation(batch, alpha, beta, tau):
    s, z, y = batch
    want, _ = hand_full_range(s.tolist(), z.tolist(), y.tolist(), alpha, beta, tau, none_correct="skip")
    uniform, _ = hand_full_range(s.tolist(), z.tolist(), y.tolist(), alpha, beta, tau)
    got = full_range_kd_loss(s, z, y, alpha=alpha, beta=beta, temperature=tau, none_correct="skip")
    assert got.item() == pytest.approx(want, rel=1e-5) and want < uniform  # sample 3 adds its pull to uniform
    never = torch.tensor([[[2.0, 0.0, -1.0]], [[1.0, 3.0, 0.0]]])  # no step correct: SD is exactly zero
    terms = full_range_kd_terms(never, torch.zeros(1, 3), torch.tensor([2]), none_correct="skip")
    assert terms["sd"].item() == 0.0
    with pytest.raises(ValueError, match="none_correct"):
        full_range_kd_terms(s, z, y, none_correct="drop")


def test_self_distillation_ensemble_and_uniform_fallback(batch):
    s, z, y = batch
    _, ens = hand_full_range(s.tolist(), z.tolist(), y.tolist(), 0.2, 0.5, 3.0)
    got = self_distillation_target(s, y)
    torch.testing.assert_close(got.double(), torch.tensor(ens, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    assert torch.equal(got[3], torch.zeros(5))  # no correct step: all-zero row, i.e. a uniform target
    torch.testing.assert_close(got[0].double(), ((s[0, 0] + s[2, 0]) / 2).float().double())


def test_batch_where_no_timestep_is_correct():
    s = torch.tensor([[[2.0, 0.0, -1.0]], [[1.0, 3.0, 0.0]]])  # [T=2, B=1, C=3], target 2 never argmax
    z = torch.tensor([[0.0, 0.0, 4.0]])
    y = torch.tensor([2])
    want, ens = hand_full_range(s.tolist(), z.tolist(), y.tolist(), 0.2, 0.5, 3.0)
    assert ens == [[0.0, 0.0, 0.0]]
    assert full_range_kd_loss(s, z, y).item() == pytest.approx(want, rel=1e-5)


def test_terms_and_no_gradient_into_targets(batch):
    s, z, y = batch
    s = s.clone().requires_grad_(True)
    z = z.clone().requires_grad_(True)
    t = full_range_kd_terms(s, z, y, temperature=3.0)
    assert set(t) == {"ce", "td", "sd"}
    (t["ce"] + 0.2 * t["td"] + 0.5 * t["sd"]).backward()
    assert z.grad is None and s.grad is not None


def test_twce_matches_hand_computation(batch):
    s, _, y = batch
    T, B = s.shape[:2]
    want = sum(ce(s[t, b].tolist(), int(y[b])) for t in range(T) for b in range(B)) / (T * B)
    assert twce_loss(s, y).item() == pytest.approx(want, rel=1e-6)


def test_standard_kd_matches_hand_computation(batch):
    s, z, y = batch
    m = s.mean(0).tolist()
    B = len(y)
    ce_mean = sum(ce(m[b], int(y[b])) for b in range(B)) / B
    want = ce_mean + 0.3 * sum(kd(m[b], z[b].tolist(), 2.0) for b in range(B)) / B
    assert standard_kd_loss(s, z, y, alpha=0.3, temperature=2.0).item() == pytest.approx(want, rel=1e-5)


def test_losses_are_float32_under_bf16_logits(batch):
    s, z, y = batch
    got = full_range_kd_loss(s.to(torch.bfloat16), z.to(torch.bfloat16), y)
    assert got.dtype == torch.float32


@pytest.mark.parametrize(
    "shape_s,shape_z,shape_y",
    [((4, 5), (4, 5), (4,)), ((3, 4, 5), (4, 6), (4,)), ((3, 4, 5), (4, 5), (3,))],
)
def test_shape_errors_say_the_expected_shape(shape_s, shape_z, shape_y):
    with pytest.raises(ValueError, match=r"must be \["):
        full_range_kd_loss(torch.zeros(shape_s), torch.zeros(shape_z), torch.zeros(shape_y, dtype=torch.long))
