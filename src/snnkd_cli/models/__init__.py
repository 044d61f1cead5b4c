"""Spiking students and ANN teachers, created by name."""

from snnkd_cli.models import resnet as _resnet  # noqa: F401  (registers the ResNets)
from snnkd_cli.models import torchvision_models as _tv  # noqa: F401  (registers tv_resnet18/34/50)
from snnkd_cli.models import zoo as _zoo  # noqa: F401  (registers spikingjelly's zoo students)
from snnkd_cli.models.registry import (
    KINDS,
    build_model,
    create_model,
    list_models,
    model_info,
    model_spec,
    register_model,
)

__all__ = ["KINDS", "build_model", "create_model", "list_models", "model_info", "model_spec", "register_model"]
