"""The paper's networks, loss and CIFAR recipe, checked against its released code's figures and by hand.

Figures from Intelli-Chip-Lab/snn_temporal_decoupling_distillation, counted on its own models
(``model/resnet.py``, ``model/ResNet_ANN.py``, ``model/preact_resnet.py``): parameters, buffer elements
(BatchNorm running statistics and batch counters) and spiking neuron layers.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from spikingjelly.activation_based import functional, neuron
from torch import nn
from torchvision import transforms as tvt

from snnkd_cli.config import KDConfig
from snnkd_cli.data import transforms as tf
from snnkd_cli.kd.tasks import DistillTask
from snnkd_cli.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

# (kind, arch, classes, options) -> (parameters, buffer elements, LIF layers), from the paper's code
PAPER_COUNTS = {
    ("snn", "resnet18", 10, ()): (11_173_962, 9_620, 17),
    ("snn", "resnet19", 10, ()): (12_697_994, 10_515, 18),
    ("snn", "resnet19", 10, (("in_channels", 2),)): (12_696_842, 10_515, 18),  # CIFAR10-DVS student
    ("ann", "resnet18", 10, ()): (11_173_962, 9_620, 0),
    ("ann", "resnet19", 10, ()): (12_697_994, 10_515, 0),
    ("ann", "resnet34", 10, ()): (21_282_122, 17_060, 0),
    ("snn", "preact_resnet34", 1000, ()): (21_806_184, 17_060, 32),
}


@pytest.mark.parametrize(("key", "want"), list(PAPER_COUNTS.items()), ids=lambda v: "-".join(map(str, v[:3])))
def test_parameter_buffer_and_lif_counts_are_the_papers(key, want):
    kind, arch, classes, opts = key
    net = create_model(arch, classes, kind=kind, **dict(opts))
    params = sum(p.numel() for p in net.parameters())
    buffers = sum(b.numel() for b in net.buffers())
    lifs = sum(isinstance(m, neuron.BaseNode) for m in net.modules())
    assert (params, buffers, lifs) == want


# --- PreAct-ResNet-34: the forward, by a second implementation ------------------------------------


def preact_reference(sd: dict[str, torch.Tensor], x: torch.Tensor, T: int, decay: float = 0.2) -> torch.Tensor:
    """The paper's spiking PreAct-ResNet-34 (eval mode) written out with functional ops: ``x [B, 3, H, W]`` fed
    at every step -> logits ``[T, B, classes]``. LIF: ``v = decay * v + x``, spike ``v >= 1``, ``v -= spike``."""
    v: dict[str, torch.Tensor] = {}

    def bn(h: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(h, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"])

    def conv(h: torch.Tensor, p: str, stride: int, pad: int) -> torch.Tensor:
        return F.conv2d(h, sd[f"{p}.weight"], sd[f"{p}.bias"], stride, pad)

    def lif(name: str, h: torch.Tensor) -> torch.Tensor:
        u = decay * v.get(name, torch.zeros_like(h)) + h
        spike = (u >= 1.0).to(h.dtype)
        v[name] = u - spike
        return spike

    out = []
    for _ in range(T):
        h = F.max_pool2d(bn(conv(x, "stem.0", 2, 3), "stem.1"), 3, 2, 1)  # no LIF in the stem
        k = 0
        for stage, n in enumerate((3, 4, 6, 3)):
            for i in range(n):
                p, stride = f"blocks.{k}", 2 if stage > 0 and i == 0 else 1
                a = bn(conv(lif(f"{p}.act1", h), f"{p}.conv1.0", stride, 1), f"{p}.conv1.1")
                a = bn(conv(lif(f"{p}.act2", a), f"{p}.conv2.0", 1, 1), f"{p}.conv2.1")
                has_short = f"{p}.shortcut.0.weight" in sd  # on the real-valued input, not its spikes
                h = a + (bn(conv(h, f"{p}.shortcut.0", stride, 0), f"{p}.shortcut.1") if has_short else h)
                k += 1
        out.append(F.linear(h.mean((2, 3)), sd["head.0.weight"], sd["head.0.bias"]))  # no final BN or LIF
    return torch.stack(out)


def test_preact_resnet34_forward_equals_the_papers_written_out():
    torch.manual_seed(0)
    net = create_model("preact_resnet34", 7, kind="snn", width=8).double().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics away from (0, 1), gains that make neurons fire
            nn.init.uniform_(m.weight, 0.5, 2.0)
            nn.init.uniform_(m.bias, -0.3, 0.6)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    sd = net.state_dict()
    assert all(f"blocks.{k}.conv1.0.bias" in sd for k in range(16)) and "stem.0.bias" in sd  # every conv: a bias
    assert sorted(k.split(".")[1] for k in sd if k.endswith("shortcut.0.weight")) == ["13", "3", "7"]
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    want = preact_reference(sd, x, 3)
    assert (want[0] - want[-1]).abs().max() > 1e-3  # the states change the logits over time
    rates: list[float] = []
    lifs = [m for m in net.modules() if isinstance(m, neuron.BaseNode)]
    hooks = [m.register_forward_hook(lambda m, a, o: rates.append(float(o.mean()))) for m in lifs]
    for frames in (x.unsqueeze(0).expand(3, *x.shape), x.unsqueeze(0).repeat(3, 1, 1, 1, 1)):  # stem once, or not
        functional.reset_net(net)
        with torch.no_grad():
            torch.testing.assert_close(net(frames), want, atol=1e-10, rtol=0)
    for h in hooks:
        h.remove()
    assert len(rates) == 2 * 32 and 0.05 < sum(rates) / len(rates) < 0.8  # 32 LIF layers, neither silent nor saturated


def _std(w: torch.Tensor) -> float:
    return float(w.detach().double().std())


def test_initialisation_is_the_papers():
    """Teachers, PreAct-ResNet-34: kaiming-normal (fan_out) convs, BN 1/0; ResNet-18/19 students: PyTorch's default."""
    gain = math.sqrt(2)
    preact = create_model("preact_resnet34", 10, kind="snn")
    w = preact.blocks[15].conv2[0].weight  # [512, 512, 3, 3]: fan_out 4608
    assert _std(w) == pytest.approx(gain / math.sqrt(512 * 9), rel=0.01) and abs(float(w.detach().mean())) < 1e-3
    ann = create_model("resnet18", 10, kind="ann")
    assert _std(ann.blocks[7].conv2[0].weight) == pytest.approx(gain / math.sqrt(512 * 9), rel=0.01)
    for net in (preact, ann):
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)
    snn = create_model("resnet18", 10, kind="snn")  # kaiming-uniform(a=sqrt(5)): std 1/sqrt(3 fan_in)
    assert _std(snn.blocks[7].conv2[0].weight) == pytest.approx(1 / math.sqrt(3 * 512 * 9), rel=0.01)
    tv = create_model("resnet34", 10, kind="ann", stem="imagenet", in_channels=2)  # torchvision's, new first conv
    assert _std(tv.conv1.weight) == pytest.approx(gain / math.sqrt(64 * 49), rel=0.05)


def test_an_old_layout_preact_checkpoint_is_named_as_such(tmp_path):
    from snnkd_cli.checkpoint import Checkpoint, model_from_checkpoint
    from snnkd_cli.config import ModelConfig, RunConfig
    from snnkd_cli.errors import SnnkdError

    cfg = RunConfig(task="distill", model=ModelConfig(arch="preact_resnet34", width=8, stem="imagenet"))
    state = {"blocks.0.bn1.0.weight": torch.ones(8), "final.0.0.weight": torch.ones(64)}
    with pytest.raises(SnnkdError, match="earlier preact_resnet34.*train the student again"):
        model_from_checkpoint(Checkpoint(tmp_path / "old.safetensors", "student", cfg, state, {}))


# --- DistillTask: the loss of METHOD.md, by hand ------------------------------------------------------

T, B, C = 3, 3, 4
S = torch.tensor(
    [
        [[3.0, 0, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0]],  # t=0: samples 0 and 1 right, 2 wrong
        [[0.0, 2, 0, 0], [0, 3, 1, 0], [0, 1, 0, 2]],  # t=1: sample 1 right
        [[2.0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 3]],  # t=2: sample 0 right; sample 2 never right
    ]
)
Y = torch.tensor([0, 1, 2])
Z = torch.tensor([[1.0, 0.5, 0, -1], [0, 2, 1, 0], [0.5, 0, 1.5, 0]])


class Fixed(nn.Module):
    """A stand-in network that returns ``out`` after checking the input's leading shape."""

    def __init__(self, out: torch.Tensor, lead: tuple[int, ...]) -> None:
        super().__init__()
        self.out, self.lead = out, lead

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert tuple(x.shape[: len(self.lead)]) == self.lead
        return self.out.clone()


def _ce(logits: list[float], label: int) -> float:
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


def _kd(p: list[float], q: list[float], tau: float) -> float:
    """KL(softmax(q/tau) || softmax(p/tau)) * tau^2, one sample, in plain floats."""
    zq, zp = sum(math.exp(v / tau) for v in q), sum(math.exp(v / tau) for v in p)
    qs = [math.exp(v / tau) / zq for v in q]
    return tau**2 * sum(qc * (math.log(qc) - (pc / tau - math.log(zp))) for qc, pc in zip(qs, p, strict=True))


def hand_terms(tau: float) -> dict[str, float]:
    """METHOD.md's terms, looped over t and b: ce, td (teacher), sd (self-distillation), and standard KD."""
    s, z, y = S.tolist(), Z.tolist(), Y.tolist()
    ens = []
    for b in range(B):
        right = [s[t][b] for t in range(T) if max(range(C), key=lambda c: s[t][b][c]) == y[b]]
        ens.append([sum(r[c] for r in right) / len(right) for c in range(C)] if right else [0.0] * C)
    assert ens[2] == [0.0] * C and ens[0] == [2.5, 0.5, 0, 0]
    mean = lambda f: sum(f(t, b) for t in range(T) for b in range(B)) / (T * B)  # noqa: E731
    avg = [[sum(s[t][b][c] for t in range(T)) / T for c in range(C)] for b in range(B)]
    return {
        "ce": mean(lambda t, b: _ce(s[t][b], y[b])),
        "td": mean(lambda t, b: _kd(s[t][b], z[b], tau)),
        "sd": mean(lambda t, b: _kd(s[t][b], ens[b], tau)),
        "sd_skip": mean(lambda t, b: _kd(s[t][b], ens[b], tau) if any(ens[b]) else 0.0),
        "std_ce": sum(_ce(avg[b], y[b]) for b in range(B)) / B,
        "std_kd": sum(_kd(avg[b], z[b], tau) for b in range(B)) / B,
    }


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_distill_task_computes_methods_loss(tau):
    x = torch.randn(B, 3, 8, 8)
    student, teacher = Fixed(S, (T, B)), Fixed(Z, (B, 3))
    h = hand_terms(tau)
    assert abs(h["td"] - h["sd"]) > 0.05  # so swapping alpha and beta changes the loss
    alpha, beta = 0.2, 0.5
    full, logits = DistillTask(teacher, T, KDConfig("full-range", alpha, beta, tau))(student, x, Y)
    for k in ("ce", "td", "sd"):
        assert float(full[k]) == pytest.approx(h[k], rel=1e-5)
    want = h["ce"] + alpha * h["td"] + beta * h["sd"]
    swapped = h["ce"] + beta * h["td"] + alpha * h["sd"]
    assert float(full["loss"]) == pytest.approx(want, rel=1e-5) and abs(want - swapped) > 0.01
    torch.testing.assert_close(logits, S.mean(0))
    std, _ = DistillTask(teacher, T, KDConfig("standard-kd", alpha, beta, tau))(student, x, Y)
    want_std = h["std_ce"] + alpha * h["std_kd"]
    assert float(std["loss"]) == pytest.approx(want_std, rel=1e-5) and abs(want_std - want) > 0.01
    twce, _ = DistillTask(None, T, KDConfig("twce"))(student, x, Y)
    assert float(twce["loss"]) == pytest.approx(h["ce"], rel=1e-5)
    skip, _ = DistillTask(teacher, T, KDConfig("full-range", alpha, beta, tau, sd_none_correct="skip"))(student, x, Y)
    assert float(skip["sd"]) == pytest.approx(h["sd_skip"], rel=1e-5) and h["sd_skip"] < h["sd"] - 0.01


# --- the CIFAR training transform -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "mean", "std"),
    [
        ("cifar10", (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),  # the paper's util/data.py
        ("cifar100", (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    ],
)
def test_cifar_train_transform_is_the_papers_in_its_order(dataset, mean, std):
    t = tf.cifar_train_transform(32, dataset)
    ops = t.transforms
    names = [type(op).__name__ for op in ops]
    assert names == ["RandomCrop", "RandomHorizontalFlip", "AutoAugment", "ToTensor", "Cutout", "Normalize"]
    crop, flip, auto, _, cut, norm = ops
    assert crop.size == (32, 32) and crop.padding == 4 and flip.p == 0.5
    assert auto.policy == tvt.AutoAugmentPolicy.CIFAR10 and auto.fill == [128, 128, 128]
    assert cut.length == 16 and tuple(norm.mean) == mean and tuple(norm.std) == std
    # Cutout before Normalize: the hole is black (0 before normalising), whatever the image
    torch.manual_seed(0)
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    y = tvt.Compose(ops[3:])(white)  # [3, 32, 32]
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    hole = torch.isclose(y, (0 - m) / s).all(0)
    assert 0 < int(hole.sum()) <= 256 and torch.isclose(y, (1 - m) / s).all(0).logical_or(hole).all()
    eval_norm = tf.cifar_eval_transform(dataset).transforms[-1]
    assert tuple(eval_norm.mean) == mean and tuple(eval_norm.std) == std
