"""Where a distillation step's time goes: student forward+backward, teacher forward, ultrald's own terms.

    python bench/cost.py TEACHER.pt [key=value ...]      # e.g. data=digits imgsz=160 model=yolov8-w125.yaml

Trains one short epoch of `LDTrainer` (the `shapes` recipe unless keys say otherwise) under torch's profiler and
sums the time of the labelled regions (`torch.profiler.record_function` in ultrald's criterion and teacher):

    ultrald teacher forward    the frozen teacher on the batch (inference mode, the trainer's autocast)
    ultralytics loss           Ultralytics' own criterion: TAL assignment, box, cls and DFL losses
    ultrald terms              everything ultrald adds to the criterion, of which
      ultrald VLR region         the virtual anchors' IoU/DIoU, ATSS thresholds and VLR weights
      ultrald LD                 the edge-distribution (or box-level) terms on the main region and VLR
      ultrald KD                 classification KD

The rest of a step (student forward, backward, optimizer, preprocessing) is the step's wall time minus those. The
profiler's own overhead inflates every part a little; the shares are what to compare. On CUDA the labels time the
host side only, so run it on the device the cost is wanted for and read the shares with that in mind.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

LABELS = (
    "ultrald teacher forward",
    "ultralytics loss",
    "ultrald terms",
    "ultrald VLR region",
    "ultrald LD",
    "ultrald KD",
)


def cost(teacher: str, warmup: int = 3, **overrides) -> dict[str, float]:
    """Return seconds per iteration of each labelled part, 'step' (the whole step) and 'student' (the remainder)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from ultrald import LDTrainer
    from ultrald.cfg import recipe

    args = {**recipe("shapes"), "epochs": 1, "val": False, "plots": False, "workers": 0, "exist_ok": True}
    args.update(name="cost", project=os.path.join(os.getcwd(), "runs", "cost"), teacher=teacher)
    args.update(overrides)
    trainer = LDTrainer(overrides=args)
    prof = profile(activities=[ProfilerActivity.CPU])
    steps: list[float] = []
    state = {"i": 0, "t": 0.0}

    def start(t):
        if state["i"] == warmup:
            prof.start()
        state["t"] = time.perf_counter()

    def end(t):
        if state["i"] >= warmup:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            steps.append(time.perf_counter() - state["t"])
        state["i"] += 1

    trainer.add_callback("on_train_batch_start", start)
    trainer.add_callback("on_train_batch_end", end)
    trainer.train()
    prof.stop()
    if not steps:
        raise SystemExit(f"the epoch had no more than {warmup} batches: raise 'fraction' or lower 'batch'")
    n = len(steps)
    totals = {e.key: e.cpu_time_total / 1e6 / n for e in prof.key_averages() if e.key in LABELS}
    out = {k: totals.get(k, 0.0) for k in LABELS}
    out["step"] = statistics.mean(steps)
    out["student"] = out["step"] - out["ultrald teacher forward"] - out["ultralytics loss"] - out["ultrald terms"]
    out["iterations"] = n
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the split as a markdown table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", help="teacher checkpoint trained on the same data")
    p.add_argument("keys", nargs="*", help="Ultralytics/ultrald keys, key=value")
    a = p.parse_args(argv)
    from ultralytics.cfg import smart_value

    os.environ.setdefault("YOLO_OFFLINE", "1")
    overrides = {k: smart_value(v) for k, _, v in (kv.partition("=") for kv in a.keys)}
    r = cost(a.teacher, **overrides)
    rows = [
        ("student forward + backward + optimizer (the rest)", r["student"]),
        ("teacher forward", r["ultrald teacher forward"]),
        ("Ultralytics' loss (assignment, box, cls, DFL)", r["ultralytics loss"]),
        ("ultrald's own terms", r["ultrald terms"]),
        ("  of which VLR region", r["ultrald VLR region"]),
        ("  of which LD", r["ultrald LD"]),
        ("  of which KD", r["ultrald KD"]),
    ]
    print(
        f"\n{r['iterations']} iterations, {r['step']:.3f} s/iter\n\n| part | s/iter | share of the step |\n|---|---:|---:|"
    )
    for name, v in rows:
        print(f"| {name} | {v:.4f} | {v / r['step']:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
