"""bench/gpu.py --small on the CPU: every variant timed, the LIF code named, the torchrun stages wired.

The torchrun stages run snnkd's CLI three times (train-teacher, distill under torchrun, eval-sweep);
snnkd under torchrun is run for real in test_distributed, so here they get a fake ``subprocess.run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
# the names bench/gpu.py gives, written out by hand: shape, kind and precision, eager and channels-last
PRECISIONS = ["snn-fp32", "snn-bf16", "snn-bf16-lifbf16", "ann-fp32", "ann-bf16"]
NAMES = {f"{s}-{p}{m}" for s in ("cifar", "imagenet") for p in PRECISIONS for m in ("", "-cl")}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(BENCH / "gpu.py"), "--small", "--device", "cpu", "--threads", "1", "--out", str(out)]
    cmd += ["--parts", "lif", "sweep", "steps"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(out.read_text()), res.stdout


@pytest.mark.slow
def test_every_variant_is_timed_beside_its_ann_floor(small_run) -> None:
    report, stdout = small_run
    rows = report["steps"]["variants"]
    assert set(rows) == NAMES  # --small on a CPU leaves the compiled variants out, and says so
    assert "compiled variants left out" in report["settings"]["note"]
    for name, r in rows.items():
        assert r["step_s"] > 0 and r["finite"], name
        assert r["images_per_s"] == pytest.approx(r["batch"] / r["step_s"])
        assert r["peak_mib"] is None  # no CUDA memory on a CPU
        floor = rows[name.replace("-snn-", "-ann-").replace("-lifbf16", "")]
        assert r["over_ann"] == pytest.approx(r["step_s"] / floor["step_s"])
        assert f"| {name} |" in stdout
    assert rows["cifar-snn-fp32"]["T"] == 2 and rows["imagenet-snn-fp32"]["classes"] == 1000
    assert report["device"]["type"] == "cpu" and report["versions"]["spikingjelly"]


@pytest.mark.slow
def test_the_lif_code_is_named_and_the_checks_pass(small_run) -> None:
    report, stdout = small_run
    lif = report["lif"]
    assert lif["ok"] and not lif["problems"]
    by = {(p["shape"], p["precision"]): p for p in lif["profiles"]}
    assert len(by) == 6
    for shape in ("cifar", "imagenet"):
        # fp32 state: spikingjelly's registered operator (its CPU kernel here); bf16 state: its Python fallback
        assert by[shape, "fp32"]["implementation"].startswith("sj_lif") and by[shape, "fp32"]["calls"]["op"] > 0
        assert by[shape, "bf16"]["calls"] == by[shape, "fp32"]["calls"]
        assert "reference" in by[shape, "bf16-lifbf16"]["calls"] and not by[shape, "bf16-lifbf16"]["required"]
    assert "torchrun" not in report and report["settings"]["parts"] == ["lif", "sweep", "steps"]
    sweep = report["sweep"]
    assert sweep["same_top1_every_T"] and sweep["top1_one_pass"] == sweep["top1_separate"]
    assert len(sweep["top1_one_pass"]) == 8
    assert report["ok"] and "LIF OK" in stdout


def _fake_cli(calls: list[list[str]], fail: str | None = None):
    """``subprocess.run`` for the torchrun stages: writes what each snnkd command would write; ``fail``
    (a command name) exits 1."""

    def run(cmd, **kw):
        calls.append(cmd)
        name = next(c for c in cmd if c in ("train-teacher", "distill", "eval-sweep"))
        if name == fail:
            return subprocess.CompletedProcess(cmd, 1, "", "error: it broke")
        if name == "eval-sweep":
            rows = [{"T": t} for t in range(1, int(cmd[cmd.index("--max-T") + 1]) + 1)]
            Path(cmd[cmd.index("--json") + 1]).write_text(json.dumps({"checkpoints": [{"results": rows}]}))
        else:
            made = Path(cmd[cmd.index("--out") + 1]) / "best.safetensors"
            made.parent.mkdir(parents=True)
            made.write_bytes(b"")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    return run


@pytest.mark.parametrize("nproc", [1, 2])
def test_torchrun_stages_run_in_order_on_each_others_files(tmp_path, monkeypatch, nproc) -> None:
    gpu = _bench_module("gpu")
    calls: list[list[str]] = []
    monkeypatch.setattr(gpu.subprocess, "run", _fake_cli(calls))
    args = gpu.parse_args(["--small", "--device", "cpu", "--nproc", str(nproc)])
    out = gpu.torchrun_part(torch.device("cpu"), args, tmp_path)
    assert out["ok"] and [s["stage"] for s in out["stages"]] == ["train-teacher", "distill (torchrun)", "eval-sweep"]
    assert out["backend"] == ("one process, no process group" if nproc == 1 else "gloo")
    teacher, distill, sweep = calls
    assert "torch.distributed.run" not in teacher and distill[distill.index("--nproc-per-node") + 1] == str(nproc)
    assert distill[distill.index("--teacher") + 1] == str(tmp_path / "teacher" / "best.safetensors")
    assert distill[distill.index("--batch-size") + 1] == str(16 * nproc)  # the per-process batch stays 16
    assert sweep[sweep.index("eval-sweep") + 1] == str(tmp_path / "student" / "best.safetensors")
    assert int(sweep[sweep.index("--max-T") + 1]) == gpu.SWEEP_T


def test_a_failed_torchrun_stage_stops_the_rest_and_keeps_its_error(tmp_path, monkeypatch) -> None:
    gpu = _bench_module("gpu")
    calls: list[list[str]] = []
    monkeypatch.setattr(gpu.subprocess, "run", _fake_cli(calls, fail="distill"))
    out = gpu.torchrun_part(torch.device("cpu"), gpu.parse_args(["--small", "--device", "cpu"]), tmp_path)
    assert not out["ok"] and len(calls) == 2 and [s["ok"] for s in out["stages"]] == [True, False]
    assert out["stages"][1]["stderr_tail"] == "error: it broke" and out["stages"][1]["returncode"] == 1
    assert "torchrun x1 (one process, no process group): FAIL" in gpu.summary({"torchrun": out})[0]


def _bench_module(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(BENCH))


def test_as_ann_is_the_registered_ann_with_relu() -> None:
    """The ANN floor of a student with no ANN registration (the ImageNet one) is the student with ReLU: for
    ResNet-18, which has both, it gives the registered ANN's logits on the same weights."""
    from snnkd_cli.models import create_model

    parts = _bench_module("_gpu_parts")
    torch.manual_seed(0)
    ann = create_model("resnet18", 10, kind="ann", width=8).eval()
    converted = parts.as_ann(create_model("resnet18", 10, width=8)).eval()
    converted.load_state_dict(ann.state_dict())
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), ann(x))


def test_a_pattern_that_matches_no_variant_is_an_error(tmp_path, capsys) -> None:
    gpu = _bench_module("gpu")
    out = tmp_path / "gpu.json"
    assert gpu.main(["--small", "--device", "cpu", "--variants", "cifar-snn-fp8", "--out", str(out)]) == 2
    assert "--variants cifar-snn-fp8 matches none" in capsys.readouterr().err
    assert not out.exists()


def _fake_profile(shape, precision, device) -> dict:
    """A LIF that loops in Python whatever the precision (spikingjelly's ``torch`` choice on CUDA)."""
    return {"shape": shape.name, "precision": precision, "calls": {"op": 1}, "implementation": "sj_lif torch"} | {
        "python_loop": True,
        "required": precision != "bf16-lifbf16",
    }


def test_a_python_lif_loop_fails_the_check_on_cuda_only(monkeypatch) -> None:
    parts = _bench_module("_gpu_parts")
    monkeypatch.setattr(parts, "lif_profile", _fake_profile)
    monkeypatch.setattr(parts, "_selected", lambda device, execution="eager": "torch")
    on_cuda = parts.lif_check(parts.shapes(small=True), torch.device("cuda"))
    assert not on_cuda["ok"]
    assert sorted(on_cuda["problems"]) == [
        f"{s} {p}: sj_lif torch" for s in ("cifar", "imagenet") for p in ("bf16", "fp32")
    ]
    assert parts.lif_check(parts.shapes(small=True), torch.device("cpu"))["ok"]


def test_a_failed_lif_check_exits_1_loudly_and_times_nothing(tmp_path, monkeypatch, capsys) -> None:
    gpu = _bench_module("gpu")
    failed = {"ok": False, "profiles": [], "problems": ["cifar fp32: sj_lif torch"], "neuron_implementation": {}}
    monkeypatch.setattr(gpu, "lif_check", lambda shapes, device: failed)
    out = tmp_path / "gpu.json"
    assert gpu.main(["--small", "--device", "cpu", "--out", str(out)]) == 1
    assert "FAIL: spikingjelly's LIF runs a Python loop over T on CUDA for cifar fp32" in capsys.readouterr().err
    report = json.loads(out.read_text())
    assert not report["ok"] and not report["lif"]["ok"]
    assert not {"steps", "sweep", "torchrun", "memory"} & set(report)


def test_the_memory_part_reports_bench_memorys_table_of_made_up_points(monkeypatch, tmp_path, capsys) -> None:
    """Left out of a CPU --small run unless named; named, it runs bench/memory.py at its small options (the points
    here made up) and prints its table and the ratios at the largest T, computed by hand."""
    gpu = _bench_module("gpu")
    assert "memory" not in gpu.parse_args(["--small", "--device", "cpu"]).parts
    assert "memory" in gpu.parse_args(["--device", "cpu"]).parts
    assert "memory" in gpu.parse_args(["--small", "--device", "cuda"]).parts
    seen = {}

    def points(opts, device, deadline=None):
        seen.update(vars(opts), device=device.type)
        made_up = [(1, "off", 0, 50.0, 0.2), (1, "memory", 1, 30.0, 0.3), (2, "off", 0, 90.0, 0.4)]
        made_up += [(2, "memory", 1, 45.0, 0.5)]
        rows = [{"T": T, "setting": s, "level": lv, "memory_mib": m, "step_s": t} for T, s, lv, m, t in made_up]
        return gpu.memory.summarise([r | {"weight_diff": 3e-7 if r["level"] else 0.0} for r in rows])

    monkeypatch.setattr(gpu.memory, "run_points", points)
    out = tmp_path / "gpu.json"
    assert gpu.main(["--small", "--device", "cpu", "--parts", "memory", "--out", str(out)]) == 0
    assert seen["T"] == [1, 2] and seen["settings"] == ["off", "memory"] and seen["batch"] == 2
    assert seen["width"] == 4 and seen["device"] == "cpu"
    report = json.loads(out.read_text())
    assert report["memory"]["slopes"] == {"off": pytest.approx(40.0), "memory": pytest.approx(15.0)}
    stdout = capsys.readouterr().out
    assert "| 2 | memory | 1 | 45 | 0.50x | 500 | 1.25x | 3.0e-07 |" in stdout  # 45 / 90, 0.5 / 0.4
    assert "memory at T=2 over off's: off 1.00x, memory 0.50x; MiB per timestep: off 40.0, memory 15.0" in stdout
