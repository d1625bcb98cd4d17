"""Every current Ultralytics family as student and as teacher: YOLOv8, YOLO11, YOLO12, YOLOv10, YOLO26 (+ OBB).

Every pairing is checked at the criterion (seconds): each teacher family read from its checkpoint file as the trainer
reads it, every term finite and non-zero with a finite gradient. One `yolo-ld train` run per kind of student head
(dense DFL, end-to-end DFL, reg_max=1 end-to-end, OBB) checks what only a training run shows."""

import itertools
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import ANY_TEACHER, FAST, IMGSZ, tiny_yaml
from helpers import read_results, save_checkpoint
from ultralytics.cfg import DEFAULT_CFG_DICT
from ultralytics.nn.tasks import DetectionModel, OBBModel

from ultrald.cfg import LD_DEFAULTS
from ultrald.distill.criterion import LDDetectionLoss, LDE2ELoss, LDOBBLoss, build_criterion
from ultrald.distill.teacher import TeacherError, TeacherHead, check_teacher, load_teacher
from ultrald.models import resolve_weights

DETECT = {
    "yolov8": "v8/yolov8.yaml",
    "yolo11": "11/yolo11.yaml",
    "yolo12": "12/yolo12.yaml",
    "yolov10": "v10/yolov10n.yaml",
    "yolo26": "26/yolo26.yaml",
}
OBB = {
    "yolov8": "v8/yolov8-obb.yaml",
    "yolo11": "11/yolo11-obb.yaml",
    "yolo12": "12/yolo12-obb.yaml",
    "yolo26": "26/yolo26-obb.yaml",
}
END2END = {"yolov10", "yolo26"}
NAMES = {0: "a", 1: "b", 2: "c"}


def width(family: str, base: float) -> float:
    """YOLO12's area attention needs channels in multiples of 32, so it cannot be as thin as the others."""
    return 0.25 if family == "yolo12" else base


def build(tmp_path: Path, family: str, task: str, base_width: float, nc: int = 3, names=None, seed: int = 0):
    """A tiny model of `family`, weights perturbed away from Ultralytics' init (untrained heads are near-constant)."""
    base = (DETECT if task == "detect" else OBB)[family]
    cls = DetectionModel if task == "detect" else OBBModel
    w = width(family, base_width)
    torch.manual_seed(seed)
    model = cls(str(tiny_yaml(tmp_path / f"{family}-{task}-{w}.yaml", width=w, base=base)), nc=nc, verbose=False)
    model.names = names or {i: NAMES.get(i, f"c{i}") for i in range(nc)}
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def labels(task: str) -> dict:
    g = torch.Generator().manual_seed(0)
    batch = {
        "img": torch.rand(2, 3, 64, 64, generator=g),
        "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
        "cls": torch.tensor([[0.0], [2.0], [1.0]]),
        "bboxes": torch.tensor([[0.3, 0.3, 0.3, 0.4], [0.7, 0.6, 0.4, 0.3], [0.5, 0.5, 0.6, 0.6]]),
    }
    if task == "obb":
        batch["bboxes"] = torch.cat((batch["bboxes"], torch.tensor([[0.3], [1.0], [-0.2]])), 1)
    return batch


PAIRS = [("detect", s, t) for s, t in itertools.product(DETECT, DETECT)]
PAIRS += [("obb", s, t) for s, t in itertools.product(OBB, OBB)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Students (thin) and teachers (wider) of every family and task, built once; each teacher also saved as an
    Ultralytics checkpoint, under key (task, family, "file")."""
    tmp = tmp_path_factory.mktemp("families")
    built = {
        (task, fam, role): build(tmp, fam, task, 0.0625 if role == "student" else 0.125, seed=int(role == "teacher"))
        for task, fams in (("detect", DETECT), ("obb", OBB))
        for fam in fams
        for role in ("student", "teacher")
    }
    for (task, fam, role), model in list(built.items()):
        if role == "teacher":
            built[(task, fam, "file")] = save_checkpoint(model, tmp / f"{fam}-{task}.pt")
    return built


@pytest.mark.parametrize("task, student, teacher", PAIRS, ids=[f"{t}-{s}<-{te}" for t, s, te in PAIRS])
def test_every_pair_gets_every_term(models, task, student, teacher):
    """The teacher, read from its checkpoint file as the trainer reads it, passes the pair check; each distillation
    term of the pair is finite and non-zero and sends a finite gradient to the student."""
    s = models[(task, student, "student")]
    t = load_teacher(models[(task, teacher, "file")])
    assert type(t) is type(s) and (getattr(t.model[-1], "one2one_cv2", None) is not None) == (teacher in END2END)
    s.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS, "epochs": 2})
    check_teacher(t, s, s.args)
    crit = build_criterion(s, TeacherHead(t), LDOBBLoss if task == "obb" else LDDetectionLoss)
    assert isinstance(crit, LDE2ELoss) == (student in END2END)
    s.train()
    s.zero_grad()
    batch = labels(task)
    loss, items = crit(s(batch["img"]), batch)
    for name in crit.names:
        assert math.isfinite(items[name]) and items[name] > 0, (name, items)
    loss[-len(crit.names) :].sum().backward()
    grads = [p.grad for p in s.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_one_to_one_branch_is_distilled_and_switchable(models):
    """ld_o2o scales the one-to-one branch's terms; at 0 only the one-to-many branch is distilled."""
    s, t = models[("detect", "yolo26", "student")], models[("detect", "yolov10", "teacher")]
    head = TeacherHead(load_teacher(t))
    batch = labels("detect")
    out = {}
    for o2o in (0.0, 1.0, 2.0):
        s.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS, "epochs": 2, "ld_o2o": o2o})
        crit = build_criterion(s, head, LDDetectionLoss)
        s.eval()  # the same BN statistics for every setting
        preds = s(batch["img"])[1]
        out[o2o] = (crit(preds, batch)[1], crit.one2one.loss(preds["one2one"], batch)[1])
    # the one-to-one branch's own terms do not depend on the scale; its share of the column does
    torch.testing.assert_close(out[1.0][1]["ld_loss"], out[2.0][1]["ld_loss"])
    o2m_only = out[0.0][0]["ld_loss"]
    torch.testing.assert_close(out[2.0][0]["ld_loss"] - o2m_only, 2 * (out[1.0][0]["ld_loss"] - o2m_only))
    assert out[1.0][0]["ld_loss"] > o2m_only > 0


def test_dense_teacher_gives_one_to_one_branch_kd_on_positives_only(models):
    s = models[("detect", "yolo26", "student")]
    dense, e2e = (TeacherHead(load_teacher(models[("detect", f, "teacher")])) for f in ("yolo11", "yolo26"))
    s.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS, "epochs": 2})
    assert build_criterion(s, dense, LDDetectionLoss).one2one.dense_kd is False
    assert build_criterion(s, e2e, LDDetectionLoss).one2one.dense_kd is True
    assert build_criterion(s, dense, LDDetectionLoss).one2many.dense_kd is True


def test_other_classes_still_refused_across_families(tmp_path):
    student = build(tmp_path, "yolo26", "detect", 0.0625)
    with pytest.raises(TeacherError, match="teacher has 4 classes, student has 3"):
        check_teacher(build(tmp_path, "yolov8", "detect", 0.125, nc=4), student, SimpleNamespace(**LD_DEFAULTS))


def test_official_name_offline_fails_fast_and_local_file_wins(tmp_path, monkeypatch, untrained_teacher_pt):
    assert os.environ["YOLO_OFFLINE"] == "1"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TeacherError, match=r"teacher='yolov8x.pt' is an official Ultralytics asset .* offline"):
        resolve_weights("yolov8x.pt", "teacher", TeacherError)
    with pytest.raises(TeacherError, match="does not exist"):
        resolve_weights("my-teacher.pt", "teacher", TeacherError)  # not an official name: no download is tried
    (tmp_path / "yolov8x.pt").write_bytes(Path(untrained_teacher_pt).read_bytes())
    assert resolve_weights("yolov8x.pt", "teacher", TeacherError) == tmp_path / "yolov8x.pt"
    assert load_teacher("yolov8x.pt").names == load_teacher(untrained_teacher_pt).names  # the local file is read


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory, shapes_yaml, shapes_obb_yaml):
    """A teacher checkpoint of every family and task, with the class names of the tiny datasets."""
    tmp, files = tmp_path_factory.mktemp("teachers"), {}
    for task, fams, data in (("detect", DETECT, shapes_yaml), ("obb", OBB, shapes_obb_yaml)):
        names = yaml.safe_load(Path(data).read_text())["names"]
        for fam in fams:
            model = build(tmp, fam, task, 0.125, nc=len(names), names=names, seed=1)
            files[(task, fam)] = save_checkpoint(model, tmp / f"{fam}-{task}.pt")
    return files


# One run per kind of student head, each taught by a teacher of another family and head (all pairings are checked at
# the criterion above): dense DFL <- attention (YOLO12), end-to-end DFL <- reg_max=1 end-to-end (two-bin targets, the
# one-to-one branch from the teacher's), reg_max=1 end-to-end <- dense DFL (box-level LD, one-to-one KD on its
# positives only), and an end-to-end reg_max=1 OBB student <- dense DFL OBB (ald on both branches). A dense OBB
# student is trained in test_e2e_obb.py.
RUNS = [
    ("detect", "yolov8", "yolo12"),
    ("detect", "yolov10", "yolo26"),
    ("detect", "yolo26", "yolo11"),
    ("obb", "yolo26", "yolo11"),
]


@pytest.mark.slow
@pytest.mark.parametrize("task, student, teacher", RUNS, ids=[f"{t}-{s}<-{te}" for t, s, te in RUNS])
def test_each_head_kind_trains_under_yolo_ld(
    tmp_path, shapes_yaml, shapes_obb_yaml, teacher_files, task, student, teacher
):
    """`yolo-ld train` picks the trainer from the model's task; the terms are logged finite and non-zero, and best.pt
    is a plain Ultralytics model of the student's head that validates (NMS-free for end-to-end heads)."""
    from ultralytics import YOLO

    from ultrald.cli import entrypoint

    data = shapes_yaml if task == "detect" else shapes_obb_yaml
    teacher_file = teacher_files[(task, teacher)]
    w = width(student, 0.0625)
    base = (DETECT if task == "detect" else OBB)[student]
    model = tiny_yaml(tmp_path / "student.yaml", width=w, base=base)
    args = dict(model=model, teacher=teacher_file, data=data, epochs=1, imgsz=IMGSZ, batch=8, workers=0, plots=False)
    args.update(project=tmp_path / "runs", name="run", seed=0, **FAST, **ANY_TEACHER)  # untrained teachers
    assert entrypoint(["train", *(f"{k}={v}" for k, v in args.items())]) == 0
    row = read_results(tmp_path / "runs" / "run")[0]
    columns = ("ld_loss", "vlr_loss", "kd_loss") + (("ald_loss",) if task == "obb" else ())
    for c in columns:
        assert math.isfinite(row[f"train/{c}"]) and row[f"train/{c}"] > 0, (c, row)
    plain = YOLO(str(tmp_path / "runs" / "run" / "weights" / "best.pt"))
    assert type(plain.model).__name__ == ("DetectionModel" if task == "detect" else "OBBModel")
    assert (getattr(plain.model.model[-1], "one2one_cv2", None) is not None) == (student in END2END)
    assert plain.model.model[-1].reg_max == (1 if student == "yolo26" else 16)
    metrics = plain.val(data=str(data), imgsz=IMGSZ, batch=8, workers=0, plots=False, verbose=False)
    assert math.isfinite(metrics.box.map)
