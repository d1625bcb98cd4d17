"""Teacher-guided label assignment (`assign`, `assign_until`): the assigner ranks by the teacher's predictions.

The hand case: one image of 64 px, one box of class 1 whose inside holds 24 grid points (16 at stride 8, 4 at 16, 4
at 32). Every prediction there is the box itself, exactly, so the task-aligned metric s^0.5 * IoU^6 ranks the grid
points by their class score alone and TAL's top 10 are the 10 most confident. The student is confident on the first
10 of the 24 (set S), the teacher on the last 10 (set T): the student's assignment is S, the teacher's T.
"""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import ANY_TEACHER, FAST, IMGSZ, tiny_yaml
from helpers import read_results
from ultralytics.cfg import DEFAULT_CFG_DICT
from ultralytics.nn.tasks import DetectionModel, OBBModel
from ultralytics.utils.loss import v8DetectionLoss
from ultralytics.utils.tal import TaskAlignedAssigner, make_anchors

from ultrald.cfg import LD_DEFAULTS, check_ld_args
from ultrald.distill.assign import Prediction, assign_mode, decode_prediction, mean_angle, mix_predictions
from ultrald.distill.criterion import LDDetectionLoss, LDOBBLoss, build_criterion, schedule_criterion
from ultrald.distill.edges import two_bin_target
from ultrald.distill.schedules import SCHEDULES, auto, constant, cosine, mosaic_open

NC, REG_MAX, GT_CLASS = 3, 16, 1
GT = torch.tensor([12.0, 12.0, 52.0, 52.0])  # xyxy pixels in a 64 px image


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    torch.manual_seed(0)
    model = DetectionModel(str(tiny_yaml(tmp_path_factory.mktemp("m") / "s.yaml")), nc=NC, verbose=False)
    return model.eval()


def criterion(model, teacher, cls=LDDetectionLoss, **hyp):
    """The criterion of `model` under ultrald's defaults and `hyp`."""
    model.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS, "epochs": 10, **hyp})
    return cls(model, teacher)


def one_box_batch():
    """One 64 px image with the box GT of class GT_CLASS (labels are normalised xywh)."""
    xywh = torch.cat(((GT[:2] + GT[2:]) / 2, GT[2:] - GT[:2])) / IMGSZ
    return {"img": torch.zeros(1, 3, IMGSZ, IMGSZ), "batch_idx": torch.zeros(1), "cls": torch.tensor([[1.0]]),
            "bboxes": xywh[None]}  # fmt: skip


def grid():
    """Anchor points (A, 2) and strides (A, 1) of a 64 px image, in pixels, and the feature maps that make them."""
    feats = [torch.zeros(1, 1, IMGSZ // s, IMGSZ // s) for s in (8, 16, 32)]
    points, strides = make_anchors(feats, torch.tensor([8.0, 16.0, 32.0]), 0.5)
    return points * strides, strides, feats


def inside():
    """Indices of the grid points strictly inside GT, level by level (24 of them)."""
    points = grid()[0]
    return ((points > GT[:2]) & (points < GT[2:])).all(-1).nonzero().squeeze(-1)


def head(confident: torch.Tensor, p_high: float, p_low: float = 0.01) -> dict:
    """A raw head output predicting GT exactly at every grid point inside it, class GT_CLASS with probability `p_high`
    at the grid points `confident` and `p_low` elsewhere; the other classes at ~0."""
    points, strides, feats = grid()
    ltrb = torch.cat((points - GT[:2], GT[2:] - points), -1) / strides  # (A, 4) stride units, exact inside GT
    logits = two_bin_target(ltrb, REG_MAX).clamp(min=1e-12).log()  # softmax expectation = ltrb (to ~1e-10)
    scores = torch.full((NC, len(points)), -9.0)
    scores[GT_CLASS] = math.log(p_low / (1 - p_low))
    scores[GT_CLASS, confident] = math.log(p_high / (1 - p_high))
    return {"boxes": logits.flatten(1).T[None].contiguous(), "scores": scores[None], "feats": feats}


def teacher_of(out: dict):
    """A teacher callable returning the head output `out` (without feature maps) for any image."""
    return lambda img, branch="one2many": {k: v.clone() for k, v in out.items() if k != "feats"}


def hand_case(p_student=0.9, p_teacher=0.9):
    """(student preds, teacher callable, S, T): the student confident on S, the teacher on T (see the module doc)."""
    idx = inside()
    assert len(idx) == 24
    s, t = idx[:10], idx[-10:]
    return head(s, p_student), teacher_of(head(t, p_teacher)), s, t


def positives(crit) -> set[int]:
    """The grid points of the criterion's last assignment."""
    return set(crit.assigner.last.fg_mask[0].nonzero().squeeze(-1).tolist())


@pytest.mark.parametrize("assign, expected", [("student", "S"), ("teacher", "T")])
def test_assignment_follows_whose_predictions_rank(student, assign, expected):
    preds, teacher, s, t = hand_case()
    crit = criterion(student, teacher, assign=assign)
    crit(preds, one_box_batch())
    assert positives(crit) == set((s if expected == "S" else t).tolist())
    target = crit.assigner.last.target_scores[0]  # (A, nc): class GT_CLASS only, IoU-aligned: ~1 for exact boxes
    fg = crit.assigner.last.fg_mask[0]
    assert target[~fg].sum() == 0 and target[fg][:, [0, 2]].sum() == 0
    torch.testing.assert_close(target[fg][:, GT_CLASS], torch.ones(10), atol=1e-4, rtol=0)


def test_mix_ranks_by_the_mean_so_the_confident_network_wins(student):
    """Mean scores: teacher 0.9 on T vs student 0.3 on S gives T ((0.9 + 0.01) / 2 > (0.3 + 0.01) / 2); a student
    at 0.99 on S against a teacher at 0.9 on T gives S."""
    preds, teacher, s, t = hand_case(p_student=0.3, p_teacher=0.9)
    crit = criterion(student, teacher, assign="mix")
    crit(preds, one_box_batch())
    assert positives(crit) == set(t.tolist())
    preds, teacher, s, t = hand_case(p_student=0.99, p_teacher=0.9)
    crit = criterion(student, teacher, assign="mix")
    crit(preds, one_box_batch())
    assert positives(crit) == set(s.tolist())


def test_main_region_terms_and_box_loss_use_the_teachers_assignment(student):
    """The teacher's edges differ from the student's on S only: LD on the main region is > 0 with the student's
    assignment (its positives are S) and 0 with the teacher's (T, where the edges agree)."""
    preds, _, s, t = hand_case()
    out = head(t, 0.9)
    out["boxes"][..., s] = torch.randn(1, 4 * REG_MAX, len(s), generator=torch.Generator().manual_seed(0))
    items = {}
    for assign in ("student", "teacher"):
        crit = criterion(student, teacher_of(out), assign=assign, vlr=False, kd=0.0)
        items[assign] = crit(preds, one_box_batch())[1]
    assert items["student"]["ld_loss"] > 1e-2 and items["teacher"]["ld_loss"] < 1e-6
    assert items["teacher"]["box_loss"] < 1e-3  # the student's boxes on T are exact


def test_assign_student_is_ultralytics_loss_bit_for_bit(student):
    """assign=student: Ultralytics' own box/cls/DFL loss and assignment, and the terms on that assignment, exactly."""
    torch.manual_seed(1)
    preds = student(torch.rand(2, 3, IMGSZ, IMGSZ))[1]
    b = {"img": torch.zeros(2, 3, IMGSZ, IMGSZ), "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
         "cls": torch.tensor([[0.0], [2.0], [1.0]]),
         "bboxes": torch.tensor([[0.3, 0.3, 0.3, 0.4], [0.7, 0.6, 0.4, 0.3], [0.5, 0.5, 0.6, 0.6]])}  # fmt: skip
    g = torch.Generator().manual_seed(0)
    teacher = teacher_of({k: v.detach() + torch.randn(v.shape, generator=g) for k, v in preds.items() if k != "feats"})
    crit = criterion(student, teacher, assign="student", assign_until=0.5)
    loss, items = crit.loss(preds, b)
    own_loss, own_items = v8DetectionLoss(student).loss(preds, b)
    assert torch.equal(loss[:3], own_loss) and all(torch.equal(items[k], own_items[k]) for k in own_items)
    # Ultralytics' assigner on the student's own detached predictions, as v8DetectionLoss calls it
    points, strides = make_anchors(preds["feats"], crit.stride, 0.5)
    gt = crit.assigner.last
    own = TaskAlignedAssigner(topk=10, num_classes=NC, alpha=0.5, beta=6.0, stride=crit.stride.tolist())(
        preds["scores"].detach().transpose(1, 2).sigmoid(),
        crit.bbox_decode(points, preds["boxes"].detach().transpose(1, 2)) * strides,
        points * strides,
        crit.preprocess(torch.cat((b["batch_idx"][:, None], b["cls"], b["bboxes"]), 1), 2, torch.tensor([64.0] * 4))[
            ..., :1
        ],
        gt.gt_bboxes,
        gt.mask_gt,
    )
    assert torch.equal(gt.fg_mask, own[3]) and torch.equal(gt.target_scores, own[2])
    assert torch.equal(loss[3:], crit.distill(preds, teacher(None), gt) * 2)


def test_the_student_as_its_own_teacher_gives_its_own_assignment(student):
    """decode_prediction decodes a head exactly as Ultralytics decodes the student's, so a teacher returning the
    student's own outputs leaves the assignment as it was."""
    torch.manual_seed(2)
    preds = student(torch.rand(1, 3, IMGSZ, IMGSZ))[1]
    b = one_box_batch()
    masks = {}
    for assign in ("student", "teacher", "mix"):
        crit = criterion(student, teacher_of(preds), assign=assign)
        crit(preds, b)
        masks[assign] = crit.assigner.last
    for assign in ("teacher", "mix"):
        assert torch.equal(masks[assign].fg_mask, masks["student"].fg_mask)
        torch.testing.assert_close(masks[assign].target_scores, masks["student"].target_scores)


def test_decode_prediction_matches_ultralytics_decode_for_obb(tmp_path):
    torch.manual_seed(0)
    model = OBBModel(str(tiny_yaml(tmp_path / "o.yaml", base="v8/yolov8-obb.yaml")), nc=NC, verbose=False).eval()
    preds = model(torch.rand(1, 3, IMGSZ, IMGSZ))[1]
    crit = criterion(model, teacher_of(preds), cls=LDOBBLoss, assign="teacher")
    points, strides = make_anchors(preds["feats"], crit.stride, 0.5)
    own = crit.bbox_decode(points, preds["boxes"].transpose(1, 2), preds["angle"].transpose(1, 2))
    own[..., :4] *= strides
    decoded = decode_prediction(preds, points, strides)
    torch.testing.assert_close(decoded.bboxes, own)
    torch.testing.assert_close(decoded.scores, preds["scores"].sigmoid().transpose(1, 2))
    b = one_box_batch()
    b["bboxes"] = torch.cat((b["bboxes"], torch.tensor([[0.3]])), 1)  # xywhr
    loss = crit(preds, b)[0]  # the rotated assigner on the teacher's rotated boxes
    assert torch.isfinite(loss).all() and crit.assigner.last.fg_mask.any()


def test_mean_angle_is_modulo_a_half_turn_and_mix_averages_boxes():
    assert mean_angle(torch.tensor(0.1), torch.tensor(math.pi - 0.1)).item() == pytest.approx(0.0, abs=1e-6)
    assert mean_angle(torch.tensor(0.2), torch.tensor(0.4)).item() == pytest.approx(0.3)
    s = Prediction(torch.tensor([[[0.2]]]), torch.tensor([[[0.0, 0.0, 4.0, 4.0]]]))
    t = Prediction(torch.tensor([[[0.6]]]), torch.tensor([[[2.0, 2.0, 6.0, 8.0]]]))
    m = mix_predictions(s, t)
    torch.testing.assert_close(m.scores, torch.tensor([[[0.4]]]))
    torch.testing.assert_close(m.bboxes, torch.tensor([[[1.0, 1.0, 5.0, 6.0]]]))


def test_schedule_hands_over_to_the_student():
    assert [assign_mode("teacher", 0.0, e, 4) for e in range(4)] == ["teacher"] * 4  # 0: never hand over
    assert [assign_mode("teacher", 0.5, e, 4) for e in range(4)] == ["teacher", "teacher", "student", "student"]
    assert [assign_mode("mix", 0.3, e, 10) for e in range(10)] == ["mix"] * 3 + ["student"] * 7
    assert [assign_mode("student", 0.5, e, 4) for e in range(4)] == ["student"] * 4
    assert assign_mode("teacher", 1.0, 9, 10) == "teacher"


def test_schedule_callback_sets_the_mode_of_the_epoch_starting(student):
    crit = criterion(student, teacher_of(head(inside(), 0.9)), assign="teacher", assign_until=0.5)
    student.criterion = crit
    modes = []
    for epoch in range(4):
        schedule_criterion(SimpleNamespace(model=student, epoch=epoch, epochs=4))
        modes.append(crit.assigner.mode)
    assert modes == ["teacher", "teacher", "student", "student"]
    student.criterion = None


def test_distill_schedules_hand_values():
    assert [constant(e, 10, 3) for e in (0, 9)] == [1.0, 1.0]
    # cosine: 0.01 + 0.99 * (1 + cos(pi * e / 4)) / 2, e = 0..4
    assert [round(cosine(e, 5, 0), 6) for e in range(5)] == [1.0, 0.855018, 0.505, 0.154982, 0.01]
    # Ultralytics closes the mosaic at epoch `epochs - close_mosaic` (never when that is negative)
    assert [mosaic_open(e, 10, 3) for e in range(10)] == [1.0] * 7 + [0.0] * 3
    assert [mosaic_open(e, 4, 0) for e in range(4)] == [1.0] * 4
    assert [mosaic_open(e, 4, 6) for e in range(4)] == [1.0] * 4
    # auto: cosine when the student trains at least the teacher's recorded epochs, else (or unrecorded) constant
    assert [round(auto(e, 5, 0, 5), 6) for e in range(5)] == [1.0, 0.855018, 0.505, 0.154982, 0.01]
    assert auto(4, 5, 0, 4) == cosine(4, 5, 0) and auto(4, 5, 0, 6) == auto(4, 5, 0, None) == auto(4, 5, 0, 0) == 1.0


class Recorded:
    """A teacher callable that records the epochs it was trained (as TeacherHead does)."""

    def __init__(self, fn, epochs):
        self.fn, self.epochs = fn, epochs

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("teacher_epochs, form", [(4, "cosine"), (3, "cosine"), (5, "constant"), (None, "constant")])
def test_auto_schedule_runs_the_form_the_teachers_epochs_pick(student, teacher_epochs, form):
    """A 4-epoch student under `auto` trains exactly as under the form its teacher's recorded epochs pick."""
    preds, teacher, *_ = hand_case()
    crit = criterion(student, Recorded(teacher, teacher_epochs), epochs=4, distill_schedule="auto")
    ref = criterion(student, teacher, epochs=4, distill_schedule=form)
    for epoch in range(4):
        crit.schedule(epoch, 4), ref.schedule(epoch, 4)
        assert crit.scale == ref.scale
        torch.testing.assert_close(crit(preds, one_box_batch())[0], ref(preds, one_box_batch())[0])
    assert crit.scale == (0.01 if form == "cosine" else 1.0)


@pytest.mark.parametrize("schedule", ["cosine", "close_mosaic"])
def test_distill_schedule_scales_every_term_and_nothing_else(student, schedule):
    """Epoch by epoch, each distillation term is the constant schedule's times the schedule's factor; Ultralytics'
    own losses are untouched; when the factor is 0 the terms are exactly 0."""
    preds, teacher, *_ = hand_case()
    epochs, close = 4, 1
    base = criterion(student, teacher, epochs=epochs, close_mosaic=close)
    crit = criterion(student, teacher, epochs=epochs, close_mosaic=close, distill_schedule=schedule)
    n = len(crit.names)
    factors = []
    for epoch in range(epochs):
        base.schedule(epoch, epochs), crit.schedule(epoch, epochs)
        (lb, _), (lc, _) = base(preds, one_box_batch()), crit(preds, one_box_batch())
        f = SCHEDULES[schedule](epoch, epochs, close)
        factors.append(f)
        torch.testing.assert_close(lc[:-n], lb[:-n])
        torch.testing.assert_close(lc[-n:], lb[-n:] * f)
        assert lb[-n:].sum() > 0
    assert factors[-1] < 0.02 and factors[0] == 1.0
    if schedule == "close_mosaic":
        assert factors == [1.0, 1.0, 1.0, 0.0]


def test_close_mosaic_schedule_that_would_never_distil_is_refused():
    with pytest.raises(ValueError, match="would switch distillation off for the whole run"):
        check_ld_args({**LD_DEFAULTS, "distill_schedule": "close_mosaic", "epochs": 10, "close_mosaic": 10})
    check_ld_args({**LD_DEFAULTS, "distill_schedule": "close_mosaic", "epochs": 40, "close_mosaic": 10})
    with pytest.raises(ValueError, match="'distill_schedule=linear' is not one of"):
        check_ld_args({**LD_DEFAULTS, "distill_schedule": "linear"})
    with pytest.raises(KeyError, match="distill_schedule=linear"):
        SCHEDULES["linear"]


def test_unknown_assign_refused():
    with pytest.raises(KeyError, match="'assign=both' is not one of \\('student', 'teacher', 'mix'\\)"):
        assign_mode("both", 0.0, 0, 10)
    with pytest.raises(ValueError, match="'assign=both' is not one of"):
        check_ld_args({**LD_DEFAULTS, "assign": "both"})
    with pytest.raises(ValueError, match="'assign_until=1.5' must lie in \\[0, 1\\]"):
        check_ld_args({**LD_DEFAULTS, "assign_until": 1.5})


def test_end_to_end_one_to_one_branch_keeps_its_own_assignment(tmp_path):
    torch.manual_seed(0)
    model = DetectionModel(str(tiny_yaml(tmp_path / "e.yaml", base="26/yolo26.yaml")), nc=NC, verbose=False)
    teacher = copy.deepcopy(model).eval()
    model.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS, "epochs": 4, "assign": "teacher"})

    def teacher_head(img, branch="one2many"):
        with torch.no_grad():
            return {k: v for k, v in teacher(img)[1][branch].items() if k != "feats"}

    crit = build_criterion(model, teacher_head, LDDetectionLoss)
    assert (crit.one2many.assigner.mode, crit.one2one.assigner.mode) == ("teacher", "student")
    model.train()
    b = one_box_batch()
    b["img"] = torch.rand(1, 3, IMGSZ, IMGSZ)
    loss = crit(model(b["img"]), b)[0]
    assert torch.isfinite(loss).all() and crit.one2many.assigner.last.fg_mask.any()


@pytest.mark.slow
def test_training_with_the_teachers_assignment_then_the_students(tmp_root, teacher_pt, student_yaml, shapes_yaml):
    """assign=teacher until half the epochs: every loss column finite, the distillation terms logged, and the
    assignment the teacher's in epoch 1 and the student's own in epoch 2."""
    from ultrald import LDTrainer

    args = dict(model=str(student_yaml), data=str(shapes_yaml), epochs=2, imgsz=IMGSZ, batch=8, workers=0,
                plots=False, project=str(tmp_root / "runs"), name="lad", exist_ok=True, seed=0, teacher=str(teacher_pt),
                assign="teacher", assign_until=0.5, **FAST, **ANY_TEACHER)  # fmt: skip
    trainer = LDTrainer(overrides=args)
    modes = []
    trainer.add_callback("on_train_epoch_start", schedule_criterion)  # idempotent if the trainer registers it too
    trainer.add_callback("on_train_batch_end", lambda t: modes.append((t.epoch, t.model.criterion.assigner.mode)))
    trainer.train()
    assert dict(modes) == {0: "teacher", 1: "student"}
    rows = read_results(trainer.save_dir)
    assert len(rows) == 2
    for row in rows:
        assert all(math.isfinite(v) for v in row.values()), row
        assert row["train/ld_loss"] > 0 and row["train/kd_loss"] > 0 and row["train/box_loss"] > 0
