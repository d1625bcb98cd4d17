"""The training-only DFL branch of reg_max=1 students (`dfl_branch`): the paper's LD on it, and nothing of it saved."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import ANY_TEACHER, FAST, IMGSZ, tiny_yaml
from helpers import read_results
from ultralytics.cfg import DEFAULT_CFG_DICT
from ultralytics.nn.tasks import DetectionModel

from ultrald.cfg import LD_DEFAULTS, check_ld_args, distill_config
from ultrald.distill.branch import DFLBranch, dfl_branch
from ultrald.distill.criterion import LDDetectionLoss, build_criterion
from ultrald.distill.losses import kl_distill
from ultrald.distill.teacher import TeacherError, TeacherHead, load_teacher
from ultrald.seam import head_channels

BATCH = {
    "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
    "cls": torch.tensor([[0.0], [2.0], [1.0]]),
    "bboxes": torch.tensor([[0.3, 0.3, 0.3, 0.4], [0.7, 0.6, 0.4, 0.3], [0.5, 0.5, 0.6, 0.6]]),
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A YOLO26 (reg_max=1, end-to-end) student and a YOLOv8 (DFL, 16 bins) teacher, weights perturbed."""
    tmp = tmp_path_factory.mktemp("branch")
    torch.manual_seed(0)
    student = DetectionModel(str(tiny_yaml(tmp / "s.yaml", 0.0625, "26/yolo26.yaml")), nc=3, verbose=False)
    teacher = DetectionModel(str(tiny_yaml(tmp / "t.yaml", 0.125)), nc=3, verbose=False)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    student.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS})
    return student, TeacherHead(load_teacher(teacher)), teacher


def losses(student, head, branch, **keys):
    """The one-to-many criterion's items (LD only: no VLR, no KD) on a fixed batch."""
    cfg = distill_config({"vlr": False, "kd": 0.0, **keys})
    crit = build_criterion(student, head, LDDetectionLoss, cfg, branch).one2many
    img = torch.rand(2, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(1))
    student.train()
    preds = student(img)["one2many"]
    loss, items, bad = crit.distilled_loss(preds, {**BATCH, "img": img})
    assert not bad
    return crit, preds, loss, items, img


def test_branch_outputs_edge_logits_in_the_heads_order(pair):
    student = pair[0]
    branch = DFLBranch(head_channels(student), 16)
    feats = student.train()(torch.rand(1, 3, IMGSZ, IMGSZ))["one2many"]["feats"]
    out = branch(feats)
    assert out.shape == (1, 64, sum(f.shape[2] * f.shape[3] for f in feats))
    # the last grid point is the last level's bottom-right cell
    torch.testing.assert_close(out[0, :, -1], branch.levels[-1](feats[-1])[0, :, -1, -1])


def test_ld_on_the_branch_is_the_papers_kl_on_the_main_region(pair):
    """ld_loss = ld * sum_i w_i KL_i / max(sum_i w_i, 1) over the positives, KL_i the mean over edges of the branch's
    and the teacher's edge distributions (T=1), w_i the target score: the DFL head's LD, read off the branch."""
    student, head, _ = pair
    torch.manual_seed(2)
    branch = DFLBranch(head_channels(student), 16)
    crit, preds, _, items, img = losses(student, head, branch, dfl_branch=True, ld_box=0.0)
    a = crit.assigner.last
    assert a.fg_mask.any()
    rows = a.fg_mask.nonzero(as_tuple=True)
    s = branch(preds["feats"]).transpose(1, 2)[rows].unflatten(-1, (4, 16))
    t = head(img, "one2many")["boxes"].transpose(1, 2)[rows].unflatten(-1, (4, 16))
    w = a.target_scores.sum(-1)[rows]
    expected = 16.0 * (kl_distill(s, t, 1.0).mean(-1) * w).sum() / w.sum().clamp(min=1)
    torch.testing.assert_close(items["ld_loss"], expected.detach())


def test_branch_adds_to_the_box_level_term_and_trains_the_features(pair):
    student, head, _ = pair
    torch.manual_seed(2)
    branch = DFLBranch(head_channels(student), 16)
    box_only = losses(student, head, None, ld_box=0.5)[3]["ld_loss"]
    kl_only = losses(student, head, branch, dfl_branch=True, ld_box=0.0)[3]["ld_loss"]
    _, _, loss, both, _ = losses(student, head, branch, dfl_branch=True, ld_box=0.5)
    torch.testing.assert_close(both["ld_loss"], box_only + kl_only)
    student.zero_grad(), branch.zero_grad()
    loss[-3].backward()  # ld_loss alone
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in branch.parameters())
    body = student.model[:-1]  # the backbone and neck, whose feature maps the branch reads
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in body.parameters())


def test_who_gets_a_branch(pair, tmp_path):
    student, _, teacher = pair
    on = distill_config({"dfl_branch": True})
    assert dfl_branch(student, teacher, distill_config({})) is None  # off by default
    assert dfl_branch(student, teacher, on).reg_max == 16
    dense = DetectionModel(str(tiny_yaml(tmp_path / "d.yaml", 0.0625)), nc=3, verbose=False)
    assert dfl_branch(dense, teacher, on) is None  # a DFL student: LD reads its own head
    with pytest.raises(TeacherError, match="needs a teacher with a DFL head"):
        dfl_branch(student, student, on)
    with pytest.raises(TypeError, match="'dfl_branch=yes' must be True or False"):
        check_ld_args({**LD_DEFAULTS, "dfl_branch": "yes"})


@pytest.mark.slow
def test_training_with_the_branch_saves_a_plain_yolo26(tmp_root, shapes_yaml, tmp_path):
    """One epoch with dfl_branch: the branch is trained (its weights move), the losses are finite, and best.pt has
    exactly the parameters of a plain YOLO26 student and predicts in plain Ultralytics."""
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionTrainer

    from ultrald import LDTrainer

    teacher_yaml = tiny_yaml(tmp_path / "t.yaml", 0.125)
    base = dict(data=str(shapes_yaml), epochs=1, imgsz=IMGSZ, batch=8, workers=0, plots=False, seed=0, **FAST)
    t = DetectionTrainer(overrides=dict(model=str(teacher_yaml), project=str(tmp_path), name="t", **base))
    t.train()
    student_yaml = tiny_yaml(tmp_path / "s.yaml", 0.0625, "26/yolo26.yaml")
    trainer = LDTrainer(overrides=dict(model=str(student_yaml), teacher=str(t.best), dfl_branch=True, ld_box=0.0,
                                       project=str(tmp_path), name="s", **base, **ANY_TEACHER))  # fmt: skip
    seen = {}
    trainer.add_callback("on_train_start", lambda tr: seen.update(branch=tr.branch, start=copy.deepcopy(tr.branch)))
    trainer.train()
    moved = [
        not torch.equal(a, b) for a, b in zip(seen["branch"].state_dict().values(), seen["start"].state_dict().values())
    ]
    assert any(moved)
    row = read_results(trainer.save_dir)[0]
    assert math.isfinite(row["train/ld_loss"]) and row["train/ld_loss"] > 0
    saved = YOLO(str(trainer.best)).model
    plain = DetectionModel(str(student_yaml), nc=saved.nc, verbose=False)
    assert saved.state_dict().keys() == plain.state_dict().keys()
    assert sum(p.numel() for p in saved.parameters()) == sum(p.numel() for p in plain.parameters())
    assert trainer.branch is None  # released with the teacher
    YOLO(str(trainer.best)).predict(torch.rand(1, 3, IMGSZ, IMGSZ), verbose=False)
