"""``snnkd import`` and ``distill --teacher X.pth``: the paper's released networks (rebuilt small from its source
in tests/paper_nets.py), torchvision's ResNets and snnkd's own state dicts become snnkd checkpoints whose
logits are the source network's; what does not map is refused in one line, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import paper_nets as paper
from conftest import TINY
from snnkd_cli.checkpoint import load_checkpoint, model_from_checkpoint
from snnkd_cli.convert import convert_state, detect_layout
from snnkd_cli.errors import SnnkdError
from snnkd_cli.models import create_model
from snnkd_cli.models.contract import reset_state, time_major

pytestmark = pytest.mark.usefixtures("one_thread")
WIDTH, T, B = 8, 3, 4
TOL = 1e-5


def _save(tmp_path: Path, name: str, net: nn.Module, wrap: bool = True) -> Path:
    """The paper's checkpoint: ``{"best_acc", "best_epoch", "best_net": state_dict, "optimizer"}``."""
    state = net.state_dict()
    obj = {"best_acc": 91.5, "best_epoch": 3, "best_net": state, "optimizer": {"state": {}}} if wrap else state
    torch.save(obj, tmp_path / name)
    return tmp_path / name


def _image(in_channels: int = 3, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(B, in_channels, size, size, generator=torch.Generator().manual_seed(seed))  # [B, C, H, W]


@torch.no_grad()
def _paper_snn(net: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """The paper's spiking forward on ``frames [T, B, C, H, W]``: input flattened to ``[T*B, ...]``."""
    paper.set_time_step(net, frames.shape[0])
    return net(frames.reshape(-1, *frames.shape[2:]))  # [T, B, classes]


@torch.no_grad()
def _snnkd_snn(model: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    reset_state(model)
    return model.eval()(frames)  # [T, B, classes]


def _imported(cli, tmp_path: Path, src: Path, arch: str, kind: str, dataset: str, *extra: str) -> nn.Module:
    out = tmp_path / f"{src.stem}.safetensors"
    res = cli(["import", src, "--arch", arch, "--kind", kind, "--dataset", dataset, "--out", out, *extra])
    assert res.exit_code == 0, res.output
    assert f"file: {out}" in res.stdout
    return model_from_checkpoint(load_checkpoint(out)).eval()  # rebuilt from the file alone


SPIKING = [  # (id, the paper's network, snnkd arch, dataset, input channels, extra import options)
    ("resnet18", lambda: paper.resnet18(10, width=WIDTH), "resnet18", "synthetic", 3, ()),
    ("resnet19", lambda: paper.resnet19(10, width=WIDTH), "resnet19", "synthetic", 3, ()),
    ("resnet18-dvs", lambda: paper.resnet18(10, in_channel=2, width=WIDTH), "resnet18", "synthetic-dvs", 2, ()),
    ("resnet19-dvs", lambda: paper.resnet19(10, in_channel=2, width=WIDTH), "resnet19", "synthetic-dvs", 2, ()),
]


@pytest.mark.parametrize(
    ("build", "arch", "dataset", "channels", "extra"), [c[1:] for c in SPIKING], ids=[c[0] for c in SPIKING]
)
def test_the_papers_spiking_resnets_import_with_equal_logits(cli, tmp_path, build, arch, dataset, channels, extra):
    torch.manual_seed(0)
    net = paper.randomise_bn(build())
    model = _imported(cli, tmp_path, _save(tmp_path, "model_weights.pth", net), arch, "snn", dataset, "--T", str(T))
    if channels == 3:
        frames = time_major(_image(), T, temporal=False)  # the same image at every step (a stride-0 view)
    else:
        frames = (torch.rand(T, B, 2, 32, 32, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    want, got = _paper_snn(net, frames), _snnkd_snn(model, frames)
    assert want.shape == got.shape == (T, B, 10)
    assert want.std(dim=(0, 1)).mean() > 1e-3  # the logits depend on the input and the step: spikes happen
    assert (got - want).abs().max().item() <= TOL


ANN = [  # (id, the paper's / torchvision's network, snnkd arch, dataset, image size)
    ("resnet18", lambda: paper.ann_resnet18(10, width=WIDTH), "resnet18", "synthetic", 16),
    ("resnet34", lambda: paper.ann_resnet34(10, width=WIDTH), "resnet34", "synthetic", 16),
    ("resnet19", lambda: paper.ann_resnet19(10, width=WIDTH), "resnet19", "synthetic", 16),
    ("resnet18-dvs", lambda: paper.ann_resnet18(10, in_channels=2, width=WIDTH), "resnet18", "synthetic-dvs", 32),
    ("resnet18-imagenet-stem", lambda: paper.ann_resnet18(101, width=WIDTH), "resnet18", "synthetic", 32),
    ("torchvision-resnet18", lambda: torchvision.models.resnet18(num_classes=10), "tv_resnet18", "synthetic", 32),
    ("torchvision-onto-snnkd", lambda: torchvision.models.resnet18(num_classes=10), "resnet18", "synthetic", 32),
]


@pytest.mark.parametrize(("build", "arch", "dataset", "size"), [c[1:] for c in ANN], ids=[c[0] for c in ANN])
def test_ann_teachers_import_with_equal_logits(cli, tmp_path, build, arch, dataset, size):
    torch.manual_seed(0)
    net = paper.randomise_bn(build()).eval()
    wrap = not arch.startswith("tv_")  # torchvision's own checkpoints are bare state dicts
    model = _imported(cli, tmp_path, _save(tmp_path, "teacher.pth", net, wrap), arch, "ann", dataset)
    x = _image(net.conv1.in_channels, size)
    with torch.no_grad():
        want, got = net(x), model(x)
    assert want.std(0).mean() > 1e-3
    assert (got - want).abs().max().item() <= TOL


def test_preact_resnet34_imports_with_equal_logits(cli, tmp_path):
    """The paper's ImageNet student (soft reset, decay 0.2) onto snnkd's ``preact_resnet34``."""
    torch.manual_seed(0)
    net = paper.randomise_bn(paper.preact_resnet34(12, width=WIDTH, decay=0.2, v_reset=None), shift=0.6)
    src = _save(tmp_path, "preact.pth", net)
    opts = ("--T", "4", "--image-size", "32", "--decay", "0.2", "--soft-reset")
    model = _imported(cli, tmp_path, src, "preact_resnet34", "snn", "synthetic", *opts)
    frames = time_major(_image(size=32), 4, temporal=False)
    want, got = _paper_snn(net, frames), _snnkd_snn(model, frames)
    assert want.std(dim=(0, 1)).mean() > 1e-3
    assert (got - want).abs().max().item() <= TOL
    ckpt = load_checkpoint(tmp_path / "preact.safetensors")
    assert (ckpt.config.model.decay, ckpt.config.model.soft_reset, ckpt.config.train.T) == (0.2, True, 4)


def test_a_bottleneck_resnet50_maps_onto_tv_resnet50_only():
    """torchvision's ResNet-50 (and the paper's ResNet_ANN resnet50) has Bottleneck blocks: tv_resnet50 takes them
    as they are (ImageNet stem, and the paper's 3x3 CIFAR stem); snnkd's BasicBlock ResNets refuse them."""
    torch.manual_seed(0)
    for stem in ("imagenet", "cifar"):
        net = paper.randomise_bn(create_model("tv_resnet50", 10, kind="ann", stem=stem)).eval()
        conv = convert_state(net.state_dict(), "tv_resnet50", "ann")
        x = _image(size=32)
        with torch.no_grad():
            assert (conv.model(x) - net(x)).abs().max().item() <= TOL
        assert conv.options["stem"] == stem and not conv.renamed
    with pytest.raises(SnnkdError, match="Bottlenecks.*tv_resnet50"):
        convert_state(torchvision.models.resnet50(num_classes=10).state_dict(), "resnet34", "ann")


def test_the_import_is_a_normal_checkpoint(cli, tmp_path):
    """Same metadata as training writes: eval-sweep (with early exit), export and predict open it, and the
    sweep's accuracy is the source network's."""
    torch.manual_seed(0)
    net = paper.randomise_bn(paper.resnet19(10, width=WIDTH))
    _imported(cli, tmp_path, _save(tmp_path, "student.pth", net), "resnet19", "snn", "synthetic", "--T", "2")
    ckpt_path = tmp_path / "student.safetensors"
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt.kind == "student" and ckpt.config.task == "distill" and ckpt.config.model.width == WIDTH
    assert ckpt.meta["layout"] == "paper-snn" and len(json.loads(ckpt.meta["classes"])) == 10
    res = cli(["eval-sweep", ckpt_path, "--max-T", "2", "--dynamic", "--json", tmp_path / "s.json"])
    assert res.exit_code == 0, res.output
    entry = json.loads((tmp_path / "s.json").read_text())["checkpoints"][0]
    rows = entry["results"]
    assert [r["T"] for r in rows] == [1, 2] and "dynamic" in entry
    from snnkd_cli.data import build_datasets

    _, val, _ = build_datasets(ckpt.config.data, train=False)
    x, y = zip(*[val[i] for i in range(len(val))], strict=True)
    logits = _paper_snn(net, time_major(torch.stack(x), 2, temporal=False))  # the paper's net on the same data
    top1 = (logits.mean(0).argmax(1) == torch.tensor(y)).float().mean().item() * 100
    assert rows[1]["top1"] == pytest.approx(top1, abs=1e-3)
    exported = cli(["export", ckpt_path, "-f", "safetensors", "--out", tmp_path / "folded.safetensors"])
    assert exported.exit_code == 0, exported.output
    image = tmp_path / "x.png"
    torchvision.transforms.functional.to_pil_image(torch.rand(3, 16, 16)).save(image)
    predicted = cli(["predict", ckpt_path, image, "--json", tmp_path / "p.json"])
    assert predicted.exit_code == 0, predicted.output


def test_a_teacher_import_sweeps(cli, tmp_path):
    torch.manual_seed(0)
    net = paper.randomise_bn(paper.ann_resnet18(10, in_channels=2, width=WIDTH))
    _imported(cli, tmp_path, _save(tmp_path, "t.pth", net), "resnet18", "ann", "synthetic-dvs")
    res = cli(["eval-sweep", tmp_path / "t.safetensors", "--json", tmp_path / "t.json"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "t.safetensors").kind == "teacher"


@pytest.mark.slow
def test_distill_takes_the_papers_teacher_pth(cli, tmp_path):
    """``--teacher X.pth --teacher-arch``: the paper's ``{"best_net": ...}`` and torchvision's bare state dict,
    converted in memory; the teacher the run uses computes the source network's logits."""
    from snnkd_cli.config import from_preset
    from snnkd_cli.data import build_datasets
    from snnkd_cli.train.teacher import load_teacher

    torch.manual_seed(0)
    for name, net, arch in (
        ("paper.pth", paper.ann_resnet34(10, width=WIDTH), "resnet34"),
        ("tv.pth", torchvision.models.resnet18(num_classes=10), "tv_resnet18"),
    ):
        net = paper.randomise_bn(net).eval()
        src = _save(tmp_path, name, net, wrap=name == "paper.pth")
        cfg = from_preset("distill", "synthetic", teacher=str(src), teacher_arch=arch)
        _, _, info = build_datasets(cfg.data, train=False)
        teacher, tm = load_teacher(cfg, info, torch.device("cpu"))
        x = _image()
        with torch.no_grad():
            assert (teacher(x) - net(x)).abs().max().item() <= TOL
        assert tm.arch == arch
    args = ["distill", *TINY, "--T", "2", "--teacher", tmp_path / "paper.pth", "--teacher-arch", "resnet34"]
    res = cli([*args, "--out", tmp_path / "run"])
    assert res.exit_code == 0, res.output
    stored = load_checkpoint(tmp_path / "run" / "best.safetensors").config.teacher_model
    assert (stored.arch, stored.width, stored.stem) == ("resnet34", WIDTH, "cifar")


def test_a_plain_safetensors_state_dict_is_foreign(cli, tmp_path):
    """timm's hub weights are a plain ``model.safetensors``: ``import`` takes it, and so does ``--teacher`` with
    ``--teacher-arch`` (without it, a file with no snnkd metadata is still refused as a checkpoint)."""
    from safetensors.torch import save_file

    from snnkd_cli.config import from_preset
    from snnkd_cli.data import build_datasets
    from snnkd_cli.train.teacher import load_teacher

    net = paper.randomise_bn(torchvision.models.resnet18(num_classes=10)).eval()
    src = tmp_path / "hub" / "model.safetensors"
    src.parent.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(src))
    model = _imported(cli, tmp_path, src, "tv_resnet18", "ann", "synthetic")
    x = _image(size=32)
    with torch.no_grad():
        assert (model(x) - net(x)).abs().max().item() <= TOL
    cfg = from_preset("distill", "synthetic", teacher=str(src), teacher_arch="resnet18")
    _, _, info = build_datasets(cfg.data, train=False)
    with torch.no_grad():
        assert (load_teacher(cfg, info, torch.device("cpu"))[0](x) - net(x)).abs().max().item() <= TOL
    cfg.kd.teacher_arch = ""
    with pytest.raises(SnnkdError, match="not a snnkd checkpoint"):
        load_teacher(cfg, info, torch.device("cpu"))


def test_layouts_are_recognised():
    assert detect_layout(paper.resnet18(width=4).state_dict()).name == "paper-snn"
    assert detect_layout(paper.ann_resnet19(width=4).state_dict()).name == "torchvision"
    assert detect_layout(paper.preact_resnet34(width=4).state_dict()).name == "paper-preact"
    assert detect_layout(create_model("resnet18", 10, width=4).state_dict()).name == "snnkd"
    assert detect_layout({"w": torch.ones(1)}).name == "as-is"


# --- refusals: exit 2, one line, nothing written ---------------------------------------------------------------


def _truncated_dict(tmp_path: Path) -> Path:
    state = paper.resnet18(10, width=WIDTH).state_dict()
    torch.save({"best_net": {k: v for k, v in state.items() if not k.startswith("layer4.1.")}}, tmp_path / "cut.pth")
    return tmp_path / "cut.pth"


def _cut_file(tmp_path: Path) -> Path:
    whole = _save(tmp_path, "whole.pth", paper.resnet18(10, width=WIDTH)).read_bytes()
    (tmp_path / "half.pth").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "whole.pth").unlink()
    return tmp_path / "half.pth"


def _random_file(tmp_path: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    (tmp_path / "noise.pth").write_bytes(
        torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=g).numpy().tobytes()
    )
    return tmp_path / "noise.pth"


REFUSALS = [  # (id, make the source, arch, kind, dataset, message fragment)
    ("wrong-arch", lambda p: _save(p, "r19.pth", paper.resnet19(10, width=WIDTH)), "resnet18", "snn", "synthetic",
     "does not fit --arch resnet18 --kind snn: "),
    ("wrong-kind", lambda p: _save(p, "ann.pth", paper.ann_resnet18(10, width=WIDTH)), "resnet18", "snn", "synthetic",
     "an ANN, but a spiking network is asked for"),
    ("snn-as-ann", lambda p: _save(p, "snn.pth", paper.resnet18(10, width=WIDTH)), "resnet18", "ann", "synthetic",
     "give --kind snn"),
    ("truncated-dict", _truncated_dict, "resnet18", "snn", "synthetic", "10 missing keys (blocks.7.conv1.0.weight"),
    ("truncated-file", _cut_file, "resnet18", "snn", "synthetic", "is not a PyTorch state dict file"),
    ("random-file", _random_file, "resnet18", "snn", "synthetic", "is not a PyTorch state dict file"),
    ("channels", lambda p: _save(p, "rgb.pth", paper.resnet18(10, width=WIDTH)), "resnet18", "snn", "synthetic-dvs",
     "takes 3-channel input but synthetic-dvs has 2 channels"),
    ("unknown-arch", lambda p: _save(p, "a.pth", paper.resnet18(10, width=WIDTH)), "resnet99", "snn", "synthetic",
     "unknown spiking student architecture 'resnet99'"),
    ("tv-width", lambda p: _save(p, "w.pth", paper.ann_resnet18(10, width=WIDTH)), "tv_resnet18", "ann", "synthetic",
     "its first convolution has 8 channels, tv_resnet18's has 64"),
    ("not-tensors", lambda p: torch.save({"best_net": {"a": 1}}, p / "x.pth") or p / "x.pth", "resnet18", "snn",
     "synthetic", "does not hold a state dict of tensors"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "arch", "kind", "dataset", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_what_does_not_map_is_refused_in_one_line(cli, tmp_path, make, arch, kind, dataset, message):
    src = make(tmp_path)
    before = sorted(tmp_path.iterdir())
    out = tmp_path / "out" / "x.safetensors"
    res = cli(["import", src, "--arch", arch, "--kind", kind, "--dataset", dataset, "--out", out])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr
    assert "Traceback" not in res.output and not out.exists() and sorted(tmp_path.iterdir()) == before


def test_an_existing_out_needs_overwrite(cli, tmp_path):
    src = _save(tmp_path, "a.pth", paper.resnet18(10, width=WIDTH))
    out = tmp_path / "a.safetensors"
    out.write_bytes(b"keep me")
    args = ["import", src, "--arch", "resnet18", "--kind", "snn", "--dataset", "synthetic", "--out", out]
    res = cli(args)
    assert res.exit_code == 2 and "already exists: pass --overwrite" in res.stderr and out.read_bytes() == b"keep me"
    assert cli([*args, "--overwrite"]).exit_code == 0 and load_checkpoint(out).kind == "student"
    again = cli(
        ["import", out, "--arch", "resnet18", "--kind", "snn", "--dataset", "synthetic", "--out", tmp_path / "b"]
    )
    assert again.exit_code == 2 and "already a snnkd checkpoint" in again.stderr


def test_python_api_loads_foreign_weights(tmp_path):
    from snnkd_cli import import_checkpoint, load_foreign

    net = paper.randomise_bn(paper.ann_resnet18(10, width=WIDTH)).eval()
    src = _save(tmp_path, "t.pth", net)
    teacher = load_foreign(src, "resnet18")
    x = _image()
    with torch.no_grad():
        assert (teacher(x) - net(x)).abs().max().item() <= TOL
    report = import_checkpoint(src, tmp_path / "t.safetensors", arch="resnet18", kind="ann", dataset="synthetic")
    assert report.checkpoint_kind == "teacher" and load_checkpoint(report.out).config.model.width == WIDTH
    assert load_checkpoint(report.out).config == report.config  # what was written is the resolved config
    with pytest.raises(AttributeError, match="resolved and frozen"):
        report.config.model.width = 64
    with pytest.raises(SnnkdError, match="give kind='ann'$"):
        load_foreign(src, "resnet18", kind="snn")
