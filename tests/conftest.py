"""Offline, single-threaded test environment, with tiny synthetic data and a tiny plain-Ultralytics teacher."""

import os
import tempfile
from pathlib import Path

# Before anything imports Ultralytics: no network probes, settings in a temp dir, one torch thread.
_TMP = Path(tempfile.mkdtemp(prefix="ultrald-tests-"))
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_CONFIG_DIR"] = str(_TMP / "config")
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

torch.set_num_threads(1)

IMGSZ = 64
# tiny runs: no 100-iteration warmup, and an optimizer step every batch (nbs=64 would accumulate 8 batches of 8)
FAST = dict(warmup_epochs=0, optimizer="AdamW", lr0=0.003, nbs=8)


def tiny_yaml(path: Path, width: float = 0.125, base: str = "v8/yolov8.yaml", **extra) -> Path:
    """Write a YOLOv8-style model yaml with a fixed width multiple (no scales) and return its path."""
    import ultralytics

    cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models" / base).read_text())
    cfg.pop("scales", None)
    cfg.update(depth_multiple=0.33, width_multiple=width, max_channels=1024, **extra)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    """Session temp dir."""
    return _TMP


@pytest.fixture(scope="session")
def shapes_yaml(tmp_root) -> Path:
    """A tiny synthetic detection dataset: 48 train / 16 val images of 64 px."""
    from ultrald.data.shapes import ShapesConfig, generate

    return generate(tmp_root / "shapes", ShapesConfig(n_train=48, n_val=16, imgsz=IMGSZ, size=(0.15, 0.5), seed=1))


@pytest.fixture(scope="session")
def shapes_obb_yaml(tmp_root) -> Path:
    """A tiny synthetic OBB dataset: 32 train / 16 val images of 64 px."""
    from ultrald.data.shapes import ShapesConfig, generate

    return generate(
        tmp_root / "shapes-obb", ShapesConfig(task="obb", n_train=32, n_val=16, imgsz=IMGSZ, size=(0.2, 0.5), seed=2)
    )


@pytest.fixture(scope="session")
def student_yaml(tmp_root) -> Path:
    """A ~0.3M-parameter YOLOv8 student."""
    return tiny_yaml(tmp_root / "student-v8.yaml", width=0.0625)


@pytest.fixture(scope="session")
def teacher_pt(tmp_root, shapes_yaml) -> Path:
    """A tiny teacher trained for a few epochs with plain Ultralytics on the synthetic data."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    trainer = DetectionTrainer(
        overrides=dict(
            model=str(tiny_yaml(tmp_root / "teacher-v8.yaml", width=0.125)),
            data=str(shapes_yaml),
            epochs=10,
            imgsz=IMGSZ,
            batch=8,
            workers=0,
            plots=False,
            project=str(tmp_root / "runs"),
            name="teacher",
            exist_ok=True,
            seed=0,
            **FAST,
        )
    )
    trainer.train()
    return trainer.best
