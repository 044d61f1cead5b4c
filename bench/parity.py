"""snnkd's defaults against the paper's training recipe, on the same data, budget and seeds.

Two sides per (seed, loss), each with its own ANN teacher:

* ``ref``: the paper's recipe as a plain loop written here (a second implementation of the loss and
  the schedule, not snnkd's engine): fp32, SGD momentum 0.9, the peak lr from start to finish of a
  per-epoch cosine (``CosineAnnealingLR``), no warm-up; teacher with weight decay on every parameter
  and the paper's kaiming (fan_out) init; student with no decay on BN parameters and biases; the
  paper's loss functions (per-step CE, per-step KD to the teacher and to the ensemble of correct
  steps) written from its code; the best validation epoch at the training T kept. The networks are
  snnkd's registry models (the same layers as the paper's: parameter counts and logits were checked
  against its code), the data snnkd's datasets with the ``--ref-augment`` policy.
* ``snnkd``: what a user gets: ``train-teacher`` and ``distill`` through the engine with the
  dataset's preset and only the options that define the budget (epochs, batch, T, image size, width,
  architectures, seed); ``--snnkd-set key=value`` adds options (a diagnosis run).

Every student is swept at T = 1..max-T in fp32 from its best checkpoint. The script writes
``OUT/results.json`` (every run; an interrupted run is continued: finished runs are kept) and the
tables (mean ± std over seeds per T, and the gap snnkd - ref) into ``--doc`` between
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` (``--marker``).

Usage: ``python bench/parity.py --dataset imagefolder --data-dir data/digits --image-size 16
--epochs 4 --batch-size 64 --T 4 --max-T 6 --seeds 0 1 2 --out runs/parity/digits --marker parity-digits``
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from snnkd_cli.checkpoint import model_from_checkpoint
from snnkd_cli.config import DataConfig, from_preset
from snnkd_cli.data import build_datasets
from snnkd_cli.data.loaders import make_loader
from snnkd_cli.evaluation.early_exit import DynamicOptions
from snnkd_cli.evaluation.evaluate import evaluate_checkpoint
from snnkd_cli.evaluation.sweep import sweep
from snnkd_cli.models.contract import reset_state, teacher_input, time_major
from snnkd_cli.models.registry import create_model
from snnkd_cli.train.run import seed_everything, train

_ablation = importlib.util.spec_from_file_location("ablation", Path(__file__).with_name("ablation.py"))
ablation = importlib.util.module_from_spec(_ablation)
_ablation.loader.exec_module(ablation)  # write_doc, markers: one marked-block writer for every bench doc

CPU = torch.device("cpu")
SIDES = ("ref", "ref-step", "snnkd")  # ref: the paper's loop (--ref-schedule, default per epoch); ref-step: per step
REF_SCHEDULE = {"ref-step": "step"}


# --------------------------------------------------------------------------- the paper's loss, plainly


def kd(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """KL(softmax(teacher/tau) || softmax(student/tau)) * tau^2, summed over classes, mean over the batch."""
    log_p = F.log_softmax(student / tau, dim=1)
    q = F.softmax(teacher / tau, dim=1)
    return F.kl_div(log_p, q, reduction="none").sum(1).mean() * tau**2


def correct_ensemble(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of the per-step logits ``s [T, B, C]`` over each sample's correct steps (zeros if none): ``[B, C]``."""
    mask = (s.argmax(2) == y[None]).unsqueeze(2).float()  # [T, B, 1]
    return (s * mask).sum(0) / (mask.sum(0) + 1e-8)


def ref_loss(s: torch.Tensor, z: torch.Tensor, y: torch.Tensor, loss: str, alpha: float, beta: float, tau: float):
    """The paper's objective for per-step logits ``s [T, B, C]``, teacher logits ``z [B, C]``, labels ``y [B]``."""
    T = s.shape[0]
    if loss == "standard-kd":
        mean = s.mean(0)
        return F.cross_entropy(mean, y) + alpha * kd(mean, z, tau)
    ce = sum(F.cross_entropy(s[t], y) for t in range(T)) / T
    if loss == "twce":
        return ce
    ens = correct_ensemble(s, y).detach()
    to_teacher = sum(kd(s[t], z, tau) for t in range(T)) / T
    to_self = sum(kd(s[t], ens, tau) for t in range(T)) / T
    return ce + alpha * to_teacher + beta * to_self


# --------------------------------------------------------------------------- the reference loop


def paper_init(model: nn.Module) -> None:
    """The paper's ANN initialisation: kaiming normal (fan_out, relu) convolutions, BN weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def ref_train(
    args: argparse.Namespace, seed: int, loss: str | None, teacher: nn.Module | None = None, schedule: str = ""
) -> dict:
    """Train the reference teacher (``loss`` None) or a student; return its accuracy and best model.

    ``schedule`` ``"epoch"`` (the paper's) or ``"step"``; default ``args.ref_schedule``."""
    schedule = schedule or args.ref_schedule
    seed_everything(seed)
    data = DataConfig(
        dataset=args.dataset, data_dir=args.data_dir, image_size=args.image_size, augment=args.ref_augment
    )
    data.synthetic_train, data.synthetic_val = args.synthetic_train, args.synthetic_val
    if args.frames:
        data.frames = args.frames
    tr, val, info = build_datasets(data)
    spiking = loss is not None
    arch = args.student_arch if spiking else args.teacher_arch
    kind = "snn" if spiking else "ann"
    kw = {"kind": kind, "in_channels": info.in_channels, "width": args.width}
    if spiking:
        kw.update(decay=args.decay, soft_reset=False)
    model = create_model(arch, info.num_classes, **kw)
    if not spiking:
        paper_init(model)
        groups = [{"params": list(model.parameters()), "weight_decay": args.weight_decay}]
    else:
        decay = [p for p in model.parameters() if p.ndim > 1]
        rest = [p for p in model.parameters() if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    lr = args.ref_lr if spiking else args.ref_teacher_lr
    epochs = args.epochs if spiking else args.teacher_epochs
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(tr, batch_size=args.batch_size, shuffle=True, generator=g, num_workers=0)
    if schedule == "step":  # cosine to 0 over every step
        total = epochs * len(loader)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total) / total)))
    else:  # the paper's: CosineAnnealingLR stepped once per epoch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=0)
    val_loader = make_loader(val, args.batch_size, train=False, workers=0, seed=0, device=CPU)
    best, best_state, train_acc = -1.0, None, 0.0
    for _epoch in range(epochs):
        model.train()
        correct = seen = 0
        for x, y in loader:
            opt.zero_grad()
            if spiking:
                reset_state(model)
                s = model(time_major(x, args.T, info.temporal))  # [T, B, C]
                with torch.no_grad():
                    z = teacher(teacher_input(x, info.temporal))  # [B, C]
                out = ref_loss(s, z, y, loss, args.alpha, args.beta, args.tau)
                pred = s.detach().mean(0)
            else:
                pred = model(teacher_input(x, info.temporal))
                out = F.cross_entropy(pred, y)
            out.backward()
            opt.step()
            if schedule == "step":
                sched.step()
            correct += int((pred.argmax(1) == y).sum())
            seen += len(y)
        if schedule == "epoch":
            sched.step()
        train_acc = 100.0 * correct / max(seen, 1)
        res = sweep(model, val_loader, args.T if spiking else None, temporal=info.temporal, spiking=spiking)
        top1 = res.at(args.T)["top1"] if spiking else res.rows[0]["top1"]
        if top1 > best:
            best, best_state = top1, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    out = {"best_top1": best, "train_acc_last": train_acc, "model": model}
    if spiking:
        res = sweep(model, val_loader, args.max_T, temporal=info.temporal, spiking=True)
        out["top1"] = [r["top1"] for r in res.rows]
    return out


# --------------------------------------------------------------------------- snnkd's side


_SETS = {"snnkd_set": "snnkd", "teacher_set": "snnkd's teacher", "student_set": "snnkd's student"}  # --*-set flags


def snnkd_overrides(args: argparse.Namespace, extra: Sequence[str] = ()) -> dict:
    """The options a user gives to fix the budget, ``--snnkd-set`` extras (both commands) and ``extra``."""
    kw = {"data_dir": args.data_dir, "image_size": args.image_size, "batch_size": args.batch_size, "width": args.width}
    kw |= {"synthetic_train": args.synthetic_train, "synthetic_val": args.synthetic_val}
    if args.frames:
        kw["frames"] = args.frames
    for item in [*args.snnkd_set, *extra]:
        key, _, value = item.partition("=")
        try:
            kw[key] = json.loads(value)  # numbers, true/false
        except ValueError:
            kw[key] = value
    return kw


def snnkd_teacher(args: argparse.Namespace, seed: int, out: Path, finished: bool = False) -> dict:
    """snnkd's teacher of ``seed``: from ``--teachers-from``, the one this ``--out`` finished earlier
    (``finished``: recorded in results.json with its checkpoint, so a continued grid adds students to the same
    teacher), else trained now."""
    path = Path(args.teachers_from) / out.name / "best.safetensors" if args.teachers_from else None
    if path is None and finished and (out / "best.safetensors").exists():
        path = out / "best.safetensors"
    if path is not None:  # a teacher trained by an earlier run of this script: evaluated, not retrained
        if not path.exists():
            raise SystemExit(f"--teachers-from: no {path}; run that seed there first or drop --teachers-from")
        _, res = evaluate_checkpoint(path)
        return {"best_top1": res.rows[0]["top1"], "path": str(path)}
    kw = snnkd_overrides(args, args.teacher_set)
    cfg = from_preset("teacher", args.dataset, epochs=args.teacher_epochs, arch=args.teacher_arch, seed=seed,
                      out=str(out), **kw)  # fmt: skip
    outcome = train(cfg, overwrite=True)  # a run cut short earlier is redone
    _, res = evaluate_checkpoint(outcome.best_path)
    return {"best_top1": res.rows[0]["top1"], "path": str(outcome.best_path)}


def snnkd_teacher_model(folder: Path) -> tuple[nn.Module, float]:
    """snnkd's teacher in ``folder`` (``best.safetensors``) as a module in eval mode, and its top-1, for the
    reference loop (``--ref-teachers-from``: both loops distil from the same teacher)."""
    path = folder / "best.safetensors"
    if not path.exists():
        raise SystemExit(f"--ref-teachers-from: no {path}; train that seed's snnkd teacher there first")
    ckpt, res = evaluate_checkpoint(path)  # the checkpoint it read: the file is not opened twice
    return model_from_checkpoint(ckpt).eval(), res.rows[0]["top1"]


def snnkd_student(args: argparse.Namespace, seed: int, loss: str, teacher: str, out: Path) -> dict:
    kw = snnkd_overrides(args, args.student_set)
    cfg = from_preset("distill", args.dataset, epochs=args.epochs, arch=args.student_arch, T=args.T, loss=loss,
                      seed=seed, teacher=teacher, out=str(out), **kw)  # fmt: skip
    outcome = train(cfg, overwrite=True)  # a run cut short earlier is redone
    _, res = evaluate_checkpoint(outcome.best_path, args.max_T, dynamic=DynamicOptions())
    last = outcome.fit.history[-1]
    top1 = [r["top1"] for r in res.rows]
    return {"top1": top1, "train_acc_last": last["train_acc"], "path": str(outcome.best_path),
            "exit": early_exit_record(res.dynamic, top1)}  # fmt: skip


def early_exit_record(dyn, top1: list[float]) -> dict:
    """What ``eval-sweep --dynamic`` with its defaults chose, against the best fixed T of the same sweep."""
    best = max(range(len(top1)), key=lambda t: (top1[t], -t))
    return {"top1": dyn.chosen["top1"], "mean_T": dyn.chosen["mean_T"], "threshold": dyn.chosen["threshold"],
            "held_out": dyn.calib_held_out, "best_fixed_top1": top1[best], "best_fixed_T": best + 1,
            "max_drop": dyn.max_drop}  # fmt: skip


# --------------------------------------------------------------------------- the grid and the tables


def run_grid(args: argparse.Namespace, results: dict, save) -> None:
    """Every (side, seed) teacher and (side, seed, loss) student not yet in ``results``; saved after each."""
    done = {(r["side"], r["seed"], r.get("loss")) for r in results["runs"]}
    done |= {(t["side"], t["seed"], None) for t in results.setdefault("teachers", [])}
    out = Path(args.out)
    for seed in args.seeds:
        for side in args.sides:
            if all((side, seed, loss) in done for loss in args.losses or [None]):
                continue
            t0 = time.perf_counter()
            if side.startswith("ref") and args.ref_teachers_from:
                t_model, t_top1 = snnkd_teacher_model(Path(args.ref_teachers_from) / f"snnkd-teacher-seed{seed}")
            elif side.startswith("ref"):
                teacher = ref_train(args, seed, None, schedule=REF_SCHEDULE.get(side, ""))
                t_model, t_top1 = teacher["model"], teacher["best_top1"]
            else:
                teacher = snnkd_teacher(args, seed, out / f"snnkd-teacher-seed{seed}", (side, seed, None) in done)
                t_model, t_top1 = teacher["path"], teacher["best_top1"]
            seconds = time.perf_counter() - t0
            if (side, seed, None) not in done:
                results["teachers"].append({"side": side, "seed": seed, "top1": t_top1, "seconds": seconds})
                save(results)
            print(f"{side} teacher seed {seed}: {t_top1:.2f}% ({seconds:.0f} s)", flush=True)
            for loss in args.losses:
                if (side, seed, loss) in done:
                    continue
                t0 = time.perf_counter()
                if side.startswith("ref"):
                    run = ref_train(args, seed, loss, t_model, schedule=REF_SCHEDULE.get(side, ""))
                    run.pop("model")
                else:
                    run = snnkd_student(args, seed, loss, t_model, out / f"snnkd-{loss}-seed{seed}")
                run.update(side=side, seed=seed, loss=loss, teacher_top1=t_top1, seconds=time.perf_counter() - t0)
                results["runs"].append(run)
                save(results)
                print(f"  {side} {loss:12s} seed {seed}: " + " ".join(f"{v:.1f}" for v in run["top1"]), flush=True)


def _stats(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f}"


def markdown(results: dict, marker: str) -> str:
    """Per loss: ref and snnkd rows (mean ± std over seeds at each T), their gap, and the teachers."""
    start, end = ablation.markers(marker)
    a = results["args"]
    runs = results["runs"]
    lines = [start, ""]
    seeds = sorted({r["seed"] for r in [*runs, *results.get("teachers", [])]})
    extra = "".join(f"; {who} with {', '.join(a[key])}" for key, who in _SETS.items() if a.get(key))
    lines.append(
        f"`{a['command']}` ({results['date']}, {results['machine']}, torch {results['torch']}, "
        f"{a['threads']} thread(s)): {a['dataset']} at {a['image_size'] or 'its'} px, teacher {a['teacher_arch']} "
        f"{a['teacher_epochs']} epochs, student {a['student_arch']} width {a['width']} {a['epochs']} epochs at "
        f"T={a['T']}, batch {a['batch_size']}, seeds {', '.join(map(str, seeds))}; ref augmentation "
        f"{a['ref_augment']}{extra}."
    )
    lines.append("")
    teachers = results.get("teachers", [])
    for side in SIDES:
        mine = sorted((t for t in teachers if t["side"] == side), key=lambda t: t["seed"])
        if mine:
            each = ", ".join(f"{t['top1']:.1f}" for t in mine)
            lines.append(f"- {side} teacher top-1: {_stats([t['top1'] for t in mine])} (seeds: {each})")
    if not runs:
        return "\n".join([*lines, "", end])
    lines.append("")
    max_T = max(len(r["top1"]) for r in runs)
    lines.append("| loss | side | teacher | " + " | ".join(f"T={t}" for t in range(1, max_T + 1)) + " | train acc |")
    lines.append("|---" * (max_T + 4) + "|")
    for loss in dict.fromkeys(r["loss"] for r in runs):
        by_side = {s: [r for r in runs if r["loss"] == loss and r["side"] == s] for s in SIDES}
        for side, mine in by_side.items():
            if not mine:
                continue
            cells = [_stats([r["top1"][t] for r in mine]) for t in range(max_T)]
            teacher = _stats([r["teacher_top1"] for r in mine])
            train_acc = _stats([r["train_acc_last"] for r in mine])
            lines.append(f"| {loss} | {side} | {teacher} | " + " | ".join(cells) + f" | {train_acc} |")
        ref = best_reference(by_side)
        if ref and by_side["snnkd"]:
            gap = gaps(by_side["snnkd"], by_side[ref])
            label = "ref" if ref == "ref" and not by_side["ref-step"] else f"the better ref ({ref})"
            lines.append(f"| {loss} | **snnkd - {label}** | | " + " | ".join(f"{g:+.1f}" for g in gap) + " | |")
    lines += ["", end]
    return "\n".join(lines)


def mean_curve(runs: list[dict]) -> list[float]:
    """Mean top-1 over seeds at each T."""
    return [statistics.fmean(r["top1"][t] for r in runs) for t in range(min(len(r["top1"]) for r in runs))]


def best_reference(by_side: dict[str, list[dict]]) -> str | None:
    """The reference side (``ref`` or ``ref-step``) with the higher mean over T and seeds; None without one."""
    refs = [s for s in ("ref", "ref-step") if by_side.get(s)]
    return max(refs, key=lambda s: statistics.fmean(mean_curve(by_side[s]))) if refs else None


def gaps(snnkd: list[dict], ref: list[dict]) -> list[float]:
    """snnkd's mean top-1 minus the reference's at each T."""
    return [a - b for a, b in zip(mean_curve(snnkd), mean_curve(ref), strict=False)]


# --------------------------------------------------------------------------- the suite of real sets


@dataclass(frozen=True)
class SuiteSet:
    """One real data set of the suite: what it is, how to make it offline, and its budget (parity options)."""

    what: str
    make: tuple[tuple[str, ...], ...]  # ("realdata", argv...) or ("preprocess", argv...); argv[1] is the made folder
    args: tuple[str, ...]  # parity options; "{root}" is --data-root


_IMAGES = ("--dataset", "imagefolder", "--batch-size", "64", "--T", "4", "--max-T", "6")
_LETTERS = ("--chars", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "--split", "random", "--variants", "1")


def _image_set(what: str, make: tuple[str, ...], folder: str, size: int, width: int = 64,
               epochs: int = 4) -> SuiteSet:  # fmt: skip
    """Images made by ``realdata.py make...`` in ``{root}/folder``: ``size`` px, student ``width``, ``epochs``
    for the teacher and the student alike."""
    data = ("--data-dir", f"{{root}}/{folder}", "--image-size", str(size), "--width", str(width),
            "--epochs", str(epochs))  # fmt: skip
    return SuiteSet(what, (("realdata", make[0], f"{{root}}/{folder}", *make[1:]),), (*_IMAGES, *data))


def _event_set(what: str, frames: int, size: int, width: int, epochs: int) -> SuiteSet:
    """The emulated digit recordings framed by ``preprocess-dvs`` at ``frames`` x ``size`` px, student at T=frames."""
    cache = f"{{root}}/digit-events-{frames}x{size}"
    make = (("realdata", "events", "{root}/digit-events", "--per-class", "100"),
            ("preprocess", "{root}/digit-events", cache, "--frames", str(frames), "--size", str(size), "--split",
             "random"))  # fmt: skip
    args = ("--dataset", "cifar10dvs", "--data-dir", cache, "--frames", str(frames), "--epochs", str(epochs),
            "--batch-size", "32", "--T", str(frames), "--max-T", str(frames), "--width", str(width))  # fmt: skip
    return SuiteSet(what, make, args)


SUITE = {
    "digits16": _image_set("UCI digits (scikit-learn), 10 classes, 1,438 / 359, at 16 px", ("images", "--size", "32"),
                           "digits", 16),
    "digits32": _image_set("UCI digits at 32 px, width 32", ("images", "--size", "32"), "digits", 32, 32),
    "glyphs-shift": _image_set(
        "printed digits, 10 classes, val typefaces absent in training (Debian fonts), 32 px, width 32, 12 epochs",
        ("glyphs",), "glyphs-digits", 32, 32, 12),
    "letters": _image_set("printed capitals, 26 classes, random split, 32 px, width 32, 12 epochs",
                          ("glyphs", *_LETTERS), "glyphs-letters", 32, 32, 12),
    "events8": _event_set("emulated DVS128 digit recordings, 8 frames at 32 px, width 32, T=8", 8, 32, 32, 4),
    "events-preset": _event_set(
        "the same recordings at the cifar10dvs preset's settings: 10 frames at 48 px, width 64, T=10", 10, 48, 64, 3),
}  # fmt: skip


def make_set(s: SuiteSet, root: Path) -> None:
    """Make the set's data under ``root`` unless it is there (bench/realdata.py, snnkd preprocess-dvs)."""
    import subprocess

    for tool, *argv in s.make:
        argv = [a.format(root=root) for a in argv]
        target = Path(argv[1])  # realdata.py KIND OUT ..., preprocess-dvs SRC CACHE ...
        if target.exists():
            continue
        cmd = [sys.executable, str(Path(__file__).with_name("realdata.py"))] if tool == "realdata" else [
            sys.executable, "-m", "snnkd_cli", "preprocess-dvs"]  # fmt: skip
        print("making", target, flush=True)
        subprocess.run([*cmd, *argv], check=True)


def suite_argv(args: argparse.Namespace) -> list[str]:
    """The options of a suite command that every set shares (seeds, sides, losses, ref lrs, threads, extras)."""
    out = ["--seeds", *map(str, args.seeds), "--sides", *args.sides, "--losses", *args.losses]
    out += ["--ref-lr", str(args.ref_lr), "--ref-teacher-lr", str(args.ref_teacher_lr)]
    for flag in _SETS:
        for item in getattr(args, flag):
            out += ["--" + flag.replace("_", "-"), item]
    return out + (["--threads", str(args.threads)] if args.threads else [])


def run_suite(args: argparse.Namespace, command: str) -> dict:
    """Every set of ``args.suite`` in turn (made if missing), each in ``OUT/<set>``; one table into ``--doc``."""
    root, out = Path(args.data_root), Path(args.out)
    done = {}
    for name in args.suite:
        s = SUITE[name]
        make_set(s, root)
        argv = [a.format(root=root) for a in s.args] + suite_argv(args) + ["--out", str(out / name), "--no-doc"]
        argv += ["--teachers-from", str(Path(args.teachers_from) / name)] if args.teachers_from else []
        argv += ["--ref-teachers-from", str(Path(args.ref_teachers_from) / name)] if args.ref_teachers_from else []
        print(f"== {name}: {s.what}", flush=True)
        done[name] = main(argv)
    table = suite_markdown(done, command, args.marker)
    print(table)
    if not args.no_doc:
        ablation.write_doc(Path(args.doc), table, args.marker)
        print(f"wrote {args.doc}")
    return done


def suite_markdown(done: dict[str, dict], command: str, marker: str) -> str:
    """One table: per set and loss, snnkd minus the better reference at every T (and snnkd's own figures)."""
    start, end = ablation.markers(marker)
    max_T = max((len(r["top1"]) for res in done.values() for r in res["runs"]), default=1)
    head = "| set | loss | ref | " + " | ".join(f"T={t}" for t in range(1, max_T + 1)) + " | mean |"
    lines = [start, "", f"`{command}`", "", "snnkd minus the better reference (mean over seeds):", "", head,
             "|---" * (max_T + 4) + "|"]  # fmt: skip
    mine_rows = []
    for name, res in done.items():
        for loss in dict.fromkeys(r["loss"] for r in res["runs"]):
            by_side = {s: [r for r in res["runs"] if r["loss"] == loss and r["side"] == s] for s in SIDES}
            ref = best_reference(by_side)
            pad = [""] * (max_T - len(by_side["snnkd"][0]["top1"] if by_side["snnkd"] else []))
            if by_side["snnkd"]:
                curve = mean_curve(by_side["snnkd"])
                cells = [_stats([r["top1"][t] for r in by_side["snnkd"]]) for t in range(len(curve))]
                mean = statistics.fmean(curve)
                mine_rows.append(f"| {name} | {loss} | " + " | ".join(cells + pad) + f" | {mean:.1f} | "
                                 + exit_cells(by_side["snnkd"]) + " |")  # fmt: skip
            if ref and by_side["snnkd"]:
                g = gaps(by_side["snnkd"], by_side[ref])
                lines.append(f"| {name} | {loss} | {ref} | " + " | ".join([f"{x:+.1f}" for x in g] + pad)
                             + f" | {statistics.fmean(g):+.1f} |")  # fmt: skip
    lines += ["", "snnkd's students (mean ± std over seeds):", "",
              "| set | loss | " + " | ".join(f"T={t}" for t in range(1, max_T + 1))
              + " | mean | early exit top-1 | mean T | exit - best fixed T |",
              "|---" * (max_T + 6) + "|", *mine_rows, "",
              "Early exit: `eval-sweep --dynamic` at its defaults (confidence rule, `--max-drop 0.5`, the calibration "
              "slice as the student was trained: held out or seen), against the best fixed T of the same sweep.", "",
              end]  # fmt: skip
    return "\n".join(lines)


def exit_cells(runs: list[dict]) -> str:
    """The early-exit cells of a suite row: chosen top-1, mean T and its gap to the best fixed T (mean ± std)."""
    runs = [r for r in runs if r.get("exit")]
    if not runs:
        return " |  | "
    gap = [r["exit"]["top1"] - r["exit"]["best_fixed_top1"] for r in runs]
    return " | ".join([_stats([r["exit"]["top1"] for r in runs]), _stats([r["exit"]["mean_T"] for r in runs]),
                       _stats(gap)])  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="synthetic", help="any snnkd dataset (synthetic, imagefolder, cifar10dvs...)")
    ap.add_argument("--data-dir", default="./data", help="data folder (imagefolder: train/ and val/; DVS: the cache)")
    ap.add_argument("--image-size", type=int, default=None, help="image size (default: the dataset's)")
    ap.add_argument("--frames", type=int, default=None, help="event data: frames per sample of the cache")
    ap.add_argument("--synthetic-train", type=int, default=2000, help="synthetic data: training samples")
    ap.add_argument("--synthetic-val", type=int, default=500, help="synthetic data: validation samples")
    ap.add_argument("--epochs", type=int, default=4, help="student epochs (both sides)")
    ap.add_argument("--teacher-epochs", type=int, default=None, help="teacher epochs (default: --epochs)")
    ap.add_argument("--batch-size", type=int, default=64, help="batch size (both sides)")
    ap.add_argument("--T", type=int, default=4, help="training timesteps")
    ap.add_argument("--max-T", type=int, default=6, help="sweep T = 1..max-T")
    ap.add_argument("--teacher-arch", default="resnet18", help="ANN teacher (snnkd registry name)")
    ap.add_argument("--student-arch", default="resnet18", help="spiking student (snnkd registry name)")
    ap.add_argument("--width", type=int, default=64, help="base channel width (the paper's ResNets: 64)")
    ap.add_argument(
        "--losses", nargs="*", default=["full-range", "standard-kd"], help="student losses (none: teachers only)"
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (each side, each loss)")
    ap.add_argument("--sides", nargs="+", default=["ref", "snnkd"], choices=SIDES,
                    help="what to run (ref-step: the reference with its cosine stepped every step)")  # fmt: skip
    ap.add_argument("--ref-augment", default=None,
                    help="the reference's augmentation (default: snnkd's auto for the data and --epochs)")  # fmt: skip
    ap.add_argument("--ref-schedule", default="epoch", choices=["epoch", "step"],
                    help="reference cosine stepped per epoch (paper) or per step (snnkd's)")  # fmt: skip
    ap.add_argument("--ref-lr", type=float, default=0.1, help="reference student lr (paper: 0.1)")
    ap.add_argument("--ref-teacher-lr", type=float, default=0.1, help="reference teacher lr (paper: 0.1)")
    ap.add_argument("--weight-decay", type=float, default=5e-4, help="reference weight decay (paper: 5e-4)")
    ap.add_argument("--decay", type=float, default=0.5, help="reference LIF decay (paper: 0.5)")
    ap.add_argument("--alpha", type=float, default=0.2, help="reference KD weight (paper: 0.2)")
    ap.add_argument("--beta", type=float, default=0.5, help="reference self-distillation weight (paper: 0.5)")
    ap.add_argument("--tau", type=float, default=3.0, help="reference temperature (paper: 3)")
    ap.add_argument("--snnkd-set", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra snnkd config field for both commands (precision=fp32)")  # fmt: skip
    ap.add_argument("--teacher-set", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra snnkd config field for train-teacher only (lr=0.02)")  # fmt: skip
    ap.add_argument("--student-set", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra snnkd config field for distill only (schedule=cosine-step)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--teachers-from", default=None, metavar="DIR",
                    help="snnkd's teachers: DIR/snnkd-teacher-seedS/best.safetensors of an earlier --out (with "
                         "--suite: DIR/<set>/...), used as they are; the reference sides train theirs")  # fmt: skip
    ap.add_argument("--ref-teachers-from", default=None, metavar="DIR",
                    help="the reference sides distil from snnkd's teachers in DIR (as --teachers-from; with "
                         "--suite: DIR/<set>/...), not their own: the two student loops from one teacher")  # fmt: skip
    ap.add_argument("--out", default="runs/parity", help="checkpoints and results.json (continued if present)")
    ap.add_argument("--doc", default="docs/results.md", help="markdown file whose marked block is rewritten")
    ap.add_argument("--marker", default="parity", help="name of the block in --doc (<!-- NAME:start -->)")
    ap.add_argument("--no-doc", action="store_true", help="only results.json")
    ap.add_argument("--suite", nargs="*", default=None, choices=list(SUITE), metavar="SET",
                    help=f"run the suite of real sets (all, or the named: {', '.join(SUITE)}) with their own data "
                    "and budgets; --seeds, --sides, --losses, --snnkd-set and --threads apply to each")  # fmt: skip
    ap.add_argument("--data-root", default="data", help="--suite: where the sets are made and read")
    args = ap.parse_args(argv)
    if args.suite is not None:
        args.suite = args.suite or list(SUITE)
    args.teacher_epochs = args.teacher_epochs or args.epochs
    if args.ref_augment is None:
        size = args.image_size or 32
        from snnkd_cli.data.transforms import default_augment

        args.ref_augment = default_augment(args.dataset, size, args.epochs)  # snnkd's auto for this budget
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.suite is not None:
        return run_suite(args, "python bench/parity.py " + " ".join(sys.argv[1:] if argv is None else argv))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": []}
    command = "python bench/parity.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results.update(
        args={**vars(args), "command": command, "threads": torch.get_num_threads()},
        torch=torch.__version__,
        machine=platform.processor() or platform.machine(),
        date=time.strftime("%Y-%m-%d"),
    )

    def save(res: dict) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        tmp.replace(path)

    t0 = time.perf_counter()
    run_grid(args, results, save)
    results["seconds"] = results.get("seconds", 0) + time.perf_counter() - t0
    save(results)
    table = markdown(results, args.marker)
    print(table)
    if not args.no_doc:
        ablation.write_doc(Path(args.doc), table, args.marker)
        print(f"wrote {args.doc}")
    return results


if __name__ == "__main__":
    main()
