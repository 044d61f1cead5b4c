"""The dataset registry: one spec per dataset name, and the places that list names agree with it."""

from __future__ import annotations

import typing

import pytest
import torch

from snnkd_cli.cli import options
from snnkd_cli.config import DATASETS, EVENT_DATASETS, DataConfig
from snnkd_cli.data import DEFAULT_IMAGE_SIZE, build_datasets, dataset_spec
from snnkd_cli.data.registry import SPECS
from snnkd_cli.errors import SnnkdError


def test_the_registry_names_the_configs_datasets_in_order():
    assert tuple(SPECS) == DATASETS
    assert {n for n, s in SPECS.items() if s.temporal} == set(EVENT_DATASETS)
    assert DEFAULT_IMAGE_SIZE == {n: s.image_size for n, s in SPECS.items()}


def test_the_dataset_option_help_names_every_dataset():
    help_text = typing.get_args(options.Dataset)[1].help
    missing = [n for n in DATASETS if n not in help_text]
    assert not missing, missing


@pytest.mark.parametrize("name", ["synthetic", "synthetic-dvs"])
def test_a_built_dataset_matches_its_spec(name):
    cfg = DataConfig(dataset=name, synthetic_train=8, synthetic_val=4)
    tr, val, info = build_datasets(cfg)
    spec = dataset_spec(name)
    assert (info.name, info.image_size, info.temporal) == (name, spec.image_size, spec.temporal)
    x, _ = val[0]
    assert x.shape[-1] == spec.image_size and x.dim() == (4 if spec.temporal else 3)
    assert len(tr) == 8 and len(val) == 4


def test_an_unknown_dataset_is_one_line_naming_the_known_ones():
    with pytest.raises(SnnkdError) as e:
        dataset_spec("mnist")
    assert "mnist" in str(e.value) and all(n in str(e.value) for n in DATASETS)


def test_the_built_in_sets_share_one_split_rule_and_take_only_n_and_classes_by_position():
    """Both built-in sets draw their labels from SyntheticSplit: balanced, shuffled by the split's seed (same
    labels for the same n, classes and seeds, whatever the samples are); either seed changes them. A third
    positional argument (``size`` in older code) is refused, not taken as a seed."""
    import pytest

    from snnkd_cli.data.dvs_synthetic import SyntheticEvents
    from snnkd_cli.data.synthetic import SyntheticImages

    images, events = SyntheticImages(40, 4, size=8), SyntheticEvents(40, 4, frames=2, size=8)
    assert torch.equal(images.labels, events.labels)
    assert torch.bincount(images.labels).tolist() == [10, 10, 10, 10]
    assert not torch.equal(images.labels, SyntheticImages(40, 4, size=8, split_seed=1).labels)
    assert not torch.equal(images.labels, SyntheticImages(40, 4, size=8, seed=5).labels)
    assert torch.equal(images.images, SyntheticImages(40, 4, size=8).images)
    x, y = events[3]
    assert x.shape == (2, 2, 8, 8) and y == int(events.labels[3]) and events.classes[3] == "class_3"
    with pytest.raises(TypeError):
        SyntheticImages(40, 4, 8)
