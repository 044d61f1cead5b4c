"""Registry, shapes, and the stem-once shortcut for repeated static input."""

import pytest
import torch
import torchvision
from spikingjelly.activation_based import functional, neuron

from snnkd_cli.errors import SnnkdError
from snnkd_cli.models import create_model, list_models
from snnkd_cli.models.contract import teacher_input, time_major


def test_registry_names():
    assert {"resnet18", "resnet19", "preact_resnet34"} <= set(list_models("snn"))
    assert {"resnet18", "resnet19", "resnet34"} <= set(list_models("ann"))


@pytest.mark.parametrize("name", ["resnet18", "resnet19", "preact_resnet34"])
def test_spiking_students_map_T_B_to_T_B_C(name):
    net = create_model(name, 7, kind="snn", width=8, in_channels=2)
    out = net(torch.randn(3, 2, 2, 32, 32))
    assert out.shape == (3, 2, 7)
    assert any(isinstance(m, neuron.LIFNode) for m in net.modules())


def test_paper_neuron_settings():
    lifs = [m for m in create_model("resnet18", 10, kind="snn").modules() if isinstance(m, neuron.LIFNode)]
    assert lifs and all(m.tau == 2.0 and m.v_reset == 0.0 and not m.decay_input and not m.detach_reset for m in lifs)
    imnet = [
        m for m in create_model("preact_resnet34", 10, kind="snn", width=8).modules() if isinstance(m, neuron.LIFNode)
    ]
    assert all(m.v_reset is None and m.tau == pytest.approx(1.25) for m in imnet)  # soft reset, decay 0.2


def test_resnet19_and_ann_sizes_match_the_paper_shapes():
    n = sum(p.numel() for p in create_model("resnet19", 10, kind="ann").parameters())
    assert 12.5e6 < n < 12.8e6  # ResNet-19: 128/256/512 stages, 256-unit hidden head
    snn = create_model("resnet19", 10, kind="snn")
    ann = create_model("resnet19", 10, kind="ann")
    assert [v.shape for v in snn.state_dict().values()] == [v.shape for v in ann.state_dict().values()]


def test_imagenet_stem_teacher_is_torchvision():
    net = create_model("resnet34", 1000, kind="ann", stem="imagenet")
    assert isinstance(net, torchvision.models.ResNet)
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(SnnkdError, match="unknown spiking student architecture 'vgg'.*resnet18"):
        create_model("vgg", 10, kind="snn")


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(("arch", "kw"), [("resnet18", {}), ("preact_resnet34", {"stem": "imagenet"})])
def test_stem_once_equals_repeating_the_image(train, arch, kw):
    """A stride-0 repeated input (stem run once; preact: its max-pool too) gives the logits and gradients of a
    materialised copy."""
    torch.manual_seed(0)
    net = create_model(arch, 10, kind="snn", width=8, **kw).double().train(train)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    view = time_major(x, 3, temporal=False)
    assert view.stride(0) == 0
    out_view = net(view)
    (out_view * torch.arange(10.0, dtype=torch.float64)).sum().backward()
    g_view = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    functional.reset_net(net)
    out_copy = net(view.contiguous())
    (out_copy * torch.arange(10.0, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(out_view, out_copy)
    for a, p in zip(g_view, net.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)


def test_input_adapters():
    frames = torch.randn(2, 5, 2, 8, 8)  # [B, T, C, H, W]
    tm = time_major(frames, 3, temporal=True)
    assert tm.shape == (3, 2, 2, 8, 8) and torch.equal(tm[1], frames[:, 1])
    torch.testing.assert_close(teacher_input(frames, True), frames.mean(1))
    with pytest.raises(ValueError, match="T>=6"):
        time_major(frames, 6, temporal=True)


@pytest.mark.parametrize(
    "name,kind,kw,message",
    [
        ("resnet18", "snn", {"colour": 1}, "unexpected model option(s): colour"),
        ("sew_resnet18", "snn", {"colour": 1, "alpha": 2}, "unexpected model option(s): alpha, colour"),
        ("resnet19", "ann", {"depth": 3}, "unexpected model option(s): depth (resnet19 has a fixed depth)"),
        ("ms_resnet18", "snn", {"stem": "tiny"}, "unknown stem 'tiny': choose cifar or imagenet"),
        ("tv_resnet18", "ann", {"stem": "tiny"}, "unknown stem 'tiny': choose cifar or imagenet"),
        ("spikformer", "snn", {"width": 1}, "width must be >= 2 for this model, got 1"),
        ("tv_resnet34", "ann", {"width": 32}, "its width is 64 (got width=32)"),
    ],
)
def test_architecture_options_are_checked_in_one_place(name, kind, kw, message):
    with pytest.raises(SnnkdError) as e:
        create_model(name, 10, kind=kind, **kw)
    assert message in str(e.value)


def test_network_defaults_apply_where_options_are_not_given():
    """preact_resnet34 defaults to the ImageNet recipe (7x7 stem, decay 0.2, soft reset); tv_resnet to the
    ImageNet stem; a given option wins over both."""
    pre = create_model("preact_resnet34", 10, kind="snn", width=8)
    lifs = [m for m in pre.modules() if isinstance(m, neuron.LIFNode)]
    assert pre.stem[0].kernel_size == (7, 7) and all(m.v_reset is None and m.tau == 1.25 for m in lifs)
    cifar = create_model("preact_resnet34", 10, kind="snn", width=8, stem="cifar", soft_reset=False)
    assert cifar.stem[0].kernel_size == (3, 3)
    assert all(m.v_reset == 0.0 for m in cifar.modules() if isinstance(m, neuron.LIFNode))
    assert create_model("tv_resnet18", 10, kind="ann").conv1.kernel_size == (7, 7)
