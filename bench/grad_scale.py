"""Gradient scale of every loss term on the head outputs: how strongly each term pulls a student (run by hand).

A loss value says little about how much a term trains the student; its gradient does. For a student checkpoint, a
teacher and a dataset, this prints, per term of ultrald's criterion (mean over a few training batches), the loss and
the norm of its gradient w.r.t. the DFL logits ('boxes') and the class logits ('scores'). Use it to set the
distillation weights against Ultralytics' own terms on new data:

    python bench/grad_scale.py runs/plain/weights/last.pt teacher.pt data.yaml imgsz=128 ld=1.5 ld_temp=10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

if __package__ in {None, ""}:  # run as a script (python bench/X.py): import its package, the repository's bench/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def grad_scale(student: str, teacher: str, data: str, batches: int = 4, **overrides) -> dict[str, tuple]:
    """Return {term: (loss, |d/d boxes|, |d/d scores|)} averaged over `batches` training batches."""
    import torch
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.nn.tasks import load_checkpoint

    from bench.synthetic import resolve_data
    from ultrald.cfg import check_ld_args, ld_cfg
    from ultrald.distill.criterion import LDDetectionLoss, LDOBBLoss
    from ultrald.distill.teacher import TeacherHead, head_task, load_teacher

    args = SimpleNamespace(**ld_cfg({**overrides, "mode": "train"}))
    check_ld_args(args)
    torch.manual_seed(0)
    model = load_checkpoint(student)[0].float().train()
    for p in model.parameters():
        p.requires_grad_(True)
    model.args = args
    obb = head_task(model) == "obb"
    criterion = (LDOBBLoss if obb else LDDetectionLoss)(model, TeacherHead(load_teacher(teacher)))
    info = check_det_dataset(resolve_data(data))
    dataset = build_yolo_dataset(args, info["train"], args.batch, info, mode="train", stride=32)
    sums: dict[str, list[float]] = {}
    for _, batch in zip(range(batches), build_dataloader(dataset, args.batch, 0, shuffle=True)):
        batch["img"] = batch["img"].float() / 255
        preds = model(batch["img"])
        loss, items = criterion.loss(preds, batch)
        for i, name in enumerate(items):
            grads = torch.autograd.grad(
                loss[i], [preds["boxes"], preds["scores"]], retain_graph=True, allow_unused=True
            )
            row = [float(items[name])] + [float(g.norm()) if g is not None else 0.0 for g in grads]
            sums[name] = [a + b for a, b in zip(sums.get(name, [0.0] * 3), row)]
    return {k: tuple(v / batches for v in row) for k, row in sums.items()}


def main(argv: list[str] | None = None) -> int:
    """Print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("student", help="student checkpoint, e.g. a plain run's last.pt")
    p.add_argument("teacher", help="teacher checkpoint")
    p.add_argument("data", help="dataset yaml (or 'shapes')")
    p.add_argument("overrides", nargs="*", help="key=value train/distillation keys (imgsz=, batch=, ld=, ...)")
    p.add_argument("--batches", type=int, default=4)
    a = p.parse_args(argv)
    from ultralytics.cfg import parse_key_value_pair

    overrides = dict(parse_key_value_pair(kv) for kv in a.overrides)
    rows = grad_scale(a.student, a.teacher, a.data, a.batches, **overrides)
    print("| term | loss | grad norm, DFL logits | grad norm, class logits |\n|---|---:|---:|---:|")
    for name, (loss, gb, gs) in rows.items():
        print(f"| {name} | {loss:.4f} | {gb:.4f} | {gs:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
