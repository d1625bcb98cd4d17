"""Rotated boxes end to end: a plain-Ultralytics OBB teacher, a student distilled through `yolo-ld`."""

import math
import os
import subprocess
import sys

import pytest
from conftest import FAST, IMGSZ, tiny_yaml
from helpers import read_results


@pytest.fixture(scope="module")
def obb_setup(tmp_root, shapes_obb_yaml):
    """Tiny rotated shapes, a tiny OBB teacher trained with plain Ultralytics, and a student yaml."""
    from ultralytics.models.yolo.obb import OBBTrainer

    data = shapes_obb_yaml
    teacher = OBBTrainer(
        overrides=dict(
            model=str(tiny_yaml(tmp_root / "t-obb.yaml", 0.125, "v8/yolov8-obb.yaml")),
            data=str(data),
            epochs=4,
            imgsz=IMGSZ,
            batch=8,
            workers=0,
            plots=False,
            project=str(tmp_root / "runs"),
            name="teacher-obb",
            exist_ok=True,
            **FAST,
        )
    )
    teacher.train()
    return data, teacher.best, tiny_yaml(tmp_root / "s-obb.yaml", 0.0625, "v8/yolov8-obb.yaml")


@pytest.mark.slow
def test_obb_distillation_via_cli(tmp_root, obb_setup):
    data, teacher, student = obb_setup
    cmd = [
        "yolo-ld",
        "train",
        f"model={student}",
        f"teacher={teacher}",
        f"data={data}",
        "epochs=2",
        f"imgsz={IMGSZ}",
        "batch=8",
        "workers=0",
        "plots=False",
        f"project={tmp_root / 'runs'}",
        "name=student-obb",
        "exist_ok=True",
        "warmup_epochs=0",
        "ald_type=l1",
        "teacher_min_map=0",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ald=1.0 (l1)" in out.stdout + out.stderr  # the OBB trainer was chosen from the model's task
    rows = read_results(tmp_root / "runs" / "student-obb")
    for column in ("train/ld_loss", "train/vlr_loss", "train/kd_loss", "train/ald_loss", "train/angle_loss"):
        assert all(math.isfinite(r[column]) and r[column] > 0 for r in rows), column
    best = tmp_root / "runs" / "student-obb" / "weights" / "best.pt"
    code = f"""
import sys
from ultralytics import YOLO
m = YOLO(r"{best}")
r = m.predict(r"{next((data.parent / "images/val").glob("*.png"))}", imgsz={IMGSZ}, verbose=False)
assert m.task == "obb" and type(m.model).__name__ == "OBBModel" and r[0].obb is not None
assert not any(k.startswith("ultrald") for k in sys.modules)
print("OK")
"""
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=300)
    assert check.returncode == 0 and "OK" in check.stdout, check.stderr[-2000:]


def test_detect_teacher_refused_for_obb_student(tmp_root, shapes_obb_yaml, untrained_teacher_pt):
    """The OBB trainer refuses a detect teacher by its task, before any epoch."""
    from ultrald import LDOBBTrainer
    from ultrald.distill.teacher import TeacherError

    data, student = shapes_obb_yaml, tiny_yaml(tmp_root / "s-obb.yaml", 0.0625, "v8/yolov8-obb.yaml")
    trainer = LDOBBTrainer(
        overrides=dict(
            model=str(student),
            teacher=str(untrained_teacher_pt),
            data=str(data),
            epochs=1,
            imgsz=IMGSZ,
            workers=0,
            plots=False,
            project=str(tmp_root / "runs"),
            name="mismatch",
            exist_ok=True,
        )
    )
    with pytest.raises(TeacherError, match="teacher task 'detect' does not match student task 'obb'"):
        trainer.train()
