"""End to end on tiny synthetic data: a plain-Ultralytics teacher, students distilled via LDTrainer and `yolo-ld`."""

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ANY_TEACHER, FAST, IMGSZ
from helpers import read_results, sha256
from ultralytics.nn.tasks import load_checkpoint

from ultrald import LDTrainer

DISTILL_COLUMNS = ("train/ld_loss", "train/vlr_loss", "train/kd_loss")


def train_args(tmp_root, name, student_yaml, shapes_yaml, **kw):
    args = dict(
        model=str(student_yaml),
        data=str(shapes_yaml),
        epochs=6,
        imgsz=IMGSZ,
        batch=8,
        workers=0,
        plots=False,
        project=str(tmp_root / "runs"),
        name=name,
        exist_ok=True,
        seed=0,
        **FAST,
    )
    return {**args, **kw}


@pytest.fixture(scope="module")
def distilled(tmp_root, teacher_pt, student_yaml, shapes_yaml):
    """A student distilled with LDTrainer at the default settings; the teacher's file hash and weights at the start."""
    before = {"file": sha256(teacher_pt)}
    args = train_args(tmp_root, "ld", student_yaml, shapes_yaml, teacher=str(teacher_pt), **ANY_TEACHER)
    trainer = LDTrainer(overrides=args)
    trainer.add_callback(
        "on_pretrain_routine_end", lambda t: before.update(weights=copy.deepcopy(t.teacher.state_dict()))
    )
    trainer.add_callback("on_train_end", lambda t: before.update(teacher=t.teacher))  # released right after
    trainer.add_callback("on_train_start", lambda t: before.update(epochs=t.model.criterion.teacher_epochs))
    trainer.train()
    return trainer, before


@pytest.mark.slow
def test_distillation_columns_logged_finite_nonzero(distilled):
    trainer, _ = distilled
    rows = read_results(trainer.save_dir)
    assert len(rows) == 6
    for column in DISTILL_COLUMNS:
        values = [r[column] for r in rows]
        assert all(math.isfinite(v) and v > 0 for v in values), (column, values)
    assert trainer.loss_names == ("box_loss", "cls_loss", "dfl_loss", "ld_loss", "vlr_loss", "kd_loss")


@pytest.mark.slow
def test_the_criterion_knows_the_epochs_the_teacher_was_trained(distilled):
    """`distill_schedule=auto` compares them with the student's: the teacher fixture's checkpoint records 10."""
    assert distilled[1]["epochs"] == 10


@pytest.fixture(scope="module")
def plain(tmp_root, student_yaml, shapes_yaml):
    """The same student, data, seed and schedule as `distilled`, trained by plain Ultralytics."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    trainer = DetectionTrainer(overrides=train_args(tmp_root, "plain", student_yaml, shapes_yaml))
    trainer.train()
    return trainer


def teacher_distance(student_pt: Path, teacher_pt: Path, shapes_yaml: Path) -> tuple[float, float]:
    """Mean (edge KL, class KD) between a student's and the teacher's raw heads over the val images."""
    import cv2

    from ultrald.distill.losses import binary_kd, kl_distill

    student, teacher = (load_checkpoint(p)[0].float().eval() for p in (student_pt, teacher_pt))
    files = sorted((Path(shapes_yaml).parent / "images" / "val").glob("*.png"))
    img = torch.stack([torch.from_numpy(cv2.imread(str(f))[..., ::-1].copy()).permute(2, 0, 1) for f in files]) / 255
    with torch.no_grad():
        s, t = (m(img)[1] for m in (student, teacher))
    edges = lambda x: x["boxes"].transpose(1, 2).reshape(-1, 4, 16)  # noqa: E731
    ld = kl_distill(edges(s), edges(t), 1.0).mean().item()
    kd = binary_kd(s["scores"].transpose(1, 2), t["scores"].transpose(1, 2), 2.0).mean().item()
    return ld, kd


@pytest.mark.slow
def test_distilled_student_is_closer_to_the_teacher_than_plain(distilled, plain, teacher_pt, shapes_yaml):
    """Same student, data, seed and schedule: the distilled one mimics the teacher's edges and scores more closely
    than the plain one does. (At this size no model, the teacher included, reaches a non-zero mAP: accuracy gains
    are measured in bench/, not here.)"""
    trainer, _ = distilled
    ld_d, kd_d = teacher_distance(trainer.best, teacher_pt, shapes_yaml)
    ld_p, kd_p = teacher_distance(plain.best, teacher_pt, shapes_yaml)
    # plain training also moves towards the teacher (both learn the same data): distillation must do clearly better
    assert ld_d < 0.8 * ld_p and kd_d < 0.8 * kd_p, (ld_d, ld_p, kd_d, kd_p)


@pytest.mark.slow
def test_teacher_frozen_and_unchanged(distilled, teacher_pt, shapes_yaml):
    trainer, before = distilled
    assert sha256(teacher_pt) == before["file"]
    teacher = before["teacher"]
    assert trainer.teacher is None and not teacher.model[-1]._forward_hooks  # released, its hook removed
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():  # weights and BN statistics, after 6 epochs of distillation
        torch.testing.assert_close(v, before["weights"][k], rtol=0, atol=0, msg=k)
    # the fused teacher computes what the checkpoint computes
    image = torch.rand(2, 3, IMGSZ, IMGSZ)
    reference = load_checkpoint(teacher_pt)[0].eval()
    torch.testing.assert_close(teacher(image)[0], reference(image)[0], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_checkpoint_is_the_plain_student(distilled, plain, teacher_pt):
    trainer, _ = distilled
    ckpt = torch.load(trainer.best, weights_only=False)
    student = ckpt["model"]  # strip_optimizer moved the EMA there
    assert type(student).__name__ == "DetectionModel" and student.criterion is None
    assert all(type(m).__module__.startswith(("ultralytics.", "torch.")) for m in student.modules())
    assert ckpt["ema"] is None and not any("teacher" in k for k in ckpt["model"].state_dict())
    # provenance: the teacher's absolute path and file hash, and the distillation settings, but not its weights
    args = ckpt["train_args"]
    assert args["teacher"] == str(Path(teacher_pt).resolve()) and args["teacher_hash"] == f"sha256:{sha256(teacher_pt)}"
    assert (args["ld"], args["kd"], args["vlr"], args["kd_region"]) == (16.0, 0.5, True, "all")
    # the same size as the same student trained without distillation
    plain_ckpt = torch.load(plain.best, weights_only=False)["model"]
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in plain_ckpt.parameters())
    assert abs(trainer.best.stat().st_size - plain.best.stat().st_size) < 4096


@pytest.mark.slow
def test_checkpoint_loads_validates_predicts_in_plain_ultralytics(distilled, shapes_yaml):
    """Plain Ultralytics, without ultrald imported, loads, validates and predicts with best.pt, and its raw outputs are
    those of the student the trainer trained."""
    trainer, _ = distilled
    image = next((shapes_yaml.parent / "images/val").glob("*.png"))
    probe = torch.rand(1, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(0))
    out_file = trainer.save_dir / "o.pt"
    torch.save(probe, trainer.save_dir / "probe.pt")
    code = f"""
import sys
import torch
from ultralytics import YOLO
m = YOLO(r"{trainer.best}")
metrics = m.val(data=r"{shapes_yaml}", imgsz={IMGSZ}, batch=8, plots=False, verbose=False)
r = m.predict(r"{image}", imgsz={IMGSZ}, verbose=False)
assert m.task == "detect" and len(r) == 1 and 0 <= metrics.box.map50 <= 1
last = YOLO(r"{trainer.last}").model.float()
torch.save(last(torch.load(r"{trainer.save_dir / "probe.pt"}"))[0], r"{out_file}")
assert not any(k.startswith("ultrald") for k in sys.modules), "plain Ultralytics must not need ultrald"
print("OK")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-2000:]
    student = copy.deepcopy(trainer.ema.ema).float().eval()  # the final EMA weights, which last.pt holds
    with torch.no_grad():
        torch.testing.assert_close(torch.load(out_file), student(probe)[0], atol=2e-2, rtol=2e-2)


@pytest.mark.slow
def test_cli_train(tmp_root, teacher_pt, student_yaml, shapes_yaml):
    save_dir = tmp_root / "runs" / "cli"
    cmd = [
        "yolo-ld",
        "train",
        f"model={student_yaml}",
        f"teacher={teacher_pt}",
        f"data={shapes_yaml}",
        "epochs=2",
        f"imgsz={IMGSZ}",
        "batch=8",
        "workers=0",
        "plots=False",
        f"project={save_dir.parent}",
        "name=cli",
        "exist_ok=True",
        "kd_type=softmax",
        "vlr_kd=0.5",
        "teacher_min_map=0",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = read_results(save_dir)
    assert len(rows) == 2 and all(r[c] > 0 for r in rows for c in DISTILL_COLUMNS)
    assert load_checkpoint(save_dir / "weights/best.pt")[0].task == "detect"


def test_cli_reports_bad_teacher_without_traceback(tmp_root, student_yaml, shapes_yaml):
    cmd = ["yolo-ld", "train", f"model={student_yaml}", f"data={shapes_yaml}", "teacher=does/not/exist.pt"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, timeout=300)
    assert out.returncode == 2 and "teacher='does/not/exist.pt' does not exist" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_resume_rebuilds_teacher(tmp_root, teacher_pt, student_yaml, shapes_yaml):
    """A run stopped after its first epoch resumes from last.pt with the teacher rebuilt from its path."""

    def stop_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise KeyboardInterrupt

    args = train_args(tmp_root, "resume", student_yaml, shapes_yaml, teacher=str(teacher_pt), epochs=2, ld=3.0)
    args.update(ANY_TEACHER)
    trainer = LDTrainer(overrides=args)
    trainer.add_callback("on_fit_epoch_end", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    last = trainer.last
    assert torch.load(last, weights_only=False)["train_args"]["teacher"] == str(teacher_pt)
    resumed = LDTrainer(overrides=dict(model=str(last), resume=str(last)))
    assert resumed.args.teacher == str(teacher_pt) and resumed.args.ld == 3.0  # not the default: restored
    resumed.train()
    rows = read_results(resumed.save_dir)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["train/ld_loss"] > 0


@pytest.mark.slow
def test_ld_with_ultralytics_feature_imitation_and_teacher_object(tmp_root, teacher_pt, student_yaml, shapes_yaml):
    """dis > 0 runs Ultralytics' DistillationModel beside LD (one teacher forward), handed over to LD after
    `dis_until` of the epochs; a YOLO object works as teacher."""
    from ultralytics import YOLO

    combined = LDTrainer(
        overrides=train_args(
            tmp_root, "dis", student_yaml, shapes_yaml, teacher=str(teacher_pt), epochs=2, dis=0.5, dis_until=0.5
        )
        | ANY_TEACHER
    )
    combined.train()
    first, second = read_results(combined.save_dir)
    assert first["train/dis_loss"] > 0 and first["train/ld_loss"] > 0
    assert second["train/dis_loss"] == 0 and second["train/ld_loss"] > 0  # the feature term is off from epoch 2
    assert type(load_checkpoint(combined.best)[0]).__name__ == "DetectionModel"

    model = YOLO(str(student_yaml))
    model.train(
        trainer=LDTrainer,
        teacher=YOLO(str(teacher_pt)),
        **train_args(tmp_root, "obj", student_yaml, shapes_yaml, epochs=1, **ANY_TEACHER),
    )
    assert read_results(tmp_root / "runs" / "obj")[0]["train/ld_loss"] > 0


def test_feature_weight_falls_along_a_half_cosine_then_stays_off():
    from ultrald.distill.schedules import feature_weight

    assert [feature_weight(6.0, 0.0, e, 10) for e in (0, 5, 9)] == [6.0] * 3  # constant, as Ultralytics
    assert [round(feature_weight(6.0, 0.5, e, 10), 6) for e in range(7)] == [6.0, 5.427051, 3.927051, 2.072949,
                                                                             0.572949, 0.0, 0.0]  # fmt: skip
    assert feature_weight(6.0, 1.0, 5, 10) == pytest.approx(3.0)


def test_metric_of_another_task_refused(tmp_root, untrained_teacher_pt, student_yaml, shapes_yaml):
    with pytest.raises(ValueError, match="metric=dota evaluates obb models, this is a detect run"):
        LDTrainer(
            overrides=train_args(
                tmp_root, "bad-metric", student_yaml, shapes_yaml, teacher=str(untrained_teacher_pt), metric="dota"
            )
        )


@pytest.mark.slow
def test_training_makes_no_network_lookups(tmp_path, teacher_pt, student_yaml, shapes_yaml):
    """A distillation run (with YOLO_OFFLINE=1, as documented) resolves no host name: nothing is fetched."""
    args = train_args(tmp_path, "offline", student_yaml, shapes_yaml, teacher=str(teacher_pt), epochs=1, plots=True)
    args.update(ANY_TEACHER)
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "fresh-config")}  # no fonts there yet
    code = f"""
import socket
lookups = []
resolve = socket.getaddrinfo
socket.getaddrinfo = lambda host, *a, **k: (lookups.append(host), resolve(host, *a, **k))[1]
from ultrald import LDTrainer
LDTrainer(overrides={args!r}).train()
assert not lookups, lookups
print("NO LOOKUPS")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and "NO LOOKUPS" in out.stdout, out.stderr[-3000:]
