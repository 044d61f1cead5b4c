"""Weights saved by other code (the paper's released models, torchvision, timm) as snnkd models.

``read_state_dict`` reads a ``.pth``/``.pt`` (weights only) or plain ``.safetensors`` file, unwrapping the
paper's ``{"best_net": state_dict}``; ``convert_state`` recognises the key layout, renames it onto a
registered model, infers in-channels, stem, width and classes from the weights and loads them strictly,
or refuses in one line naming the first keys that do not fit. ``snnkd import`` and ``snnkd distill
--teacher X.pth`` run on these.
"""

from snnkd_cli.convert.fit import Converted, convert_state
from snnkd_cli.convert.layouts import Layout, detect_layout
from snnkd_cli.convert.reader import read_state_dict

__all__ = ["Converted", "Layout", "convert_state", "detect_layout", "read_state_dict"]
