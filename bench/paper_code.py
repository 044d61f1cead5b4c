#!/usr/bin/env python
"""Run the paper's plain recipe (Intelli-Chip-Lab/snn_temporal_decoupling_distillation)
on an ImageFolder, on CPU, with the paper's own modules.

Teacher: model/ResNet_ANN.py, trained with experiment/cifar/ann.py's train()/test()
          and the optimizer / scheduler set-up of ann.py's main().
Student: model/resnet.py (spiking, multi-step 'm'), trained with
          experiment/cifar/main.py's train()/test() ("full-range") and the
          optimizer / scheduler set-up of main.py's main(); "standard-kd" uses a
          copy of main.py's train() whose only change is the loss, written with
          the paper's kd_loss helper (model/layer.py).
Normalisation: ImageNet mean/std (0.485,0.456,0.406)/(0.229,0.224,0.225).

It runs in a venv of its own, not snnkd's: the paper's code needs spikingjelly 0.0.0.0.14
(``python -m venv paper-venv && paper-venv/bin/pip install torch torchvision spikingjelly==0.0.0.0.14``),
and a checkout of the paper's repository named by ``PAPER_CODE`` (default /work/paper-code).
No file of the paper's code is changed; two shims (below) are applied in memory.
Used for the comparison in docs/results.md ("The reference loop against the paper's released code").

Usage:
  OMP_NUM_THREADS=1 PAPER_CODE=DIR paper-venv/bin/python bench/paper_code.py \
      --data DIR [--image-size 32] [--epochs N] [--teacher-epochs N] [--batch-size 64] \
      [--seed 60] [--T 4] [--sweep-T 6] [--loss full-range|standard-kd] \
      [--alpha 0.2] [--beta 0.5] [--teacher-arch resnet18] [--student-arch resnet18] \
      [--teacher-lr 0.02] [--lr 0.1] [--wd 5e-4] [--decay 0.5] [--threads 1] \
      [--augment crop|crop-flip] [--crop-padding 4] [--workers 0] [--out results.json]
"""

import argparse
import copy
import json
import os
import sys
import time

PAPER_CODE = os.environ.get("PAPER_CODE", "/work/paper-code")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="The paper's plain recipe on an ImageFolder (CPU).")
    p.add_argument("--data", required=True, help="DIR with DIR/train/<class>/* and DIR/val/<class>/*")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1, help="student epochs")
    p.add_argument("--teacher-epochs", type=int, default=None, help="teacher epochs (default: --epochs)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=60, help="paper's config default is 60")
    p.add_argument("--T", type=int, default=4, help="training time steps")
    p.add_argument("--sweep-T", type=int, default=6, help="evaluate T'=1..sweep-T")
    p.add_argument("--loss", choices=("full-range", "standard-kd"), default="full-range")
    p.add_argument("--alpha", type=float, default=0.2, help="teacher-KD weight (README: 0.2)")
    p.add_argument("--beta", type=float, default=0.5, help="self-KD weight, full-range only (README: 0.5)")
    p.add_argument("--teacher-arch", default="resnet18", help="model/ResNet_ANN.py: resnet18|resnet34|...")
    p.add_argument("--student-arch", default="resnet18", help="model/__init__.py: resnet18|resnet19")
    p.add_argument("--teacher-lr", type=float, default=0.02)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--decay", type=float, default=0.5, help="LIF decay (tau = 1/(1-decay))")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--augment", choices=("crop", "crop-flip"), default="crop-flip")
    p.add_argument(
        "--crop-padding",
        type=int,
        default=4,
        help="RandomCrop padding in px (the paper's CIFAR recipe: 4; snnkd's crop policy: size // 8)",
    )
    p.add_argument("--out", default="results.json")
    a = p.parse_args(argv)
    if a.teacher_epochs is None:
        a.teacher_epochs = a.epochs
    if a.sweep_T < 1 or a.T < 1:
        p.error("--T and --sweep-T must be >= 1")
    a.data = os.path.abspath(a.data)
    a.out = os.path.abspath(a.out)
    return a


def main(argv=None):
    cli = parse_args(argv)
    sys.path.insert(0, PAPER_CODE)

    import experiment.cifar.ann as paper_ann  # train()/test() of the teacher
    import experiment.cifar.main as paper_main  # train()/test() of the student
    import model as paper_models  # model/__init__.py: resnet18, resnet19, ...
    import spikingjelly
    import torch
    import torchvision
    from model import ResNet_ANN  # the paper's ANN teacher
    from model.layer import kd_loss  # paper's KD helper
    from spikingjelly.activation_based import functional
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms
    from util import AverageMeter, Bar, accuracy, bptt_model_setting, setup_seed, split_params, warp_decay

    # Shim (no file is changed): ann.py's train()/test() call AverageMeter('Time', ':6.3f')
    # but util/misc.py's AverageMeter.__init__ takes no argument (TypeError in the repo as
    # released). Give ann.py a factory that drops the (name, fmt) display arguments.
    paper_ann.AverageMeter = lambda *a, **k: AverageMeter()

    # Shim (no file is changed): main.py's and ann.py's train()/test() call
    # accuracy(..., topk=(1, 5)), which raises in torch.topk when there are fewer than 5
    # classes. Clamp k to the number of classes; top-1 (the only number used) is unchanged.
    def accuracy_clamped(output, target, topk=(1,)):
        return accuracy(output, target, topk=tuple(min(k, output.size(1)) for k in topk))

    paper_ann.accuracy = accuracy_clamped
    paper_main.accuracy = accuracy_clamped

    torch.set_num_threads(cli.threads)
    seed = setup_seed(cli.seed)

    # ---------------- data ----------------
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet mean/std
    s = cli.image_size
    tr = [transforms.Resize((s, s)), transforms.RandomCrop(s, padding=cli.crop_padding)]
    if cli.augment == "crop-flip":
        tr.append(transforms.RandomHorizontalFlip())
    tr += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    va = [transforms.Resize((s, s)), transforms.ToTensor(), transforms.Normalize(mean, std)]
    train_data = datasets.ImageFolder(os.path.join(cli.data, "train"), transform=transforms.Compose(tr))
    val_data = datasets.ImageFolder(os.path.join(cli.data, "val"), transform=transforms.Compose(va))
    if train_data.classes != val_data.classes:
        raise SystemExit(f"train and val class folders differ: {train_data.classes} vs {val_data.classes}")
    num_class = len(train_data.classes)
    train_ldr = DataLoader(train_data, batch_size=cli.batch_size, shuffle=True, num_workers=cli.workers)
    val_ldr = DataLoader(val_data, batch_size=cli.batch_size, shuffle=False, num_workers=cli.workers)
    print(
        f"data: {len(train_data)} train / {len(val_data)} val images, {num_class} classes, "
        f"size {s}, augment {cli.augment}, ImageNet mean/std",
        flush=True,
    )

    # Namespace handed to the paper's train()/test() (they read .dataset, .T, .alpha, .beta).
    pargs = argparse.Namespace(dataset="imagefolder", T=cli.T, alpha=cli.alpha, beta=cli.beta)
    evaluator = torch.nn.CrossEntropyLoss()

    # ---------------- teacher: experiment/cifar/ann.py ----------------
    t_model = ResNet_ANN.__dict__[cli.teacher_arch](num_classes=num_class, in_channels=3)
    t_params = [{"params": t_model.parameters(), "weight_decay": cli.wd}]  # ann.py:149-151
    t_opt = torch.optim.SGD(t_params, lr=cli.teacher_lr, momentum=0.9)  # ann.py:154
    t_sched = torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, eta_min=0, T_max=cli.teacher_epochs)
    t_best, t_best_epoch, t_best_state = 0.0, -1, None
    teacher_epoch_times = []
    for epoch in range(cli.teacher_epochs):
        t0 = time.time()
        tr_acc, tr_loss = paper_ann.train(train_ldr, t_opt, t_model, evaluator, pargs)
        t_sched.step()
        v_acc, v_loss = paper_ann.test(val_ldr, t_model, evaluator, pargs)
        if v_acc > t_best or t_best_state is None:  # ann.py keeps the best val epoch (strict >)
            t_best, t_best_epoch = v_acc, epoch
            t_best_state = copy.deepcopy(t_model.state_dict())
        teacher_epoch_times.append(time.time() - t0)
        print(
            f"teacher epoch {epoch + 1}/{cli.teacher_epochs}: train loss {tr_loss:.4f} acc {tr_acc:.2f} | "
            f"val loss {v_loss:.4f} acc {v_acc:.2f} | best {t_best:.2f}@{t_best_epoch + 1} | "
            f"{teacher_epoch_times[-1]:.1f}s",
            flush=True,
        )
    t_model.load_state_dict(t_best_state)  # main.py:214-216 loads state['best_net']
    t_model.eval()

    # ---------------- student: experiment/cifar/main.py ----------------
    setup_seed(cli.seed)  # the paper trains the student in its own process, seeded by init_config
    kwargs_spikes = {
        "v_reset": 0.0,
        "thresh": 1.0,
        "decay": warp_decay(cli.decay),
        "detach_reset": False,
    }  # main.py:182-183
    model = getattr(paper_models, cli.student_arch)(num_classes=num_class, **kwargs_spikes)
    bptt_model_setting(model, time_step=cli.T, step_mode="m")  # main.py:192
    groups = split_params(model, ([], [], []))  # fresh lists: split_params' default is a shared mutable
    params = [
        {"params": groups[1], "weight_decay": cli.wd},
        {"params": groups[2], "weight_decay": 0},
    ]  # main.py:196-200
    opt = torch.optim.SGD(params, lr=cli.lr, momentum=0.9)  # main.py:203
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, eta_min=0, T_max=cli.epochs)  # main.py:221

    def train_standard_kd(train_ldr, optimizer, model, t_model, evaluator, args):
        """main.py's train() (multi-step branch) with the loss replaced by
        CE(mean_t logits) + alpha * kd_loss(mean_t logits, teacher, 3)."""
        model.train()
        t_model.eval()
        losses, top1 = AverageMeter(), AverageMeter()
        bar = Bar("Processing", max=len(train_ldr))
        for _idx, (ptns, labels) in enumerate(train_ldr):
            device = next(model.parameters()).device
            ptns, labels = ptns.to(device), labels.to(device)
            optimizer.zero_grad()
            functional.reset_net(model)
            in_data, _ = torch.broadcast_tensors(ptns, torch.zeros((args.T,) + ptns.shape))
            in_data = in_data.reshape(-1, *in_data.shape[2:])
            output = model(in_data)
            with torch.no_grad():
                t_avg_fr = t_model(ptns)
            avg_fr = output.mean(dim=0)
            loss = evaluator(avg_fr, labels) + args.alpha * kd_loss(avg_fr, t_avg_fr.detach(), 3)
            loss.backward()
            optimizer.step()
            prec1, _ = accuracy(avg_fr.data, labels.data, topk=(1, 1))
            losses.update(loss.data.item(), ptns.size(0))
            top1.update(prec1.item(), ptns.size(0))
            bar.next()
        bar.finish()
        return top1.avg, losses.avg

    student_train = paper_main.train if cli.loss == "full-range" else train_standard_kd
    best_acc, best_epoch, best_state = 0.0, -1, None
    epoch_times, val_accs = [], []
    train_acc = float("nan")
    for epoch in range(cli.epochs):
        t0 = time.time()
        train_acc, train_loss = student_train(train_ldr, opt, model, t_model, evaluator, pargs)
        sched.step()
        val_acc, val_loss = paper_main.test(val_ldr, model, t_model, evaluator, pargs)
        if val_acc > best_acc or best_state is None:  # main.py:229 (strict >)
            best_acc, best_epoch = val_acc, epoch
            best_state = copy.deepcopy(model.state_dict())
        epoch_times.append(time.time() - t0)
        val_accs.append(val_acc)
        print(
            f"student epoch {epoch + 1}/{cli.epochs} [{cli.loss}] lr {sched.get_last_lr()[0]:.5f}: "
            f"train loss {train_loss:.4f} acc {train_acc:.2f} | val@T={cli.T} loss {val_loss:.4f} "
            f"acc {val_acc:.2f} | best {best_acc:.2f}@{best_epoch + 1} | {epoch_times[-1]:.1f}s",
            flush=True,
        )

    # ---------------- full-range sweep of the best-epoch student ----------------
    model.load_state_dict(best_state)
    model.eval()
    Ts = cli.sweep_T
    bptt_model_setting(model, time_step=Ts, step_mode="m")
    correct = [0] * (Ts + 1)
    n = 0
    with torch.no_grad():
        for ptns, labels in val_ldr:
            functional.reset_net(model)
            in_data, _ = torch.broadcast_tensors(ptns, torch.zeros((Ts,) + ptns.shape))  # main.py:136-137
            in_data = in_data.reshape(-1, *in_data.shape[2:])
            output = model(in_data)  # [Ts, B, C]
            csum = output.cumsum(dim=0)
            for t in range(1, Ts + 1):
                correct[t] += (csum[t - 1] / t).argmax(dim=1).eq(labels).sum().item()
            n += labels.size(0)
    bptt_model_setting(model, time_step=cli.T, step_mode="m")
    student = {str(t): 100.0 * correct[t] / n for t in range(1, Ts + 1)}
    print(
        f"sweep (best epoch {best_epoch + 1}): " + " ".join(f"T'={t}:{student[str(t)]:.2f}" for t in range(1, Ts + 1)),
        flush=True,
    )
    if Ts >= cli.T and abs(student[str(cli.T)] - best_acc) > 1e-6:
        print(
            f"WARNING: sweep acc at T'={cli.T} ({student[str(cli.T)]:.4f}) != paper test() best ({best_acc:.4f})",
            flush=True,
        )

    res = {
        "teacher_top1": t_best,
        "student": student,
        "train_acc_last": train_acc,
        "epoch_times": epoch_times,
        "units": "accuracy in percent (0-100), the paper's accuracy() convention",
        "teacher_best_epoch": t_best_epoch + 1,
        "teacher_epoch_times": teacher_epoch_times,
        "student_best_epoch": best_epoch + 1,
        "student_best_val_at_T": best_acc,
        "student_val_at_T_per_epoch": val_accs,
        "config": {
            **vars(cli),
            "seed": seed,
            "normalisation": "imagenet",
            "num_classes": num_class,
            "classes": train_data.classes,
        },
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "spikingjelly": getattr(spikingjelly, "__version__", "0.0.0.0.14"),
            "python": sys.version.split()[0],
            "paper_code": PAPER_CODE,
        },
    }
    os.makedirs(os.path.dirname(cli.out) or ".", exist_ok=True)
    with open(cli.out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {cli.out}", flush=True)


if __name__ == "__main__":
    main()
