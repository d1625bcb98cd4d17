"""GPU check: s/iter and peak memory of plain, Ultralytics FI and ultrald training steps, and AMP numerics (by hand).

    python bench/gpu_check.py --out bench/results/gpu_check.json          # one CUDA GPU, a few minutes
    python bench/gpu_check.py --tiny --out /tmp/gpu_check.json            # CPU, tiny sizes (what the test runs)

Defaults: a yolov8s student and a yolov8l teacher, both randomly initialised (speed does not depend on the weights),
80 classes, imgsz 640, batch 32, one fixed generated batch (random pixels, 8 random boxes per image: about COCO's
mean). Each configuration below runs with AMP off and on; a run builds its models afresh, warms up, then times
`--steps` training steps, each as Ultralytics' trainer does it: the uint8 batch to float, forward and loss under
autocast (float16 with a GradScaler on CUDA, as `amp=True`), backward, and every `nbs/batch` steps gradient clipping,
the optimizer step and the EMA update; channels_last on CUDA and deterministic algorithms, as Ultralytics' defaults.
Data loading is left out: it is the same for the three and would only dilute the ratios.

    plain     the student alone (Ultralytics' v8DetectionLoss)
    fi        Ultralytics' feature imitation: its DistillationModel around the student, the teacher unfused as
              Ultralytics loads it, dis=6 (Ultralytics' default)
    ultrald   ultrald's defaults: the criterion LDTrainer builds (LD + VLR + dense KD), the teacher frozen and fused

The target checked: ultrald's s/iter with AMP at most 1.25x plain's. Peak memory is torch's max_memory_allocated
(and _reserved, what Ultralytics' GPU_mem column shows) over each run, from the model's build on.

Numerics, on one batch with the same weights: ultrald's loss in strict float32 (TF32 off) and under AMP. Checked: the
teacher's head outputs are in the autocast dtype (half precision), every loss term (Ultralytics' and each of
ultrald's, before they are stacked) is float32 and finite, and the AMP total and each term lie within a relative
tolerance of the float32 value (RTOL_UNITS says which and why). The exit code is 1 when a numerics check fails (or a
run errs), else 0; the speed target is reported, not enforced. On CPU, "AMP" is bfloat16 autocast without a scaler
(Ultralytics' `amp=bf16`), and the target does not apply. The JSON is rewritten after every run, so a check cut
short keeps what it measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path
from types import SimpleNamespace

import torch

os.environ.setdefault("YOLO_OFFLINE", "1")  # before Ultralytics loads: a GPU machine may have no network

import ultralytics
from ultralytics.cfg import DEFAULT_CFG_DICT
from ultralytics.nn.distill_model import DistillationModel
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.torch_utils import ModelEMA, init_seeds

import ultrald
from ultrald.cfg import ld_cfg
from ultrald.distill.criterion import LDDetectionLoss, build_criterion
from ultrald.distill.teacher import TeacherHead, load_teacher
from ultrald.models import resolve_model

CONFIGS = ("plain", "fi", "ultrald")
TARGET = 1.25  # ultrald's s/iter with AMP at most this times plain's
# Relative tolerance of an AMP loss against its float32 value, in unit roundoffs u of the autocast dtype: float16
# rounds to 2^-11 (4.9e-4), bfloat16 to 2^-8 (3.9e-3). The loss reads the outputs of ~20 layers each rounded once
# (a few u), and then the label assignment: TAL's top-k picks its positives from scores and IoUs that rounding moves,
# and a positive that changes sides moves every term by its share. 40 u (float16: 1.95 %) leaves room for both and
# stays far below what a term summed in half precision (or cast wrongly) moves. Measured on the CPU (float16
# autocast, yolov8s/yolov8l, imgsz 320, batch 4, random weights): total 0.03 %, worst term kd_loss 0.49 %.
ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
RTOL_UNITS = 40
# A term that is a tiny share of the loss may differ by more than RTOL of itself (LD between near-equal distributions
# is a small difference of large numbers) without moving training: it is held to ATOL_SHARE of the summed loss items.
ATOL_SHARE = 1e-4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the options; --tiny sets CPU-sized defaults for what was not given."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="default: cuda:0 if available, else cpu")
    p.add_argument("--imgsz", type=int, default=None, help="default 640 (--tiny: 64)")
    p.add_argument("--batch", type=int, default=None, help="default 32 (--tiny: 2)")
    p.add_argument("--student", default=None, help="default yolov8s.yaml (--tiny: yolov8-w0625.yaml)")
    p.add_argument("--teacher", default=None, help="default yolov8l.yaml (--tiny: yolov8-w125.yaml)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run, default 30 (--tiny: 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per run, default 5 (--tiny: 1)")
    p.add_argument("--budget", type=float, default=300, help="seconds of timed steps for all runs (cuts --steps)")
    p.add_argument("--nc", type=int, default=80, help="classes")
    p.add_argument("--boxes", type=int, default=8, help="generated boxes per image")
    p.add_argument(
        "--nbs",
        type=int,
        default=None,
        help="nominal batch: an optimizer step every nbs/batch steps, "
        "default 64 as Ultralytics (--tiny: the batch, so every step)",
    )
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    p.add_argument("--no-deterministic", action="store_true", help="Ultralytics' deterministic=False")
    p.add_argument("--tiny", action="store_true", help="CPU sizes: imgsz 64, batch 2, width-scaled models, 2 steps")
    p.add_argument("--out", default="bench/results/gpu_check.json", help="JSON file written")
    a = p.parse_args(argv)
    sizes = {"imgsz": 640, "batch": 32, "student": "yolov8s.yaml", "teacher": "yolov8l.yaml", "steps": 30, "warmup": 5}
    sizes["nbs"] = 64
    if a.tiny:  # nbs None: the batch, so the optimizer steps on every step and the test runs that path too
        sizes.update(imgsz=64, batch=2, student="yolov8-w0625.yaml", teacher="yolov8-w125.yaml", steps=2, warmup=1)
        sizes["nbs"] = None
    for k, v in sizes.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.nbs = a.nbs or a.batch
    a.accumulate = max(round(a.nbs / a.batch), 1)
    a.device = torch.device(a.device or ("cuda:0" if torch.cuda.is_available() else "cpu"))
    a.configs = [c for c in a.configs.split(",") if c]
    if unknown := set(a.configs) - set(CONFIGS):
        p.error(f"unknown --configs {sorted(unknown)}; choose from {CONFIGS}")
    return a


def amp_dtype(device: torch.device) -> torch.dtype:
    """Return the autocast dtype of `amp=True` on this device: float16 on CUDA, bfloat16 on CPU."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def train_args(a: argparse.Namespace, **extra):
    """Return the args an LDTrainer would give the student: Ultralytics' and ultrald's defaults."""
    return SimpleNamespace(**ld_cfg({"imgsz": a.imgsz, "batch": a.batch, **extra}))


def build_models(a: argparse.Namespace):
    """Return (student, teacher), randomly initialised on the CPU with fixed seeds; each run copies them."""
    torch.manual_seed(0)
    student = DetectionModel(resolve_model(a.student), nc=a.nc, verbose=False)
    torch.manual_seed(1)
    teacher = DetectionModel(resolve_model(a.teacher), nc=a.nc, verbose=False)
    return student, teacher.eval()


def make_batch(a: argparse.Namespace) -> dict[str, torch.Tensor]:
    """Return one generated batch on the device: uint8 images and `--boxes` random labelled boxes per image."""
    g = torch.Generator().manual_seed(2)
    n = a.batch * a.boxes
    wh = 0.05 + 0.45 * torch.rand(n, 2, generator=g)  # normalised sides
    xy = wh / 2 + (1 - wh) * torch.rand(n, 2, generator=g)  # centres keeping the box inside the image
    batch = {
        "img": torch.randint(0, 256, (a.batch, 3, a.imgsz, a.imgsz), dtype=torch.uint8, generator=g),
        "cls": torch.randint(0, a.nc, (n, 1), generator=g).float(),
        "bboxes": torch.cat((xy, wh), 1),
        "batch_idx": torch.arange(a.batch).repeat_interleave(a.boxes).float(),
    }
    return {k: v.to(a.device) for k, v in batch.items()}


def setup(config: str, a: argparse.Namespace, student: torch.nn.Module, teacher: torch.nn.Module, probe=False):
    """Return (model to call with a batch, the criterion-bearing student) for `config`, on the device.

    `probe` gives ultrald's student the ProbeLoss criterion (the numerics check); timing runs get LDDetectionLoss.
    """
    student = deepcopy(student).to(a.device).train()
    student.args = train_args(a, dis=DEFAULT_CFG_DICT["dis"] if config == "fi" else 0.0)
    for name, p in student.named_parameters():
        p.requires_grad_(".dfl" not in name)  # as Ultralytics' trainer freezes the DFL projection
    if a.device.type == "cuda":
        student = student.to(memory_format=torch.channels_last)  # Ultralytics' default on CUDA (channels_last=None)
    if config == "fi":  # what the trainer builds for distill_model=teacher.pt: load_checkpoint(fuse=False)
        return DistillationModel(teacher_model=deepcopy(teacher).to(a.device), student_model=student), student
    if config == "ultrald":  # as LDTrainer: load_teacher, then the criterion on a TeacherHead of it
        head = TeacherHead(load_teacher(teacher).to(a.device))
        student.criterion = build_criterion(student, head, ProbeLoss if probe else LDDetectionLoss)
    return student, student


class ProbeLoss(LDDetectionLoss):
    """ultrald's detection criterion, unchanged, keeping the dtype of each distillation term of its last call."""

    def __init__(self, *args, **kwargs):
        """Build LDDetectionLoss; no term seen yet."""
        super().__init__(*args, **kwargs)
        self.term_dtypes: dict[str, torch.dtype] = {}

    def terms(self, *args) -> list:
        """Return the terms, recording their dtypes before they are stacked (stacking would promote a half one)."""
        out = super().terms(*args)
        self.term_dtypes = {name: t.dtype for name, t in zip(self.names, out)}
        return out


def step(model, batch: dict, amp: torch.dtype | None, scaler, optim=None) -> dict:
    """Run one training step as Ultralytics' trainer does; `optim` = (optimizer, params, ema) steps the weights."""
    img = batch["img"]  # uint8
    with torch.autocast(img.device.type, dtype=amp, enabled=amp is not None):
        # preprocess_batch; a new tensor each step, so ultrald's teacher head (cached per image tensor) runs every step
        loss, items = model({**batch, "img": img.float() / 255})
        loss = loss.sum()
    scaler.scale(loss).backward()
    if optim is not None:
        optimizer, params, ema = optim
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, max_norm=10.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        ema.update(model)
    return items


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so wall time measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    """Release the previous run's memory and restart the peak counters."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def time_run(config: str, amp: bool, a, models, batch: dict, seconds: float) -> dict:
    """Return s/iter, peak memory and the last loss items of `config` trained with AMP on or off.

    s/iter is the mean over whole accumulation cycles (an optimizer step every `accumulate` steps), as a training
    epoch averages it; the median step is kept beside it. Timing stops early once it passed `seconds`.
    """
    free(a.device)
    model, _ = setup(config, a, *models)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.937, nesterov=True)
    dtype = amp_dtype(a.device) if amp else None
    scaler = torch.amp.GradScaler(a.device.type, enabled=dtype is torch.float16)
    optim = optimizer, params, ModelEMA(model)
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        items = step(model, batch, dtype, scaler, optim if (i + 1) % a.accumulate == 0 else None)
        sync(a.device)
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
            if sum(times) > seconds and len(times) >= 3 and len(times) % a.accumulate == 0:
                break
    cuda = a.device.type == "cuda"
    return {
        "s_per_iter": statistics.fmean(times),
        "s_per_iter_median": statistics.median(times),
        "iterations": len(times),
        "peak_mem_allocated": torch.cuda.max_memory_allocated(a.device) if cuda else None,
        "peak_mem_reserved": torch.cuda.max_memory_reserved(a.device) if cuda else None,
        "grad_scale": scaler.get_scale() if scaler.is_enabled() else None,  # it halves on each overflow: skipped steps
        "loss_items": {k: float(v) for k, v in items.items()},
    }


@contextmanager
def strict_fp32():
    """Compute in IEEE float32: no TF32 in convolutions (cuDNN's default) or matmuls, for the reference loss."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def loss_record(student, batch: dict, amp: torch.dtype | None) -> dict:
    """Return one ultrald loss evaluation: its items and total, their dtypes and the teacher's output dtypes."""
    img, crit = batch["img"], student.criterion
    crit.term_dtypes = {}  # so a call that skipped the terms (non-finite teacher) shows none
    ctx = torch.autocast(img.device.type, dtype=amp) if amp else strict_fp32()
    with torch.no_grad(), ctx:
        loss, items = student.loss({**batch, "img": img.float() / 255})  # a new tensor: the teacher runs again
    values = {k: float(v) for k, v in items.items()}
    values["total"] = float(loss.sum())
    dtypes = {f"item {k}": str(v.dtype) for k, v in items.items()}
    dtypes.update({f"term {k}": str(v) for k, v in crit.term_dtypes.items()})
    dtypes["loss"] = str(loss.dtype)
    teacher = {k: str(v.dtype) for k, v in crit.teacher.output.items() if k in {"boxes", "scores"}}
    return {"values": values, "dtypes": dtypes, "teacher_dtypes": teacher}


def check_numerics(ref: dict, amp: dict, half: str, rtol: float) -> dict:
    """Return the numerics block for a float32 and an AMP loss record (see loss_record): each check, pass or fail.

    A value passes when |amp - fp32| <= rtol * |fp32| + atol, atol being ATOL_SHARE of the summed float32 loss items;
    NaN or Inf fails every check it enters.
    """
    atol = ATOL_SHARE * sum(abs(v) for k, v in ref["values"].items() if k != "total")
    rel, within = {}, {}
    for k, r in ref["values"].items():
        v = amp["values"].get(k, math.nan)
        rel[k] = abs(v - r) / abs(r) if r else abs(v - r)
        within[k] = bool(abs(v - r) <= rtol * abs(r) + atol)  # False for NaN
    records = (ref, amp)
    checks = {
        f"teacher outputs in {half} under AMP": bool(amp["teacher_dtypes"])
        and all(d == half for d in amp["teacher_dtypes"].values()),
        "teacher outputs in torch.float32 without AMP": bool(ref["teacher_dtypes"])
        and all(d == "torch.float32" for d in ref["teacher_dtypes"].values()),
        "every distillation term computed": all(any(k.startswith("term ") for k in r["dtypes"]) for r in records),
        "every term float32": all(d == "torch.float32" for r in records for d in r["dtypes"].values()),
        "every term finite": all(math.isfinite(v) for r in records for v in r["values"].values()),
        **{f"{k} within rtol": ok for k, ok in within.items()},
    }
    return {
        "amp_dtype": half,
        "rtol": rtol,
        "atol": atol,
        "fp32": ref,
        "amp": amp,
        "rel_diff": rel,
        "checks": checks,
        "passed": all(checks.values()),
    }


def numerics(a: argparse.Namespace, models: tuple, batch: dict) -> dict:
    """Return the numerics block: ultrald's loss on one batch, same weights, in strict float32 and under AMP."""
    free(a.device)
    _, student = setup("ultrald", a, *models, probe=True)
    half = amp_dtype(a.device)
    ref, amp = loss_record(student, batch, None), loss_record(student, batch, half)
    return check_numerics(ref, amp, str(half), RTOL_UNITS * ROUNDOFF[half])


def settings(a: argparse.Namespace, models: tuple) -> dict:
    """Return what the figures depend on: machine, versions, sizes, models and step settings."""
    cuda = a.device.type == "cuda"
    return {
        "device": str(a.device),
        "device_name": torch.cuda.get_device_name(a.device) if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "ultralytics": ultralytics.__version__,
        "ultrald": ultrald.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "imgsz": a.imgsz,
        "batch": a.batch,
        "nc": a.nc,
        "boxes_per_image": a.boxes,
        "student": a.student,
        "teacher": a.teacher,
        "student_params": sum(p.numel() for p in models[0].parameters()),
        "teacher_params": sum(p.numel() for p in models[1].parameters()),
        "warmup": a.warmup,
        "steps": a.steps,
        "budget_s": a.budget,
        "nbs": a.nbs,
        "accumulate": a.accumulate,
        "amp_dtype": str(amp_dtype(a.device)),
        "grad_scaler": cuda,
        "channels_last": cuda,
        "deterministic": not a.no_deterministic,
        "tiny": a.tiny,
    }


def summarize(runs: dict, device: torch.device) -> tuple[dict, dict]:
    """Return (s/iter ratios to plain per AMP setting, the target's verdict: met only on CUDA)."""
    ratios = {}
    for key in ("fp32", "amp"):
        base = runs.get("plain", {}).get(key, {}).get("s_per_iter")
        for config in ("fi", "ultrald"):
            t = runs.get(config, {}).get(key, {}).get("s_per_iter")
            ratios.setdefault(key, {})[f"{config}/plain"] = t / base if t and base else None
    ratio = ratios["amp"]["ultrald/plain"]
    met = ratio <= TARGET if ratio is not None and device.type == "cuda" else None
    target = {"what": f"ultrald s/iter <= {TARGET} x plain with AMP on CUDA", "ratio": ratio, "met": met}
    return ratios, target


def write(report: dict, out: Path) -> None:
    """Write the report (again), so an interrupted check keeps every finished run."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def timed_runs(a: argparse.Namespace, models: tuple, batch: dict, report: dict, out: Path) -> list[str]:
    """Time every configuration with AMP off and on into report['runs']; return the errors of runs that failed."""
    errors, seconds = [], a.budget / (2 * len(a.configs))
    for config in a.configs:
        for amp in (False, True):
            key = "amp" if amp else "fp32"
            t0 = time.perf_counter()
            try:
                r = time_run(config, amp, a, models, batch, seconds)
            except Exception as e:  # noqa: BLE001 - one failed run (OOM, non-finite stop) must not lose the others
                r = {"error": f"{type(e).__name__}: {e}"}
                errors.append(f"{config} {key}: {r['error']}")
            report["runs"].setdefault(config, {})[key] = r
            mem = r.get("peak_mem_allocated")
            what = r.get("error") or f"{r['s_per_iter']:.4f} s/iter over {r['iterations']} steps" + (
                f", peak {mem / 2**30:.2f} GiB" if mem else ""
            )
            print(f"{config:8s} {key:5s} {what} ({time.perf_counter() - t0:.0f} s)", flush=True)
            write(report, out)
    return errors


def main(argv: list[str] | None = None) -> int:
    """Run the numerics check and the timed runs, write the JSON, print a summary; 1 if a check failed."""
    a = parse_args(argv)
    start, out = time.perf_counter(), Path(a.out)
    init_seeds(0, deterministic=not a.no_deterministic)  # as Ultralytics' trainer (deterministic=True by default)
    models = build_models(a)
    batch = make_batch(a)
    report = {"settings": settings(a, models), "numerics": None, "runs": {}}
    try:
        report["numerics"] = numerics(a, models, batch)
    except Exception as e:  # noqa: BLE001 - recorded as a failed check; the timed runs still follow
        report["numerics"] = {"error": f"{type(e).__name__}: {e}", "checks": {}, "passed": False}
    failed = [k for k, ok in report["numerics"]["checks"].items() if not ok] or [report["numerics"].get("error")]
    print(f"numerics ({report['settings']['amp_dtype']}): {'pass' if report['numerics']['passed'] else 'FAIL'}")
    if not report["numerics"]["passed"]:
        print("  failed: " + "; ".join(str(f) for f in failed))
    write(report, out)
    errors = timed_runs(a, models, batch, report, out)
    report["ratios"], report["target"] = summarize(report["runs"], a.device)
    report["errors"], report["elapsed_s"] = errors, time.perf_counter() - start
    write(report, out)
    r, t = report["ratios"], report["target"]
    print(f"ratios to plain: {json.dumps(r)}\ntarget ({t['what']}): {t['met']}\nwrote {out}", flush=True)
    return 0 if report["numerics"]["passed"] and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
