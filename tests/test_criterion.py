"""The assembled criterion: Ultralytics' loss + ld_loss, vlr_loss, kd_loss on a real (tiny) YOLOv8 head."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_yaml
from ultralytics.cfg import DEFAULT_CFG_DICT
from ultralytics.nn.tasks import DetectionModel

from ultrald.cfg import LD_DEFAULTS
from ultrald.distill.criterion import LDDetectionLoss
from ultrald.distill.teacher import TeacherHead, load_teacher

NAMES = ("box_loss", "cls_loss", "dfl_loss", "ld_loss", "vlr_loss", "kd_loss")


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    torch.manual_seed(0)
    model = DetectionModel(str(tiny_yaml(tmp_path_factory.mktemp("m") / "s.yaml")), nc=3, verbose=False)
    model.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS})
    return model


def perturbed(model, std=0.3):
    """A frozen teacher: `model` with noise on every weight (untrained heads output near-constant logits)."""
    g = torch.Generator().manual_seed(1)
    teacher = copy.deepcopy(model)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return TeacherHead(load_teacher(teacher))


def batch(boxes=True, b=2):
    g = torch.Generator().manual_seed(0)
    out = {"img": torch.rand(b, 3, 64, 64, generator=g)}
    if boxes:
        out.update(
            batch_idx=torch.tensor([0.0, 0.0, 1.0]),
            cls=torch.tensor([[0.0], [2.0], [1.0]]),
            bboxes=torch.tensor([[0.3, 0.3, 0.3, 0.4], [0.7, 0.6, 0.4, 0.3], [0.5, 0.5, 0.6, 0.6]]),
        )
    else:
        out.update(batch_idx=torch.zeros(0), cls=torch.zeros(0, 1), bboxes=torch.zeros(0, 4))
    return out


def run(student, teacher, b=None, **hyp):
    """Return (loss vector, items) of the criterion with hyperparameters `hyp` on a batch, student in eval mode."""
    student.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS, **hyp})
    student.eval()  # same BN statistics as the eval-mode teacher
    crit = LDDetectionLoss(student, teacher)
    b = b or batch()
    return crit(student(b["img"]), b)


def teacher_from(student, edit=None):
    """A teacher callable returning the student's own head outputs, optionally edited."""

    def head(img, branch="one2many"):
        with torch.no_grad():
            out = {k: v.clone() for k, v in student(img)[1].items() if k != "feats"}
        if edit:
            edit(out)
        return out

    return head


def test_identical_teacher_gives_zero_loss_and_zero_gradient(student):
    teacher = TeacherHead(load_teacher(copy.deepcopy(student)))
    loss, items = run(student, teacher)
    assert tuple(items) == NAMES and loss.shape == (6,)
    assert all(abs(items[k]) < 1e-6 for k in NAMES[3:])
    student.zero_grad()
    loss[3:].sum().backward()
    assert max(p.grad.abs().max().item() for p in student.parameters() if p.grad is not None) < 1e-6


def test_distillation_terms_nonzero_with_another_teacher_and_scaled_by_batch(student):
    loss, items = run(student, perturbed(student))
    for k in NAMES[3:]:
        assert items[k] > 0 and torch.isfinite(items[k])
    torch.testing.assert_close(loss[3:], torch.stack([items[k] for k in NAMES[3:]]) * 2)  # x batch size


def test_constant_shift_of_one_edge_keeps_ld_zero(student):
    """Channel c = edge * reg_max + bin: a constant added to all bins of one edge changes no distribution."""

    def shift_bottom_edge(out):
        out["boxes"][:, 3 * 16 : 4 * 16] += 5.0

    _, items = run(student, teacher_from(student, shift_bottom_edge))
    assert items["ld_loss"] < 1e-6 and items["vlr_loss"] < 1e-6

    def shift_bins(out):  # same amount of change, but across edges: distributions do change
        out["boxes"][:, 8:24] += 5.0

    _, items = run(student, teacher_from(student, shift_bins))
    assert items["ld_loss"] > 1e-3


def test_weights_scale_and_switch_terms(student):
    other = perturbed(student)
    _, base = run(student, other)
    _, double = run(student, other, **{k: 2 * LD_DEFAULTS[k] for k in ("ld", "kd", "vlr_ld")})
    for k in ("ld_loss", "kd_loss", "vlr_loss"):
        torch.testing.assert_close(double[k], 2 * base[k])
    _, off = run(student, other, vlr=False, kd=0.0)
    assert off["vlr_loss"] == 0 and off["kd_loss"] == 0
    torch.testing.assert_close(off["ld_loss"], base["ld_loss"])
    _, vlr_kd = run(student, other, vlr_ld=0.0, vlr_kd=1.0)
    assert vlr_kd["vlr_loss"] > 0


def test_dense_kd_is_the_bernoulli_kl_of_every_grid_point_over_the_target_score_sum(student):
    """A teacher equal to the student but for one class logit at one grid point: dense KD is exactly the Bernoulli KL
    of that one logit, written out by hand, times T^2 and kd, over the target-score sum."""
    point, delta, temp = 17, 3.0, 2.0

    def raise_one_logit(out):
        out["scores"][0, 1, point] += delta

    teacher = teacher_from(student, raise_one_logit)
    student.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS, "kd_region": "all", "kd": 0.7})
    student.eval()
    crit, b = LDDetectionLoss(student, teacher), batch()
    preds = student(b["img"])
    _, items = crit(preds, b)
    logit = preds[1]["scores"][0, 1, point].item()
    p, q = (1 / (1 + math.exp(-x / temp)) for x in (logit + delta, logit))
    kl = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    expected = 0.7 * temp**2 * kl / crit.assigner.last.target_scores.sum().clamp(min=1).item()
    assert items["kd_loss"].item() == pytest.approx(expected, rel=1e-4)
    assert items["ld_loss"] < 1e-6  # the edges are the student's own

    other = perturbed(student)
    _, dense = run(student, other, kd=0.7, kd_region="all")
    _, main = run(student, other, kd=0.7, kd_region="main")  # the positives only, weighted by their target scores
    assert 0 < main["kd_loss"] < dense["kd_loss"] / 5
    torch.testing.assert_close(dense["ld_loss"], main["ld_loss"])  # LD stays on the main region


def test_batch_without_boxes_gives_zero_not_nan(student):
    other = perturbed(student)
    loss, items = run(student, other, b=batch(boxes=False), kd_region="main")
    assert torch.isfinite(loss).all()
    assert all(items[k] == 0 for k in NAMES[3:])
    loss, items = run(student, other, b=batch(boxes=False), kd_region="all")  # the background is still distilled
    assert torch.isfinite(loss).all() and items["ld_loss"] == items["vlr_loss"] == 0 and items["kd_loss"] > 0


def test_low_precision_autocast_gives_finite_float32_terms(student):
    other = perturbed(student)
    _, ref = run(student, other)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, items = run(student, other)
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    for k in NAMES[3:]:  # bf16 logits (8 bits of mantissa), float32 softmax/KL
        assert items[k] == pytest.approx(ref[k].item(), rel=0.1)


def test_obb_criterion_identical_teacher_zero_and_angle_term(tmp_path):
    from ultralytics.nn.tasks import OBBModel

    from ultrald.distill.criterion import LDOBBLoss

    torch.manual_seed(0)
    model = OBBModel(str(tiny_yaml(tmp_path / "o.yaml", base="v8/yolov8-obb.yaml")), nc=3, verbose=False)
    model.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS})
    model.eval()
    b = batch()
    b["bboxes"] = torch.cat((b["bboxes"], torch.tensor([[0.3], [1.0], [-0.2]])), 1)  # xywhr
    crit = LDOBBLoss(model, TeacherHead(load_teacher(copy.deepcopy(model))))
    _, items = crit(model(b["img"]), b)
    assert tuple(items)[-5:] == ("angle_loss", "ld_loss", "vlr_loss", "kd_loss", "ald_loss")
    assert all(abs(items[k]) < 1e-6 for k in ("ld_loss", "vlr_loss", "kd_loss", "ald_loss"))

    def turn(out, by):
        out["angle"] = out["angle"] + by

    _, half_turn = LDOBBLoss(model, teacher_from(model, lambda o: turn(o, math.pi)))(model(b["img"]), b)
    assert half_turn["ald_loss"] < 1e-6  # the same boxes
    _, off = LDOBBLoss(model, teacher_from(model, lambda o: turn(o, 0.4)))(model(b["img"]), b)
    assert off["ald_loss"] > 1e-3 and off["ld_loss"] < 1e-6
    assert crit.assigner.last.fg_mask.any()


def test_teacher_runs_in_the_autocast_dtype_it_is_given_and_losses_stay_float32(student):
    """The trainer wraps the loss in autocast (fp16 on CUDA with AMP); here bfloat16 on the CPU stands in."""
    head = perturbed(student)
    b = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(b["img"])
        assert out["boxes"].dtype == torch.bfloat16 and out["scores"].dtype == torch.bfloat16
        assert torch.is_inference(out["boxes"])  # no autograd graph is kept for the teacher
        student.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS})
        student.train()
        loss, items = LDDetectionLoss(student, head)(student(b["img"]), b)
    assert all(items[k].dtype == torch.float32 and torch.isfinite(items[k]) and items[k] > 0 for k in NAMES[3:])
    loss[3:].sum().backward()  # gradients flow to the student through the fp32 loss math
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def hand_case():
    """One image, 3 grid points, 2 classes, 2 bins per edge (T=1): positives A and B, a negative C.

    Edge logits: the student's are 0 everywhere (each edge uniform, [1/2, 1/2]); the teacher's are [0, ln 3]
    ([1/4, 3/4]) on all 4 edges of A, on 2 edges of B and on all 4 of C. One edge's KL (averaged over its 2 bins) is
    k = (1/4 ln(1/2) + 3/4 ln(3/2)) / 2, so the rows' KL (averaged over the 4 edges) are A: k, B: k/2, C: k.
    Top class probabilities: student A 1/2, B 1/4, C 0.9; teacher A 1/4, B 1/2, C 0.9; target scores A 0.3, B 0.5.
    """
    from ultrald.distill.criterion import Assignment

    logit = math.log  # sigmoid(ln(p / (1 - p))) = p
    score = lambda p: logit(p / (1 - p))  # noqa: E731
    s_boxes, t_boxes = torch.zeros(1, 8, 3), torch.zeros(1, 8, 3)
    for point, edges in ((0, 4), (1, 2), (2, 4)):
        t_boxes[0, [2 * e + 1 for e in range(edges)], point] = logit(3)  # channel = edge * reg_max + bin
    s_scores = torch.tensor([[[score(1 / 2), score(1 / 4), score(0.9)], [-9.0, -9.0, -9.0]]])  # (1, nc, A)
    t_scores = torch.tensor([[[-9.0, -9.0, -9.0], [score(1 / 4), score(1 / 2), score(0.9)]]])  # other class, same max
    target = torch.tensor([[[0.3, 0.0], [0.0, 0.5], [0.0, 0.0]]])  # (1, A, nc)
    assigned = Assignment(torch.zeros(1, 1, 4), torch.ones(1, 1, 1), target, torch.tensor([[True, True, False]]))
    k = (0.25 * math.log(0.5) + 0.75 * math.log(1.5)) / 2
    return {"boxes": s_boxes, "scores": s_scores}, {"boxes": t_boxes, "scores": t_scores}, assigned, k


@pytest.mark.parametrize(
    "weight, expected",
    [  # sum over the positives of weight x row KL, over the sum of the weights; the negative C never counts
        ("target", lambda k: (0.3 * k + 0.5 * k / 2) / 1.0),  # sum 0.8, floored at 1 as Ultralytics floors DFL's
        ("student", lambda k: (0.5 * k + 0.25 * k / 2) / 0.75),  # a true weighted mean: no floor of 1
        ("teacher", lambda k: (0.25 * k + 0.5 * k / 2) / 0.75),
    ],
)
def test_main_weight_is_a_weighted_mean_over_the_positives(student, weight, expected):
    """main_weight picks each positive's weight; LD is the weighted mean of the rows' edge KL, by hand."""
    preds, teacher, assigned, k = hand_case()
    hyp = dict(main_weight=weight, ld=1.0, ld_temp=1.0, kd=0.0, vlr=False)
    student.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS, **hyp})
    ld, vlr, kd = LDDetectionLoss(student, teacher_from(student)).distill(preds, teacher, assigned)
    assert ld.item() == pytest.approx(expected(k), rel=1e-5)
    assert vlr == kd == 0
