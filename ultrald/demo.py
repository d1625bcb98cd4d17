"""`yolo-ld demo`: distil a student on the embedded synthetic shapes and compare it with plain training.

    yolo-ld demo                      # ~10 minutes on a 2-core CPU
    yolo-ld demo epochs=5 teacher_epochs=10 n_train=300   # shorter
    yolo-ld demo epochs=60 teacher_epochs=100 device=0    # longer, on a GPU

The teacher is trained once with plain Ultralytics and reused by later demos with the same settings.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ultralytics.utils import LOGGER, colorstr

from .cfg import recipe

SHAPES = recipe("shapes")  # the training settings of the benchmark (bench/bench.py): one recipe for both


@dataclass(frozen=True)
class DemoConfig:
    """What the demo trains; every field is a `yolo-ld demo key=value` argument."""

    teacher_model: str = "yolov8-w125.yaml"  # see ultrald/models.py
    student_model: str = "yolov8-w0625.yaml"  # half the teacher; the bench pairs w25 and w125 at its larger budget
    epochs: int = 12  # student epochs
    teacher_epochs: int = 24
    n_train: int = 600
    n_val: int = 200
    imgsz: int = SHAPES["imgsz"]
    batch: int = SHAPES["batch"]
    seed: int = 0
    device: str = "cpu"
    project: str = "runs/ultrald-demo"
    data_dir: str = ""  # where the dataset is drawn; default: Ultralytics' datasets dir


def shapes_data(cfg: DemoConfig) -> Path:
    """Generate (once) the demo's synthetic dataset and return its yaml."""
    from ultralytics.utils import DATASETS_DIR

    from .data.shapes import ShapesConfig, generate

    shapes = ShapesConfig(n_train=cfg.n_train, n_val=cfg.n_val, imgsz=cfg.imgsz)
    return generate(Path(cfg.data_dir or DATASETS_DIR) / f"ultrald-shapes-demo-{cfg.imgsz}-{cfg.n_train}", shapes)


def run_args(model: str, data: Path, name: str, epochs: int, cfg: DemoConfig, **extra) -> dict[str, Any]:
    """Return the train overrides of one demo run: the shapes recipe's settings with the demo's model and sizes."""
    from .models import resolve_model

    args = {k: v for k, v in SHAPES.items() if k not in {"model", "data"}}
    args.update(model=resolve_model(model), data=str(data), epochs=epochs, imgsz=cfg.imgsz, batch=cfg.batch)
    args.update(device=cfg.device, seed=cfg.seed, project=str(Path(cfg.project).resolve()), name=name)
    args.update(exist_ok=True, plots=False, nbs=cfg.batch)  # nbs = batch: an optimizer step every batch
    return {**args, **extra}


def train_run(kind: str, model: str, data: Path, name: str, epochs: int, cfg: DemoConfig, **extra) -> dict[str, Any]:
    """Train one run ('plain' with Ultralytics' DetectionTrainer, 'ld' with LDTrainer) and return its summary."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    from .engine.trainer import LDTrainer

    trainer = (LDTrainer if kind == "ld" else DetectionTrainer)(
        overrides=run_args(model, data, name, epochs, cfg, **extra)
    )
    start = time.time()
    trainer.train()
    return summarize(trainer, name, time.time() - start)


def summarize(trainer, name: str, seconds: float) -> dict[str, Any]:
    """Return the final validation metrics of a finished run with its size and time, read from its results."""
    rows = read_results(Path(trainer.save_dir) / "results.csv")
    metrics = trainer.validator.metrics.results_dict if trainer.validator else {}
    return {
        "run": name,
        "mAP50-95": metrics.get("metrics/mAP50-95(B)", rows[-1]["metrics/mAP50-95(B)"]),
        "mAP50": metrics.get("metrics/mAP50(B)", rows[-1]["metrics/mAP50(B)"]),
        "params": sum(p.numel() for p in trainer.model.parameters()) if hasattr(trainer.model, "parameters") else 0,
        "seconds": seconds,
        "save_dir": str(trainer.save_dir),
        "curve": [r["metrics/mAP50-95(B)"] for r in rows],
    }


def read_results(csv_path: Path) -> list[dict[str, float]]:
    """Rows of an Ultralytics results.csv as dicts of floats."""
    with open(csv_path) as f:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def teacher_checkpoint(cfg: DemoConfig, data: Path) -> tuple[Path, dict | None]:
    """Return the demo teacher's best.pt, training it with plain Ultralytics unless a finished one matches `cfg`."""
    kept = {"teacher_model", "teacher_epochs", "n_train", "imgsz", "batch", "seed"}
    key = {k: v for k, v in asdict(cfg).items() if k in kept}
    run = Path(cfg.project) / "teacher"
    stamp, best = run / "ultrald-demo.json", run / "weights" / "best.pt"
    if best.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == key:
        LOGGER.info(f"{colorstr('demo:')} reusing the teacher {best}")
        return best, None
    summary = train_run("plain", cfg.teacher_model, data, "teacher", cfg.teacher_epochs, cfg)
    stamp.write_text(json.dumps(key))
    return best, summary


def table(rows: list[dict[str, Any]]) -> str:
    """Return the comparison as a markdown table."""
    lines = ["| run | params | mAP50-95 | mAP50 | train time (s) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['params']:,} | {r['mAP50-95']:.3f} | {r['mAP50']:.3f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], file: Path) -> None:
    """Save mAP50-95 per epoch of the runs as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), tight_layout=True)
    for r in rows:
        ax.plot(range(1, len(r["curve"]) + 1), r["curve"], marker=".", label=r["run"])
    ax.set(xlabel="epoch", ylabel="mAP50-95 (val)", title="ultrald demo: synthetic shapes")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(file, dpi=120)
    plt.close(fig)


def run(cfg: DemoConfig = DemoConfig()) -> list[dict[str, Any]]:
    """Run the demo: data, teacher (trained once), plain student, LD student; print and save the comparison."""
    project = Path(cfg.project)
    project.mkdir(parents=True, exist_ok=True)
    data = shapes_data(cfg)
    teacher, teacher_summary = teacher_checkpoint(cfg, data)
    plain = train_run("plain", cfg.student_model, data, "student-plain", cfg.epochs, cfg)
    ld = train_run("ld", cfg.student_model, data, "student-ld", cfg.epochs, cfg, teacher=str(teacher))
    rows = [r for r in (teacher_summary, plain, ld) if r]
    if teacher_summary is None:  # a reused teacher: report its checkpoint's metrics
        rows.insert(0, reused_teacher_summary(teacher, data, cfg))
    plot([r for r in rows if r.get("curve")], project / "map.png")
    (project / "results.json").write_text(json.dumps(rows, indent=2))
    (project / "results.md").write_text(table(rows) + "\n")
    LOGGER.info(
        f"\n{colorstr('ultrald demo:')} synthetic shapes, {cfg.epochs} student epochs\n{table(rows)}\n"
        f"Plot: {project / 'map.png'}; runs: {project}"
    )
    return rows


def reused_teacher_summary(best: Path, data: Path, cfg: DemoConfig) -> dict[str, Any]:
    """Summary of a teacher trained by an earlier demo, from its results.csv."""
    rows = read_results(best.parent.parent / "results.csv")
    from ultralytics.nn.tasks import load_checkpoint

    model = load_checkpoint(best)[0]
    return {
        "run": "teacher (reused)",
        "mAP50-95": rows[-1]["metrics/mAP50-95(B)"],
        "mAP50": rows[-1]["metrics/mAP50(B)"],
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": 0.0,
        "save_dir": str(best.parent.parent),
        "curve": [r["metrics/mAP50-95(B)"] for r in rows],
    }


def cli(args: list[str]) -> int:
    """`yolo-ld demo key=value ...`: parse the DemoConfig fields and run."""
    from ultralytics.cfg import parse_key_value_pair

    valid = {f.name: f.type for f in fields(DemoConfig)}
    cfg = DemoConfig()
    for a in args:
        k, v = parse_key_value_pair(a) if "=" in a else (a, None)
        if k not in valid:
            raise SyntaxError(f"'{a}' is not a demo argument; valid: {', '.join(f'{n}=' for n in valid)}")
        cfg = replace(cfg, **{k: type(getattr(cfg, k))(v)})
    run(cfg)
    return 0
