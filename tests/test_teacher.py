"""Every bad teacher / student pair and bad key is refused with a message naming the problem."""

from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_yaml
from ultralytics.nn.tasks import DetectionModel, OBBModel

from ultrald.cfg import LD_DEFAULTS, check_ld_args
from ultrald.distill.teacher import TeacherError, TeacherHead, check_teacher, load_teacher
from ultrald.models import resolve_weights

NAMES = {i: f"c{i}" for i in range(4)}


def build(tmp_path, name, cls=DetectionModel, nc=4, names=None, ch=3, **yaml_keys):
    """A tiny untrained model with class names."""
    model = cls(str(tiny_yaml(tmp_path / f"{name}.yaml", **yaml_keys)), nc=nc, ch=ch, verbose=False)
    model.names = names or {i: f"c{i}" for i in range(nc)}
    return model


def args(**kw):
    return SimpleNamespace(**{**LD_DEFAULTS, **kw})


@pytest.fixture
def student(tmp_path):
    return build(tmp_path, "student")


def test_matching_teacher_passes(tmp_path, student):
    check_teacher(build(tmp_path, "teacher", width=0.25), student, args())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: build(p, "obb", cls=OBBModel, base="v8/yolov8-obb.yaml"), "teacher task 'obb' does not match"),
        (lambda p: build(p, "nc", nc=5), "teacher has 5 classes, student has 4"),
        (lambda p: build(p, "names", names={0: "c1", 1: "c0", 2: "c2", 3: "c3"}), "differ from the student's"),
        (lambda p: build(p, "p2", base="v8/yolov8-p2.yaml"), r"teacher strides \[4.0, 8.0, 16.0, 32.0\] differ"),
        (lambda p: build(p, "ch", ch=1), "teacher takes 1 input channels, student takes 3"),
    ],
)
def test_mismatched_teacher_is_refused(tmp_path, student, make, match):
    with pytest.raises(TeacherError, match=match):
        check_teacher(make(tmp_path), student, args())


def test_end2end_teacher_runs_once_per_batch_and_gives_each_branch(tmp_path, student):
    v10 = build(tmp_path, "v10", base="v10/yolov10n.yaml")  # end-to-end with a DFL one-to-many branch
    check_teacher(v10, student, args())
    head = TeacherHead(load_teacher(v10))
    calls = []
    head.model.model[-1].register_forward_hook(lambda *a: calls.append(1))
    img = torch.zeros(2, 3, 64, 64)
    o2m, o2o = head(img, "one2many"), head(img, "one2one")
    assert len(calls) == 1 and o2m is not o2o  # one forward serves both student branches
    assert o2m["boxes"].shape == (2, 64, 84) and o2o["scores"].shape == (2, 4, 84)
    head.close()
    with torch.no_grad():
        head.model(torch.ones(2, 3, 64, 64))
    assert head.output is None  # the hook is gone


def test_softmax_kd_refused_with_one_class(tmp_path):
    one = build(tmp_path, "one", nc=1)
    with pytest.raises(TeacherError, match="kd_type=binary"):
        check_teacher(one, build(tmp_path, "one_s", nc=1), args(kd_type="softmax"))


def test_missing_or_wrong_teacher_file(tmp_path):
    with pytest.raises(TeacherError, match="teacher='.*nope.pt' does not exist"):
        resolve_weights(tmp_path / "nope.pt", "teacher", TeacherError)
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(TeacherError, match="is not a \\*.pt checkpoint"):
        resolve_weights(tmp_path / "weights.txt", "teacher", TeacherError)
    with pytest.raises(TeacherError, match="not a checkpoint path"):
        load_teacher(42)


def test_loaded_teacher_is_frozen_and_in_eval(tmp_path):
    teacher = load_teacher(build(tmp_path, "t"))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize(
    "key, value, err, match",
    [
        ("ld", "abc", TypeError, "'ld=abc' is of type str"),
        ("kd", -1.0, ValueError, "'kd=-1.0' is negative"),
        ("ld_temp", 0, ValueError, "'ld_temp=0' must be > 0"),
        ("vlr_alpha", 1.5, ValueError, "must lie in \\[0, 1\\)"),
        ("vlr", "yes", TypeError, "'vlr=yes' must be True or False"),
        ("kd_type", "l2", ValueError, "'kd_type=l2' is not one of"),
        ("kd_region", "neg", ValueError, "'kd_region=neg' is not one of"),
        ("vlr_ld", True, TypeError, "expected a number"),
    ],
)
def test_bad_keys(key, value, err, match):
    with pytest.raises(err, match=match):
        check_ld_args({**LD_DEFAULTS, key: value})


def test_trainer_refuses_missing_teacher_before_creating_a_run(tmp_path, shapes_yaml):
    from ultrald import LDTrainer

    project = tmp_path / "runs"
    with pytest.raises(TeacherError, match="missing.pt' does not exist"):
        LDTrainer(
            overrides=dict(model="yolov8n.yaml", data=str(shapes_yaml), teacher="missing.pt", project=str(project))
        )
    with pytest.raises(TeacherError, match="teacher= is required"):
        LDTrainer(overrides=dict(model="yolov8n.yaml", data=str(shapes_yaml), project=str(project)))
    base = {"model": "yolov8n.yaml", "data": str(shapes_yaml), "project": str(project)}
    with pytest.raises(
        TeacherError, match="teacher=yolov8n-seg.yaml builds a model of task 'segment', the student's task is 'detect'"
    ):
        LDTrainer(overrides={**base, "teacher": "yolov8n-seg.yaml"})  # before a teacher stage trains it
    with pytest.raises(ValueError, match="'epochs' must be >= 1"):
        LDTrainer(overrides={**base, "teacher": "yolov8n.yaml", "epochs": 0})  # Ultralytics' checks, before a stage
    with pytest.raises(TeacherError, match="teacher='yolov8q.yaml' is neither a yaml file nor a model yaml"):
        LDTrainer(
            overrides={
                "model": "yolov8n.yaml",
                "data": str(shapes_yaml),
                "teacher": "yolov8q.yaml",
                "project": str(project),
            }
        )
    assert not project.exists()  # nothing written


def test_explicit_dis_is_kept_and_ultralytics_defaults_do_not_override_ultrald():
    from ultralytics.cfg import DEFAULT_CFG, DEFAULT_CFG_DICT

    from ultrald.cfg import ld_cfg

    assert ld_cfg({"dis": 6.0})["dis"] == 6.0  # a recipe that sets Ultralytics' default value on purpose
    assert ld_cfg({**DEFAULT_CFG_DICT, "save_dir": ""})["dis"] == 0.0  # a DDP worker's cfg: ultrald's default holds
    assert ld_cfg(DEFAULT_CFG)["dis"] == 0.0 and ld_cfg({**DEFAULT_CFG_DICT, **LD_DEFAULTS, "dis": 6.0})["dis"] == 6.0


def test_the_teacher_records_the_epochs_of_its_whole_training(tmp_path):
    """`distill_schedule=auto` compares the student's epochs with these: a file's and a YOLO object's recorded
    `train_args.epochs` when the teacher was trained from a yaml; None when it started from weights (its earlier
    training is not on record), was resumed, records none, is a bare module, or holds no epoch count."""
    from helpers import save_checkpoint
    from ultralytics import YOLO

    from ultrald.engine.teacher_stage import build_teacher, trained_epochs

    model, scratch = build(tmp_path, "t"), {"epochs": 7, "model": "yolov8x.yaml", "pretrained": True}
    cases = {
        "seven": (scratch, 7),
        "pt-not-pretrained": ({**scratch, "model": "yolov8x.pt", "pretrained": False}, 7),
        "fine-tuned": ({**scratch, "model": "yolov8x.pt"}, None),
        "weights-path": ({**scratch, "pretrained": "coco.pt"}, None),
        "resumed": ({**scratch, "resume": "last.pt"}, None),
        "none": ({}, None),
        "no-model": ({"epochs": 7}, None),
        "bad": ({**scratch, "epochs": True}, None),
    }
    for name, (args, epochs) in cases.items():
        assert trained_epochs(args) == epochs, name
    for name in ("seven", "fine-tuned", "none"):
        path = save_checkpoint(model, tmp_path / f"{name}.pt", cases[name][0])
        assert build_teacher(str(path), None, None, "detect").epochs == cases[name][1], name
    assert build_teacher(YOLO(str(tmp_path / "seven.pt")), None, None, "detect").epochs == 7
    assert build_teacher(model, None, None, "detect").epochs is None


def test_a_resumed_teacher_stage_keeps_its_epochs(tmp_path, shapes_yaml, monkeypatch):
    """A from-scratch teacher stage interrupted and resumed leaves a best.pt whose train_args name last.pt (Ultralytics'
    resume): its epochs come from the stage's record, so `auto` runs what an uninterrupted stage gives."""
    import yaml
    from helpers import save_checkpoint

    from ultrald.engine import teacher_stage

    names = yaml.safe_load(shapes_yaml.read_text())["names"]
    resumed = {"epochs": 7, "model": str(tmp_path / "last.pt"), "resume": str(tmp_path / "last.pt")}
    best = save_checkpoint(build(tmp_path, "t", nc=len(names), names=names), tmp_path / "best.pt", resumed)
    record = {"reason": "trained from scratch", "epochs": 7, "run": str(tmp_path)}
    monkeypatch.setattr(teacher_stage, "teacher_stage", lambda *a: (best, record))  # as a resumed stage returns
    args = {"data": str(shapes_yaml), "epochs": 7}
    assert teacher_stage.build_teacher(str(tiny_yaml(tmp_path / "y.yaml")), None, args, "detect").epochs == 7
    monkeypatch.setattr(teacher_stage, "teacher_stage", lambda *a: (best, {**record, "reason": "fine-tuned from"}))
    assert teacher_stage.build_teacher(str(tiny_yaml(tmp_path / "y.yaml")), None, args, "detect").epochs is None
