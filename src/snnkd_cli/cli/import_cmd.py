"""``snnkd import``: a state dict saved by other code (the paper's released code, torchvision, timm) as a snnkd
checkpoint. Registered on the app by :mod:`snnkd_cli.cli.app`; the work is :mod:`snnkd_cli.convert.importer`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from snnkd_cli.cli._training import reset_choice
from snnkd_cli.cli.options import DataDir, Dataset, Decay, HardReset, ImageSize, ImportArch, SoftReset


def import_command(
    src: Annotated[
        Path,
        typer.Argument(
            help="A .pth/.pt state dict (the paper's {'best_net': ...}, torchvision, timm; read weights-only) "
            "or a plain .safetensors one."
        ),
    ],
    arch: ImportArch,
    kind: Annotated[str, typer.Option(help="snn (a spiking student) or ann (an ANN teacher).")],
    dataset: Dataset,
    out: Annotated[Path, typer.Option(help="The snnkd checkpoint to write (.safetensors).")],
    T: Annotated[
        int | None, typer.Option("--T", "-T", help="A student's timesteps (default: the dataset's recipe).")
    ] = None,
    data_dir: DataDir = Path("./data"),
    image_size: ImageSize = None,
    decay: Decay = None,
    soft_reset: SoftReset = False,
    hard_reset: HardReset = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
) -> None:
    """Import weights trained elsewhere as a snnkd checkpoint.

    A state dict saved by the paper's code, torchvision or timm becomes a checkpoint every command reads.

    --dataset names the data it was trained on: the checkpoint takes its data settings and class names from it.
    """
    from snnkd_cli.cli.commands import run_import

    run_import(
        src,
        out,
        arch=arch,
        kind=kind,
        dataset=dataset,
        T=T,
        data_dir=data_dir,
        image_size=image_size,
        decay=decay,
        soft_reset=reset_choice(soft_reset, hard_reset),
        overwrite=overwrite,
    )
