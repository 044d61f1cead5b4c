"""Helpers and constants that several test modules share (no test module imports another)."""

from __future__ import annotations

from pathlib import Path

import torch
from spikingjelly.activation_based import layer
from torch import nn

from snnkd_cli.models import create_model
from snnkd_cli.models.neurons import make_lif

# --- the README's ONNX examples (run literally by test_export, compared with the README by test_readme) ---

# The README's snippet, run literally by test_readme_snippet (in a folder holding student.onnx).
README_SNIPPET = """
import numpy as np
import onnxruntime as ort

sess = ort.InferenceSession("student.onnx", providers=["CPUExecutionProvider"])
image, *states_in = sess.get_inputs()  # "input" [B, C, H, W], then v0, v1, ...: one membrane potential per LIF layer


def predict(x: np.ndarray, T: int) -> np.ndarray:
    \"\"\"Images x [B, C, H, W] (float32, normalised as in training) -> logits averaged over T steps [B, classes].\"\"\"
    states = [np.zeros((len(x), *s.shape[1:]), np.float32) for s in states_in]  # zeros: the initial state
    total = 0.0
    for _ in range(T):  # for event data, feed frame t at step t instead of the same x
        logits, *states = sess.run(None, {"input": x, **{s.name: v for s, v in zip(states_in, states)}})
        total = total + logits
    return total / T


x = np.random.default_rng(0).standard_normal((4, *image.shape[1:])).astype(np.float32)
print(predict(x, T=2).argmax(1))  # T is chosen here, at run time
"""


# The README's early-exit loop over the same graph, run literally by test_readme_early_exit_snippet.
README_EARLY_EXIT_SNIPPET = """
import numpy as np
import onnxruntime as ort

sess = ort.InferenceSession("student.onnx", providers=["CPUExecutionProvider"])
image, *states_in = sess.get_inputs()


def predict_early_exit(x: np.ndarray, threshold: float, max_T: int) -> tuple[np.ndarray, np.ndarray]:
    \"\"\"Images x [B, C, H, W] -> (class [B], steps used [B]): a sample stops at the first step where the
    softmax of its running mean of logits has a maximum >= threshold (all stop at max_T).\"\"\"
    states = [np.zeros((len(x), *s.shape[1:]), np.float32) for s in states_in]
    active = np.arange(len(x))  # the samples still running
    total = np.zeros(0, np.float32)
    pred, steps = np.zeros(len(x), np.int64), np.zeros(len(x), np.int64)
    for t in range(1, max_T + 1):
        logits, *states = sess.run(None, {"input": x[active], **{s.name: v for s, v in zip(states_in, states)}})
        total = logits if t == 1 else total + logits
        mean = total / t  # the running mean [B', classes]
        p = np.exp(mean - mean.max(1, keepdims=True))
        done = (p.max(1) / p.sum(1) >= threshold) | (t == max_T)
        pred[active[done]], steps[active[done]] = mean[done].argmax(1), t
        keep = ~done  # the others go on with their own membrane potentials
        active, total, states = active[keep], total[keep], [v[keep] for v in states]
        if len(active) == 0:
            break
    return pred, steps


x = np.random.default_rng(0).standard_normal((4, *image.shape[1:])).astype(np.float32)
print(*predict_early_exit(x, threshold=0.9, max_T=4))  # threshold: from snnkd eval-sweep --dynamic
"""


# --- students -------------------------------------------------------------------------------------


def user_student(num_classes=10):
    """A student a user writes: [T, B, 3, 16, 16] -> [T, B, classes]."""
    return nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)),
        make_lif(0.5),
        layer.SeqToANNContainer(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, num_classes)),
    )


def firing_student(dtype=torch.float64, in_channels: int = 3, seed: int = 0) -> nn.Module:
    """A width-8 spiking ResNet-18 in eval mode whose BN statistics make neurons fire and outputs vary."""
    torch.manual_seed(seed)
    net = create_model("resnet18", 10, kind="snn", width=8, in_channels=in_channels)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 1.0, 3.0)
            nn.init.uniform_(m.bias, -0.5, 1.0)
            m.running_var.fill_(0.3)
    with torch.no_grad():
        net.head[0].weight.mul_(8.0)  # confident predictions for some inputs, unsure ones for others
    return net.to(dtype).eval()


def hand_rule(logits: torch.Tensor, threshold: float | None, rule: str) -> tuple[list[int], list[int]]:
    """The rule written out: per sample, step by step, the softmax of the mean of the first t logits."""
    T, N, _ = logits.shape
    steps, preds = [], []
    for n in range(N):
        for t in range(1, T + 1):
            mean = logits[:t, n].mean(0)
            p = torch.softmax(mean, -1)
            if rule == "confidence":
                passes = threshold is not None and float(p.max()) >= threshold
            else:
                passes = threshold is not None and float(-(p * p.log()).sum()) <= threshold
            if passes or t == T:
                steps.append(t)
                preds.append(int(mean.argmax()))
                break
    return steps, preds


# --- the command line's results -------------------------------------------------------------------

RUN_FILES = ["best.safetensors", "config.json", "last.safetensors"]


def assert_one_line_error(res, fragment: str, stdout_empty: bool = True) -> str:
    """Exit 2, nothing on stdout, exactly one stderr line ``error: ...`` containing ``fragment``, no traceback."""
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert fragment in lines[0], lines[0]
    if stdout_empty:
        assert res.stdout == ""
    return lines[0]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def assert_clean_run_dir(folder: Path) -> None:
    """The documented files are there, and no temporary file (``.name.xxx.tmp``) or write probe is left behind."""
    names = {p.name for p in folder.iterdir()}
    assert set(RUN_FILES) <= names, sorted(names)
    assert not [n for n in names if n.startswith(".")], sorted(names)
