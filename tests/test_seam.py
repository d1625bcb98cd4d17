"""Smoke tests of ultrald.seam, each use of Ultralytics beyond its documented API: they fail, naming the Ultralytics
version, when Ultralytics moves what ultrald relies on."""

import pytest
import torch
from conftest import tiny_yaml

from ultrald import seam

V = f"Ultralytics {seam.VERSION}"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A dense (YOLOv8) and an end-to-end (YOLO26) tiny detector."""
    from ultralytics.nn.tasks import DetectionModel

    tmp = tmp_path_factory.mktemp("seam")
    dense = DetectionModel(str(tiny_yaml(tmp / "v8.yaml", 0.0625)), nc=3, verbose=False)
    e2e = DetectionModel(str(tiny_yaml(tmp / "26.yaml", 0.0625, "26/yolo26.yaml")), nc=3, verbose=False)
    return dense, e2e


def test_cli_args_and_official_assets():
    assert seam.merge_cli_args(["model", "=", "a.pt", "epochs=", "3"]) == ["model=a.pt", "epochs=3"], V
    assert seam.is_official_asset("yolov8x.pt") and seam.is_official_asset("yolo26n.pt"), V
    assert not seam.is_official_asset("my-teacher.pt"), V


def test_checkpoint_dict(tmp_path, models):
    f = tmp_path / "c.pt"
    torch.save({"model": models[0], "train_args": {"epochs": 3}, "epoch": 2, "optimizer": {"x": 1}}, f)
    ckpt = seam.read_checkpoint_dict(f)
    assert seam.train_args(ckpt) == {"epochs": 3} and seam.resumable(ckpt), V
    assert not seam.resumable({**ckpt, "epoch": -1}) and not seam.resumable({**ckpt, "optimizer": None}), V
    assert seam.train_args({"model": 1}) is None and seam.train_args([]) is None


def test_head_outputs_and_end2end(models):
    dense, e2e = models
    assert not seam.is_end2end(dense) and seam.is_end2end(e2e), V
    img = torch.zeros(1, 3, 64, 64)
    for m in models:
        m.eval()
        raw = seam.raw_head_output(_head(m, img))
        branch = raw["one2many"] if seam.is_end2end(m) else raw
        assert {"boxes", "scores", "feats"} <= branch.keys(), V
    with pytest.raises(seam.SeamError, match="Ultralytics"):
        seam.raw_head_output(torch.zeros(1))


def _head(model, img):
    """The head's output of an eval-mode forward, read by a forward hook as ultrald's TeacherHead reads it."""
    out = {}
    hook = model.model[-1].register_forward_hook(lambda mod, i, o: out.setdefault("o", o))
    with torch.no_grad():
        model(img)
    hook.remove()
    return out["o"]


def test_assigner_outputs_by_position():
    from ultralytics.utils.tal import TaskAlignedAssigner

    a = TaskAlignedAssigner(topk=3, num_classes=2)
    scores, boxes = torch.rand(1, 16, 2), torch.tensor([[[0.0, 0.0, 8.0, 8.0]]]).repeat(1, 16, 1)
    anchors = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="xy"), -1).view(-1, 2) * 2 + 1
    gt = torch.tensor([[[0.0, 0.0, 8.0, 8.0]]])
    target_scores, fg = seam.assigned(a(scores, boxes, anchors, torch.zeros(1, 1, 1), gt, torch.ones(1, 1, 1)))
    assert target_scores.shape == (1, 16, 2) and fg.shape == (1, 16) and fg.dtype == torch.bool and fg.any(), V
    with pytest.raises(seam.SeamError):
        seam.assigned((1, 2))


def test_e2e_loss_branch_weights(models):
    from ultralytics.utils.loss import E2ELoss

    from ultrald.cfg import ld_cfg

    e2e = models[1]
    e2e.args = ld_cfg()
    o2m, o2o = seam.e2e_weights(E2ELoss(e2e))
    assert 0 < o2m <= 1 and o2o == pytest.approx(1 - o2m), V


def test_feature_distillation_wrapper_and_setup(models):
    from types import SimpleNamespace

    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.nn.distill_model import DistillationModel

    from ultrald.cfg import ld_cfg

    dense = models[0]
    student = type(dense)(dense.yaml, nc=3, verbose=False)
    student.args = SimpleNamespace(**{**ld_cfg(), "dis": 6.0})
    wrapped = DistillationModel(teacher_model=dense, student_model=student)  # a module, not a path
    assert seam.feature_model(wrapped) is wrapped and seam.feature_model(student) is None, V
    assert seam.feature_student(wrapped) is student, V
    seam.set_feature_weight(wrapped, 2.5)
    assert wrapped.dis == 2.5, V
    assert seam.release_feature_teacher(wrapped) is student and wrapped.teacher_model is None, V

    assert callable(getattr(BaseTrainer, "_setup_train", None)), V  # the private method SetupHooks wraps
    seen = []

    class Base:
        def _setup_train(self):
            seen.append(("setup", self.args.distill_model))

    class Trainer(seam.SetupHooks, Base):
        args = SimpleNamespace(distill_model="t.pt")

        def feature_teacher(self):
            return dense

        def after_setup(self):
            seen.append(("after", self.args.distill_model))

    Trainer()._setup_train()
    assert seen == [("setup", dense), ("after", "t.pt")]  # the module during the setup, the path after it


def test_head_channels_are_the_feature_maps_the_head_reads(models):
    for m in models:
        m.train()
        raw = m(torch.zeros(1, 3, 64, 64))
        feats = (raw["one2many"] if seam.is_end2end(m) else raw)["feats"]
        assert seam.head_channels(m) == [f.shape[1] for f in feats], V
    with pytest.raises(seam.SeamError, match="Ultralytics"):
        seam.head_channels(torch.nn.Sequential(torch.nn.Identity()))


@pytest.mark.parametrize("name", ["SGD", "AdamW", "MuSGD"])
def test_param_groups_of_a_module_follow_ultralytics_groups(models, name):
    """A module's biases, norm weights and conv weights join new groups with the settings of Ultralytics' groups of
    the same kind (lr, momentum, weight decay, MuSGD's flag), which its warmup and scheduler then drive."""
    from types import SimpleNamespace

    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.nn.modules import Conv

    fake = SimpleNamespace(args=SimpleNamespace(warmup_bias_lr=0.1, optimizer=name, lr0=0.01), data={"nc": 3})
    opt = DetectionTrainer.build_optimizer(fake, models[0], name, lr=0.01, momentum=0.9, decay=5e-4)
    before = len(opt.param_groups)
    extra = torch.nn.Sequential(Conv(4, 8, 3), torch.nn.Conv2d(8, 4, 1))
    seam.add_param_groups(opt, extra)
    new = opt.param_groups[before:]
    assert sum(len(g["params"]) for g in new) == len(list(extra.parameters())), V
    by_kind = {g["param_group"]: g for g in new}
    assert by_kind["bias"]["weight_decay"] == 0 and by_kind["bn"]["weight_decay"] == 0, V
    weights = by_kind.get("weight") or by_kind["muon"]
    assert weights["weight_decay"] == 5e-4 and weights["lr"] == 0.01, V
    opt.zero_grad()
    sum(p.sum() for p in extra.parameters()).backward()
    opt.step()  # the new groups step with the rest
