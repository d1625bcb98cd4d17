"""Offline, single-threaded test environment, with tiny synthetic data and a tiny plain-Ultralytics teacher."""

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

# Before anything imports Ultralytics: no network probes, settings in a temp dir, one torch thread.
_TMP = Path(tempfile.mkdtemp(prefix="ultrald-tests-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
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
# ultrald runs stop when the teacher's val mAP50 is below teacher_min_map; the tiny teachers here (64 px, a few epochs)
# score 0, and the tests are about the wiring, not the teacher's quality: distil from them anyway
ANY_TEACHER = dict(teacher_min_map=0)


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
def untrained_teacher_pt(tmp_root, shapes_yaml) -> Path:
    """A checkpoint of the teacher's architecture with the synthetic data's classes, untrained (seconds to make): for
    quick tests that need a valid teacher file, not a good one. `teacher_pt` trains; only slow tests may ask for it."""
    from helpers import save_checkpoint
    from ultralytics.nn.tasks import DetectionModel

    names = yaml.safe_load(Path(shapes_yaml).read_text())["names"]
    with torch.random.fork_rng():  # seeded, without moving the other tests' random stream
        torch.manual_seed(0)
        model = DetectionModel(
            str(tiny_yaml(tmp_root / "untrained-v8.yaml", width=0.125)), nc=len(names), verbose=False
        )
    model.names = names
    return save_checkpoint(model, tmp_root / "untrained-teacher.pt")


@pytest.fixture(scope="session")
def teacher_pt(tmp_root, shapes_yaml) -> Path:
    """A tiny teacher trained for a few epochs with plain Ultralytics on the synthetic data (slow tests only)."""
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


# Fixtures that train a model: a test asking for one (directly or through another fixture) trains, so it must carry
# the `slow` mark; the quick tier (`pytest -m "not slow"`) stays free of training by construction.
TRAINING_FIXTURES = {"teacher_pt", "distilled", "plain", "obb_setup", "tiny_teacher"}


def pytest_collection_modifyitems(config, items):
    """Refuse to run a test that uses a training fixture without the `slow` mark."""
    unmarked = [
        f"{item.nodeid} ({', '.join(sorted(TRAINING_FIXTURES & set(item.fixturenames)))})"
        for item in items
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError("tests that train must be marked @pytest.mark.slow:\n  " + "\n  ".join(unmarked))


@pytest.fixture
def logged():
    """Messages Ultralytics' logger emits during the test."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logger = logging.getLogger("ultralytics")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
