"""``compile=True`` (``--compile``): inductor-compiled training equals eager training."""

import shutil

import pytest
import torch
from torch.utils.data import DataLoader

from helpers import user_student
from snnkd_cli.data.synthetic import SyntheticImages
from snnkd_cli.models import create_model


def _run(tmp_path, compile):
    from snnkd_cli import distill

    torch.manual_seed(0)
    train = DataLoader(SyntheticImages(64, split_seed=0), batch_size=16)
    val = DataLoader(SyntheticImages(32, split_seed=1), batch_size=32)
    teacher = create_model("resnet18", 10, kind="ann", width=4)
    student = user_student()
    result = distill(
        student,
        teacher,
        train,
        val,
        T=2,
        epochs=1,
        max_steps=3,
        lr=0.05,
        verbose=False,
        out=tmp_path,
        compile=compile,
        precision="fp32",
    )
    return student, result


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")), reason="inductor on CPU needs a C++ compiler"
)
@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    from torch._dynamo.utils import counters

    eager, r_eager = _run(tmp_path / "eager", False)
    counters.clear()
    compiled, r_compiled = _run(tmp_path / "compiled", True)
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo captured the training forward
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    # evaluation ran eager on the compiled run's module: the same sweep
    assert r_eager.history[-1]["val"] == r_compiled.history[-1]["val"]
    # the module the user passed is still a plain module, resettable and checkpointed
    assert not hasattr(compiled, "_orig_mod")
    assert (tmp_path / "compiled" / "last.safetensors").exists()
