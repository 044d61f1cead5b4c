"""An ANN checkpoint's top-1 as saved and with its BatchNorm statistics re-estimated on the training images.

    python bench/bn_reestimate.py CKPT --data-dir DIR --image-size N [--threads 2]

A diagnosis of short runs: eval-mode BatchNorm uses running statistics (momentum 0.1) that lag weights which
moved fast. Here every BatchNorm's statistics are reset and re-estimated as a plain mean over one pass of
the training images (no augmentation, no gradients), then the validation split is evaluated again.
Image folders only (``--dataset imagefolder``).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from snnkd_cli.checkpoint import load_checkpoint, model_from_checkpoint
from snnkd_cli.config import DataConfig
from snnkd_cli.data import build_datasets
from snnkd_cli.data.loaders import make_loader
from snnkd_cli.evaluation.sweep import sweep

CPU = torch.device("cpu")


def top1(model: nn.Module, loader) -> float:
    return sweep(model, loader, None, temporal=False, spiking=False).rows[0]["top1"]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt", help="an ANN teacher checkpoint (best.safetensors)")
    ap.add_argument("--data-dir", required=True, help="the image folder it was trained on")
    ap.add_argument("--image-size", type=int, required=True, help="the image size it was trained at")
    ap.add_argument("--batch-size", type=int, default=64, help="batch of the passes (default 64)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = model_from_checkpoint(load_checkpoint(args.ckpt))
    data = DataConfig(dataset="imagefolder", data_dir=args.data_dir, image_size=args.image_size, augment="none")
    tr, val, _ = build_datasets(data)
    val_loader = make_loader(val, args.batch_size, train=False, workers=0, seed=0, device=CPU)
    saved = top1(model, val_loader)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain mean over the pass
    model.train()
    with torch.no_grad():
        for x, _ in make_loader(tr, args.batch_size, train=False, workers=0, seed=0, device=CPU):
            model(x)
    model.eval()
    out = {"as_saved": saved, "bn_reestimated": top1(model, val_loader)}
    print(f"top-1 as saved {out['as_saved']:.2f}%, with BatchNorm statistics re-estimated {out['bn_reestimated']:.2f}%")
    return out


if __name__ == "__main__":
    main()
