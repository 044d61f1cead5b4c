"""``export_checkpoint``: one entry point for the three formats, returning a summary to print.

The CLI loads the checkpoint (:mod:`snnkd_cli.checkpoint`) and passes the model and its config here (this
package does not import train or the CLI).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from spikingjelly.activation_based import functional
from torch import nn

import snnkd_cli.export.verify as verify
from snnkd_cli import __version__, progress
from snnkd_cli.config import EVENT_DATASETS, RunConfig
from snnkd_cli.errors import SnnkdError, option
from snnkd_cli.export.fold import build_folded, fold_bn, folded_metadata
from snnkd_cli.export.onnx_step import SingleStepSNN, ann_to_onnx, require, run_session, session, snn_to_onnx
from snnkd_cli.format import checkpoint_metadata, encode
from snnkd_cli.fsutil import atomic_write_bytes

FORMATS = ("safetensors", "onnx", "nir")
NEEDS = {"safetensors": (), "onnx": ("onnx", "onnxscript", "onnxruntime"), "nir": ("nir", "nirtorch", "h5py")}
SUFFIX = {"safetensors": ".folded.safetensors", "onnx": ".onnx", "nir": ".nir"}


@dataclass
class ExportSummary:
    """What an export wrote and how it was checked (``rows()`` gives label/value pairs for a table)."""

    format: str
    kind: str
    arch: str
    path: Path
    file_bytes: int
    parameters: int
    folded: list[str]
    not_folded: list[str]
    verified_T: list[int] | None  # None for an ANN
    max_abs_diff: float  # the exported model vs the original PyTorch model, averaged logits
    states: int | None = None  # ONNX spiking graphs: number of membrane-state inputs
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str]]:
        """``(label, value)`` pairs for a two-column Rich table."""
        kept = f", {len(self.not_folded)} BN kept" if self.not_folded else ""
        rows = [
            ("file", str(self.path)),
            ("format", self.format + (" (single-step graph)" if self.states else "")),
            ("model", f"{self.arch} {'SNN student' if self.kind == 'student' else 'ANN teacher'}"),
            ("parameters", f"{self.parameters:,}"),
            ("file size", f"{self.file_bytes / 2**20:.2f} MiB"),
            ("BatchNorm folded", f"{len(self.folded)}{kept}"),
        ]
        if self.states is not None:
            rows.append(("state inputs", f"{self.states} (v0..v{self.states - 1}, zeros at the start)"))
        rows.append(("verified at T", ", ".join(map(str, self.verified_T)) if self.verified_T else "ANN (no T)"))
        rows.append(("max abs diff", f"{self.max_abs_diff:.2e}"))
        rows += [("note", n) for n in self.notes]
        return rows


def default_out(checkpoint: Path, fmt: str) -> Path:
    """``runs/x/best.safetensors`` -> ``runs/x/best.onnx`` (``best.folded.safetensors``, ``best.nir``)."""
    return Path(checkpoint).with_name(Path(checkpoint).name.removesuffix(".safetensors") + SUFFIX[fmt])


def export_checkpoint(
    model: nn.Module,
    config: RunConfig,
    kind: str,
    fmt: str,
    out: Path,
    *,
    verify_T: int | None = None,
    meta: dict[str, str] | None = None,
    image_size: int | None = None,
) -> ExportSummary:
    """Export a loaded checkpoint's model, verify the result and write ``out`` only if it passes.

    Args:
        model: the network rebuilt from the checkpoint (SNN ``[T,B,C,H,W] -> [T,B,classes]`` or ANN).
        config: the checkpoint's run config.
        kind: ``"student"`` (SNN) or ``"teacher"`` (ANN).
        fmt: ``"safetensors"`` (BN folded), ``"onnx"`` or ``"nir"`` (students only).
        out: the file to write.
        verify_T: largest T checked (default: the training T); T = 1, 2 and this one are checked.
        meta: the checkpoint's metadata, kept in a folded safetensors file (default: built from ``config``).
        image_size: input height and width (default: the config's, else 32).

    Raises:
        SnnkdError: unknown format, wrong kind, missing optional package, a layer the format cannot
            express, or an exported model that does not reproduce the original.
    """
    spiking, Tmax = _check_export(config, kind, fmt, verify_T)
    stage = f"export {fmt} (fold, convert and verify)"
    progress.report(stage, 0, 2)
    out = Path(out)
    if out.is_dir():
        raise SnnkdError(f"--out {out} is a folder: give a file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    size = image_size or config.data.image_size or 32
    shape = (config.model.in_channels, size, size)
    Ts = sorted({1, min(2, Tmax), Tmax}) if spiking else None
    frames = verify.verify_inputs(shape, Tmax if spiking else 1, temporal=config.data.dataset in EVENT_DATASETS)
    net = copy.deepcopy(model).cpu().float().eval()
    functional.reset_net(net)
    folded, report = fold_bn(net)
    job = _Job(net, folded, frames, Ts or [1], spiking, config, kind, shape)
    progress.report(stage, 1, 2)
    notes: list[str] = []
    states = None
    if fmt == "safetensors":
        data, diff = job.safetensors(folded_metadata(meta or checkpoint_metadata(kind, config), report))
        atomic_write_bytes(out, data)
    elif fmt == "onnx":
        data, diff, states, notes = job.onnx()
        atomic_write_bytes(out, data)
    else:
        from snnkd_cli.export.nir import export_nir

        folded, diff, conversions = export_nir(net, frames, job.checked, out)
        notes += [f"converted exactly: {', '.join(conversions)}"] if conversions else []
        notes.append("LIF time constants are written with dt = 1e-4 s (spikingjelly's default): import with that dt")
    if spiking and diff > 1e-4:
        notes.append("diffs above 1e-4 come from spikes flipped by float rounding (near-threshold neurons)")
    progress.report(stage, 2, 2)
    return ExportSummary(
        fmt,
        kind,
        config.model.arch,
        out,
        out.stat().st_size,
        sum(p.numel() for p in folded.parameters()),
        report.folded,
        report.not_folded,
        Ts,
        diff,
        states,
        notes,
    )


def _check_export(config: RunConfig, kind: str, fmt: str, verify_T: int | None) -> tuple[bool, int]:
    """``(spiking, largest T checked)`` once the format, the kind and the optional packages are checked."""
    if fmt not in FORMATS:
        raise SnnkdError(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    if kind not in ("student", "teacher"):
        raise SnnkdError(f"unknown checkpoint kind '{kind}': expected student or teacher")
    spiking = kind == "student"
    if config.checkpoint_kind != kind:
        raise SnnkdError(f"the checkpoint says kind '{kind}' but its model is '{config.model.kind}'")
    if fmt == "nir" and not spiking:
        raise SnnkdError("NIR is for spiking students; export an ANN teacher with --format onnx or safetensors")
    for module in NEEDS[fmt]:
        require(module, f"{fmt.upper()} export")
    Tmax = config.train.T if verify_T is None else verify_T
    if Tmax < 1:
        raise SnnkdError(f"{option('verify_T')} must be >= 1, got {Tmax}")
    return spiking, Tmax


@dataclass
class _Job:
    """One export: the eager network, its BN-folded copy, the verification frames and the T checked."""

    net: nn.Module
    folded: nn.Module
    frames: torch.Tensor
    checked: list[int]
    spiking: bool
    config: RunConfig
    kind: str
    shape: tuple[int, int, int]

    def ref(self, m: nn.Module, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Running means ``[T, B, classes]`` (``[1, B, C]`` for an ANN) on the verification frames."""
        return verify.reference(m, self.frames, dtype, self.spiking)

    def safetensors(self, meta: dict[str, str]) -> tuple[bytes, float]:
        """The folded weights as a snnkd checkpoint, checked by rebuilding it; ``(bytes, max abs diff)``."""
        from safetensors.torch import load as st_load

        data = encode(self.folded.state_dict(), meta)
        rebuilt = build_folded(self.config)  # what load_exported does
        rebuilt.load_state_dict(st_load(data), strict=True)
        f64, ref, checked = torch.float64, self.ref, self.checked
        verify.check_close(
            ref(fold_bn(copy.deepcopy(self.net).double())[0], f64), ref(self.net, f64), checked, "BN folding"
        )
        verify.check_close(ref(rebuilt), ref(self.folded), checked, "the model rebuilt from the file")
        if not self.spiking:
            verify.check_close(ref(rebuilt), ref(self.net), checked, "the folded ANN", rel=1e-4)
        return data, verify.max_diff(ref(rebuilt), ref(self.net), checked)

    def onnx(self) -> tuple[bytes, float, int | None, list[str]]:
        """A single-step graph (students: state in and out) or the ANN graph, checked under onnxruntime;
        ``(bytes, max abs diff, state inputs, notes)``."""
        info = {"snnkd.kind": self.kind, "snnkd.config": self.config.to_json(), "snnkd.version": __version__}
        if not self.spiking:
            data = ann_to_onnx(self.folded, self.shape, info)
            return data, verify.check_ann(session(data), self.net, self.shape), None, []
        step = SingleStepSNN(self.folded, self.shape)
        data = snn_to_onnx(step, {**info, "snnkd.train_T": str(self.config.train.T)})
        sess = session(data)
        verify.check_structure(self.net, self.frames, self.checked)
        flips = verify.check_steps(sess, step, self.frames)
        diff = verify.max_diff(run_session(sess, self.frames), self.ref(self.net), self.checked)
        notes = [f"{flips} near-threshold spike flip(s) from float rounding in the step-by-step check"] if flips else []
        return data, diff, len(step.state_names), notes
