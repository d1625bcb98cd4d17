"""`yolo-ld demo`: `yolo-ld compare` on the embedded synthetic shapes with the shapes recipe.

    yolo-ld demo                      # ~10 minutes on a 2-core CPU
    yolo-ld demo epochs=5 teacher_epochs=10 n_train=300   # shorter
    yolo-ld demo epochs=60 teacher_epochs=100 device=0    # longer, on a GPU

It draws the data, trains the teacher (from its yaml, in the teacher stage: once, then reused), the distilled and the
plain student, and writes compare.md, compare.json and compare.png to `project` (runs/ultrald-demo).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .cfg import recipe

SHAPES = recipe("shapes")  # the training settings of the benchmark (bench/bench.py): one recipe for both


@dataclass(frozen=True)
class DemoConfig:
    """What the demo trains; every field is a `yolo-ld demo key=value` argument."""

    teacher_model: str = "yolov8-w125.yaml"  # see ultrald/models.py
    student_model: str = "yolov8-w0625.yaml"  # half the teacher; the bench pairs w25 and w125 at its larger budget
    epochs: int = 12  # student epochs
    teacher_epochs: int = 24
    teacher_min_map: float = 0.01  # the teacher's check on the val split (0: never stop)
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


def run(cfg: DemoConfig = DemoConfig()) -> dict[str, Any]:
    """Run the demo: `yolo-ld compare` on the drawn shapes with the shapes recipe; return its report."""
    from .compare import compare
    from .models import resolve_model

    overrides = {k: v for k, v in SHAPES.items() if k not in {"model", "data"}}
    overrides.update(
        teacher=resolve_model(cfg.teacher_model), teacher_epochs=cfg.teacher_epochs,
        teacher_min_map=cfg.teacher_min_map, data=str(shapes_data(cfg)), epochs=cfg.epochs, imgsz=cfg.imgsz,
        batch=cfg.batch, nbs=cfg.batch, device=cfg.device, plots=False,
        project=str(Path(cfg.project).resolve().parent), name=Path(cfg.project).name,
    )  # fmt: skip
    # nbs = batch: an optimizer step every batch
    return compare(resolve_model(cfg.student_model), "detect", overrides, seeds=(cfg.seed,))


def cli(args: list[str]) -> int:
    """`yolo-ld demo key=value ...`: parse the DemoConfig fields and run."""
    from ultralytics.cfg import parse_key_value_pair

    valid, cfg = [f.name for f in fields(DemoConfig)], DemoConfig()
    for a in args:
        k, v = parse_key_value_pair(a) if "=" in a else (a, None)
        if k not in valid:
            raise SyntaxError(f"'{a}' is not a demo argument; valid: {', '.join(f'{n}=' for n in valid)}")
        cfg = replace(cfg, **{k: type(getattr(cfg, k))(v)})
    run(cfg)
    return 0
