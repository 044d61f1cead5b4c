"""Export trained models: BN-folded safetensors, a single-step ONNX graph with explicit states, NIR.

Public API:
    export_checkpoint(model, config, kind, fmt, out, ...) -> ExportSummary
    fold_bn(model) -> (model, FoldReport);  build_folded(config) -> nn.Module;  load_exported(path) -> nn.Module
    SingleStepSNN(model, input_shape): the one-step module the ONNX graph is exported from.

``nir``, ``nirtorch``, ``onnx``, ``onnxruntime`` and ``onnxscript`` are optional (``pip install 'snnkd[export]'``);
they are imported only when a format needs them.
"""

from snnkd_cli.export.fold import FoldReport, build_folded, fold_bn, load_exported
from snnkd_cli.export.onnx_step import SingleStepSNN
from snnkd_cli.export.summary import FORMATS, ExportSummary, default_out, export_checkpoint

__all__ = [
    "FORMATS",
    "ExportSummary",
    "FoldReport",
    "SingleStepSNN",
    "build_folded",
    "default_out",
    "export_checkpoint",
    "fold_bn",
    "load_exported",
]
