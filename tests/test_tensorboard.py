"""With Ultralytics' tensorboard setting on, every distillation loss and the metrics are TensorBoard scalars."""

import os
import subprocess
import sys

import pytest
from conftest import ANY_TEACHER, FAST, IMGSZ

pytestmark = pytest.mark.slow  # trains (in a subprocess)


def test_distillation_scalars_in_tensorboard(tmp_path, teacher_pt, student_yaml, shapes_yaml):
    # Ultralytics switches its integrations off under pytest; this run is a plain process with its own settings
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["YOLO_CONFIG_DIR"] = str(tmp_path / "config")
    args = dict(
        model=str(student_yaml),
        teacher=str(teacher_pt),
        data=str(shapes_yaml),
        epochs=1,
        imgsz=IMGSZ,
        batch=8,
        workers=0,
        plots=False,
        project=str(tmp_path / "runs"),
        name="tb",
        **FAST,
        **ANY_TEACHER,
    )
    code = f"""
from ultralytics.utils import SETTINGS
SETTINGS.update(tensorboard=True)
from ultrald import LDTrainer
LDTrainer(overrides={args!r}).train()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "runs" / "tb")).Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/ld_loss", "train/vlr_loss", "train/kd_loss", "train/box_loss", "metrics/mAP50-95(B)"):
        assert tag in tags, sorted(tags)
    assert events.Scalars("train/ld_loss")[0].value > 0
