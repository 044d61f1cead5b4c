"""Export: BN folding, the single-step ONNX graph, the ANN teacher graph, NIR, and the error cases.

Every check compares the exported artefact against the PyTorch model it came from (a second
implementation: onnxruntime, spikingjelly's NIR importer, a rebuild from the file). The models
are width-8 ResNets on 16x16 inputs whose BatchNorms have non-trivial statistics and gains large
enough that about 25-35% of the neurons spike, so the comparisons are not of silent networks.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from spikingjelly.activation_based import functional, neuron
from torch import nn

from helpers import README_EARLY_EXIT_SNIPPET, README_SNIPPET
from snnkd_cli.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from snnkd_cli.errors import SnnkdError
from snnkd_cli.export import SingleStepSNN, build_folded, export_checkpoint, fold_bn, load_exported
from snnkd_cli.models import create_model

TMAX = 4
SHAPE = (3, 16, 16)
IMAGENET_STUDENT = {"stem": "imagenet", "soft_reset": True, "decay": 0.2}  # max-pool stem, soft reset, tau 1.25

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors on a busy 2-core machine: faster


def make(arch: str = "resnet18", kind: str = "snn", seed: int = 0, **kw) -> tuple[nn.Module, RunConfig]:
    """A width-8 model in eval mode with non-trivial BN statistics, and the config that rebuilds it."""
    torch.manual_seed(seed)
    mc = ModelConfig(arch=arch, kind=kind, num_classes=10, in_channels=3, width=8, **kw)
    cfg = RunConfig(
        task="distill" if kind == "snn" else "teacher",
        data=DataConfig(image_size=SHAPE[-1], num_classes=10),
        model=mc,
        train=TrainConfig(T=TMAX),
    )
    net = create_model(mc.arch, mc.num_classes, **mc.kwargs())
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.uniform_(m.weight, 1.0, 3.0)  # gains that make neurons fire
            nn.init.uniform_(m.bias, -0.5, 1.0)
    net.train()
    with torch.no_grad():
        for _ in range(3):  # running statistics away from (0, 1)
            functional.reset_net(net)
            x = torch.randn(4, *SHAPE) * 2 + 0.5
            net(x.unsqueeze(0).expand(2, *x.shape) if kind == "snn" else x)
    functional.reset_net(net)
    return net.eval(), cfg


def running_mean(net: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """PyTorch reference: ``logits[:T].mean(0)`` for every T, ``[T, B, classes]``, from one pass."""
    functional.reset_net(net)
    with torch.no_grad():
        out = net(frames)
    out = out[0] if isinstance(out, tuple) else out  # an imported NIR graph returns (output, state)
    return out.cumsum(0) / torch.arange(1, len(out) + 1).view(-1, 1, 1)


def images(T: int, B: int = 2, seed: int = 1) -> torch.Tensor:
    """One image per sample repeated over T steps, ``[T, B, C, H, W]`` (stride 0 over T)."""
    x = torch.randn(B, *SHAPE, generator=torch.Generator().manual_seed(seed)) * 2 + 0.5
    return x.unsqueeze(0).expand(T, *x.shape)


def spike_rate(net: nn.Module, frames: torch.Tensor) -> float:
    """Mean firing rate over all LIF layers and steps (to show a test is not about a silent network)."""
    rates: list[float] = []
    hooks = [
        m.register_forward_hook(lambda m, a, o: rates.append(float(o.mean())))
        for m in net.modules()
        if isinstance(m, neuron.LIFNode)
    ]
    running_mean(net, frames)
    for h in hooks:
        h.remove()
    return sum(rates) / len(rates)


@pytest.fixture(scope="module")
def student():
    return make("resnet18")


@pytest.fixture(scope="module")
def student_onnx(student, tmp_path_factory):
    """The resnet18 student exported once as ``student.onnx`` (verification at T=1, 2, 4)."""
    net, cfg = student
    out = tmp_path_factory.mktemp("onnx") / "student.onnx"
    return out, export_checkpoint(net, cfg, "student", "onnx", out)


# --- BN folding and the safetensors format -------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "kw", "kept"),
    [("resnet18", {}, 0), ("preact_resnet34", IMAGENET_STUDENT, 0)],  # every BN follows its conv
)
def test_folded_safetensors_gives_the_same_logits(arch, kw, kept, tmp_path):
    net, cfg = make(arch, **kw)
    frames = images(5)
    assert 0.05 < spike_rate(net, frames) < 0.6
    out = tmp_path / "m.safetensors"
    summary = export_checkpoint(net, cfg, "student", "safetensors", out, verify_T=5)
    assert summary.verified_T == [1, 2, 5] and len(summary.not_folded) == kept and summary.file_bytes > 0
    loaded = load_exported(out)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in loaded.modules()) == kept
    want, got = running_mean(net, frames), running_mean(loaded, frames)
    assert (want[0] - want[-1]).abs().max() > 1e-3  # T matters: the states do something
    for T in (1, 3, 5):
        torch.testing.assert_close(got[T - 1], want[T - 1], atol=1e-5, rtol=0)


def test_fold_bn_report_and_metadata(tmp_path):
    net, cfg = make("preact_resnet34", stem="cifar")
    folded, report = fold_bn(net)
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # the original is untouched
    assert "stem.0+stem.1" in report.folded and "blocks.3.shortcut.0+blocks.3.shortcut.1" in report.folded
    assert len(report.folded) == 1 + 2 * 16 + 3 and report.not_folded == []  # stem, 2 per block, 3 shortcuts
    _, tv_report = fold_bn(create_model("resnet34", 10, kind="ann", stem="imagenet"))  # torchvision: BN attributes
    assert "bn1" in tv_report.not_folded and "layer1.0.bn2" in tv_report.not_folded
    out = tmp_path / "m.safetensors"
    export_checkpoint(
        net, cfg, "student", "safetensors", out, meta={"kind": "student", "config": cfg.to_json(), "x": "1"}
    )
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert meta["folded"] == "1" and meta["kind"] == "student" and meta["x"] == "1"
    assert json.loads(meta["fold_report"]) == {"folded": report.folded, "not_folded": report.not_folded}
    assert keys == set(build_folded(cfg).state_dict()) == set(folded.state_dict())


# --- ONNX: the single-step graph -----------------------------------------------------------------


def run_graph(path, frames: torch.Tensor) -> torch.Tensor:
    """onnxruntime: loop the single-step graph over ``frames`` from zero states; running means ``[T, B, C]``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    states = [np.zeros((frames.shape[1], *i.shape[1:]), np.float32) for i in sess.get_inputs()[1:]]
    total, means = 0.0, []
    for t, x in enumerate(frames, 1):
        logits, *states = sess.run(None, dict(zip(names, [x.contiguous().numpy(), *states], strict=True)))
        total = total + logits
        means.append(torch.from_numpy(total / t))
    return torch.stack(means)


def test_onnx_single_step_graph_matches_pytorch_at_every_T(student, student_onnx):
    import onnx

    net, _ = student
    path, summary = student_onnx
    model = onnx.load(str(path))
    ins = [i.name for i in model.graph.input]
    outs = [o.name for o in model.graph.output]
    n = summary.states
    assert n == 17  # stem + 2 per BasicBlock x 8
    assert ins == ["input"] + [f"v{i}" for i in range(n)] and outs == ["logits"] + [f"v{i}_out" for i in range(n)]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch axis
    assert summary.verified_T == [1, 2, TMAX] and summary.max_abs_diff < 1e-5
    static = images(TMAX, B=3)  # another batch size than the export's 2
    events = torch.randn(TMAX, 3, *SHAPE, generator=torch.Generator().manual_seed(2)) * 2  # frame t at step t
    for frames in (static, events):
        want, got = running_mean(net, frames), run_graph(path, frames)
        assert (want[0] - want[-1]).abs().max() > 1e-3
        for T in (1, 2, TMAX):
            torch.testing.assert_close(got[T - 1], want[T - 1], atol=1e-5, rtol=0)


def test_single_step_module_soft_reset_and_max_pool_match_spikingjelly():
    """PyTorch side of the ONNX graph for the ImageNet student: soft reset, decay 0.2, max-pool stem."""
    net, _ = make("preact_resnet34", **IMAGENET_STUDENT)
    step = SingleStepSNN(net, SHAPE, dtype=torch.float64)
    frames = images(TMAX).double()
    torch.testing.assert_close(step.run(frames), running_mean(net.double(), frames), atol=1e-9, rtol=0)


@pytest.mark.slow
def test_onnx_imagenet_student_soft_reset_and_max_pool(tmp_path):
    """The ImageNet student's graph: soft reset (v -= v_th), decay 0.2, max-pool stem on real values."""
    net, cfg = make("preact_resnet34", **IMAGENET_STUDENT)
    out = tmp_path / "preact.onnx"
    summary = export_checkpoint(net, cfg, "student", "onnx", out, verify_T=3)
    assert summary.states == 32 and summary.verified_T == [1, 2, 3] and summary.not_folded == []
    frames = images(3)
    want, got = running_mean(net, frames), run_graph(out, frames)
    assert (want[0] - want[-1]).abs().max() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_step_check_tells_rounding_flips_from_errors(student, student_onnx):
    """The exporter's step-by-step check: weights off by float rounding (~1e-6) flip a few near-threshold
    spikes and pass; a wrong leak in one layer is caught and named."""
    from snnkd_cli.export.onnx_step import LIFStep, session
    from snnkd_cli.export.verify import check_steps

    net, _ = student
    path, _ = student_onnx
    sess = session(str(path))
    frames = torch.randn(8, 16, *SHAPE, generator=torch.Generator().manual_seed(5)) * 2 + 0.5
    folded = fold_bn(net)[0]
    with torch.no_grad():
        for p in folded.parameters():
            p.mul_(1 + 1e-6 * torch.randn(p.shape, generator=torch.Generator().manual_seed(6)))
    flips = check_steps(sess, SingleStepSNN(folded, SHAPE), frames)  # 2 here (x86-64, torch 2.14); CPU-dependent
    assert flips >= 0
    wrong = SingleStepSNN(fold_bn(net)[0], SHAPE)
    next(m for m in wrong.net.modules() if isinstance(m, LIFStep) and m.index == 5).tau = 2.2
    with pytest.raises(SnnkdError, match=r"LIF layer blocks\.2\.act1 \(state v5\)"):
        check_steps(sess, wrong, frames)


def test_readme_snippet(student, student_onnx, monkeypatch, capsys):
    net, _ = student
    path, _ = student_onnx
    monkeypatch.chdir(path.parent)
    scope: dict = {}
    exec(compile(README_SNIPPET, "README", "exec"), scope)
    x = scope["x"]
    frames = torch.from_numpy(x).unsqueeze(0).expand(3, *x.shape)
    want = running_mean(net, frames)
    for T in (1, 3):
        np.testing.assert_allclose(scope["predict"](x, T=T), want[T - 1].numpy(), atol=1e-5, rtol=0)
    assert capsys.readouterr().out.startswith("[")


def test_readme_early_exit_snippet(student, student_onnx, monkeypatch, capsys):
    """The README's ONNX early-exit loop gives the exits and predictions of the post-hoc rule on the PyTorch model."""
    from snnkd_cli.evaluation.early_exit import early_exit, exit_scores

    net, _ = student
    path, _ = student_onnx
    monkeypatch.chdir(path.parent)
    scope: dict = {}
    exec(compile(README_EARLY_EXIT_SNIPPET, "README", "exec"), scope)
    assert capsys.readouterr().out.startswith("[")
    frames = images(TMAX, B=16, seed=7)
    with torch.no_grad():
        functional.reset_net(net)
        logits = net(frames)
    s = exit_scores(logits.cumsum(0)[:-1] / torch.arange(1, TMAX).view(-1, 1, 1), "confidence").flatten().sort().values
    i = int(0.5 * (len(s) - 1))
    while s[i + 1] - s[i] < 1e-3:  # a threshold far from every score: float32 rounding cannot flip an exit
        i += 1
    thr = float(s[i] + s[i + 1]) / 2
    want_step, want_pred = early_exit(logits, thr)
    assert len(set(want_step.tolist())) >= 2
    pred, steps = scope["predict_early_exit"](frames[0].numpy(), thr, TMAX)
    assert steps.tolist() == want_step.tolist() and pred.tolist() == want_pred.tolist()


def test_teacher_onnx_matches_pytorch(tmp_path):
    import onnxruntime as ort

    net, cfg = make("resnet18", kind="ann")
    out = tmp_path / "teacher.onnx"
    summary = export_checkpoint(net, cfg, "teacher", "onnx", out)
    x = torch.randn(5, *SHAPE)
    with torch.no_grad():
        want = net(x)
    scale = float(want.abs().max())  # kaiming-initialised teacher with BN gains of 1-3: logits in the hundreds
    assert summary.verified_T is None and summary.states is None and summary.max_abs_diff < 2e-6 * scale
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x.numpy()})[0], want.numpy(), atol=2e-6 * scale, rtol=1e-5)


# --- NIR -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "kw"),
    [("resnet18", {}), ("resnet18", {"stem": "imagenet"}), ("preact_resnet34", {"stem": "cifar"})],
    ids=["resnet18", "resnet18-maxpool-stem", "preact34-hard-reset"],
)
def test_nir_round_trip(arch, kw, tmp_path):
    """Spiking ResNets -> NIR file -> spikingjelly's importer: the same logits.

    Covers residual sums (two edges into one node), adaptive average pooling (a fixed AvgPool), the
    max-pool stem (AvgPool + IF on spikes) and pre-activation blocks (LIF on the real-valued stream).
    """
    import nir
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    net, cfg = make(arch, **kw)
    out = tmp_path / "m.nir"
    summary = export_checkpoint(net, cfg, "student", "nir", out, verify_T=3)
    graph = nir.read(str(out))
    assert any(isinstance(n, nir.LIF) for n in graph.nodes.values())
    assert len(graph.edges) > len(graph.nodes)  # residual sums: nodes with two incoming edges
    back = import_from_nir(graph, step_mode="m")
    frames = images(TMAX)
    want, got = running_mean(net, frames), running_mean(back, frames)
    assert (want[0] - want[-1]).abs().max() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert summary.max_abs_diff < 1e-5 and summary.verified_T == [1, 2, 3]


# --- a checkpoint trained by the CLI, loaded the way the export command loads it -------------------


def test_export_a_trained_checkpoint(student_ckpt, tmp_path):
    from snnkd_cli.checkpoint import load_checkpoint, model_from_checkpoint, read_metadata
    from snnkd_cli.export import default_out

    ckpt = load_checkpoint(student_ckpt)
    net = model_from_checkpoint(ckpt).eval()
    out = tmp_path / default_out(student_ckpt, "safetensors").name
    assert out.name == "best.folded.safetensors"
    summary = export_checkpoint(net, ckpt.config, ckpt.kind, "safetensors", out, meta=ckpt.meta)
    meta = read_metadata(out)  # still a snnkd checkpoint: kind, config and metrics kept
    assert meta["kind"] == "student" and meta["config"] == ckpt.meta["config"] and "metrics" in meta
    size = ckpt.config.data.image_size
    frames = torch.randn(1, 2, 3, size, size).expand(ckpt.config.train.T, 2, 3, size, size)
    torch.testing.assert_close(running_mean(load_exported(out), frames), running_mean(net, frames), atol=1e-5, rtol=0)
    assert summary.verified_T == sorted({1, 2, ckpt.config.train.T})
    nir_sum = export_checkpoint(net, ckpt.config, ckpt.kind, "nir", tmp_path / "best.nir")
    assert nir_sum.max_abs_diff < 1e-5 and any("AvgPool2d" in n for n in nir_sum.notes)


# --- errors --------------------------------------------------------------------------------------


def test_export_errors(tmp_path):
    snn, cfg = make("resnet18")
    ann, tcfg = make("resnet18", kind="ann")
    soft, scfg = make("preact_resnet34", stem="imagenet", soft_reset=True, decay=0.2)  # the ImageNet student
    cases = [
        (lambda: export_checkpoint(snn, cfg, "student", "tflite", tmp_path / "x"), "unknown export format 'tflite'"),
        (lambda: export_checkpoint(ann, tcfg, "teacher", "nir", tmp_path / "x.nir"), "NIR is for spiking students"),
        (lambda: export_checkpoint(ann, tcfg, "student", "onnx", tmp_path / "x.onnx"), "kind 'student'"),
        (lambda: export_checkpoint(snn, cfg, "student", "onnx", tmp_path, verify_T=1), "is a folder"),
        (lambda: export_checkpoint(snn, cfg, "student", "onnx", tmp_path / "x.onnx", verify_T=0), "^verify_T must be"),
        (lambda: export_checkpoint(soft, scfg, "student", "nir", tmp_path / "x.nir"), "soft reset"),
        (lambda: load_exported(tmp_path / "missing.safetensors"), "not found"),
    ]
    for call, words in cases:
        with pytest.raises(SnnkdError, match=words) as err:
            call()
        assert "\n" not in str(err.value)
    msg = str(pytest.raises(SnnkdError, cases[5][0]).value)
    assert "blocks.0.act1" in msg and "--format onnx" in msg  # names the layer and the way out
    assert "MaxPool2d" in msg and "stem_pool.0" in msg  # max-pooling of real values (no stem LIF): no NIR node
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize(("fmt", "module"), [("nir", "nirtorch"), ("onnx", "onnxruntime")])
def test_missing_optional_dependency(fmt, module, tmp_path, monkeypatch):
    net, cfg = make("resnet18")
    monkeypatch.setitem(sys.modules, module, None)  # what an install without the extra looks like to `import`
    with pytest.raises(SnnkdError, match=r"pip install 'snnkd\[export\]'"):
        export_checkpoint(net, cfg, "student", fmt, tmp_path / f"x.{fmt}")
    assert not list(tmp_path.iterdir())
