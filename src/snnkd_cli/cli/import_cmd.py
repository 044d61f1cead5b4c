"""``snnkd import``: a state dict saved by other code (the paper's released code, torchvision, timm) as a snnkd
checkpoint. Registered on the app by :mod:`snnkd_cli.cli.app`; the work is :mod:`snnkd_cli.convert.importer`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from snnkd_cli.cli._training import reset_choice
from snnkd_cli.cli.options import DataDir, ImageSize


def import_command(
    src: Annotated[
        Path,
        typer.Argument(
            help="A .pth/.pt state dict (the paper's {'best_net': ...}, torchvision, timm; read weights-only) "
            "or a plain .safetensors one."
        ),
    ],
    arch: Annotated[
        str,
        typer.Option(
            help="snnkd architecture to load it into: resnet18, resnet19, resnet34, preact_resnet34, tv_resnet18, "
            "tv_resnet34, tv_resnet50 ('snnkd models'). Width, stem, input channels and classes come from the weights."
        ),
    ],
    kind: Annotated[str, typer.Option(help="snn (a spiking student) or ann (an ANN teacher).")],
    dataset: Annotated[
        str,
        typer.Option(
            help="The dataset it was trained on (read, as training does, for the checkpoint's data settings and "
            "class names): cifar10, cifar100, imagenet, imagefolder, cifar10dvs, synthetic, synthetic-dvs."
        ),
    ],
    out: Annotated[Path, typer.Option(help="The snnkd checkpoint to write (.safetensors).")],
    T: Annotated[
        int | None, typer.Option("--T", "-T", help="A student's timesteps (default: the dataset's recipe).")
    ] = None,
    data_dir: DataDir = Path("./data"),
    image_size: ImageSize = None,
    decay: Annotated[
        float | None, typer.Option(help="A student's LIF leak (default: the recipe's; the paper: 0.5, ImageNet 0.2).")
    ] = None,
    soft_reset: Annotated[
        bool, typer.Option("--soft-reset", help="A student's neurons reset by subtraction (the ImageNet recipe).")
    ] = False,
    hard_reset: Annotated[bool, typer.Option("--hard-reset", help="A student's neurons reset to 0 (CIFAR, DVS).")] = (
        False
    ),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
) -> None:
    """Import weights trained elsewhere (the paper's code, torchvision, timm) as a snnkd checkpoint."""
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
