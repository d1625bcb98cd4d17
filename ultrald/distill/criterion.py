"""The student's criterion: Ultralytics' own loss plus LD, VLR and KD against the frozen teacher."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.distributed as dist
from torch import nn
from torch.profiler import record_function
from ultralytics.utils import LOGGER
from ultralytics.utils.loss import E2ELoss, v8DetectionLoss, v8OBBLoss
from ultralytics.utils.tal import make_anchors
from ultralytics.utils.torch_utils import unwrap_model

from ..errors import NonFiniteError
from ..registry import Registry
from ..seam import assigned, e2e_weights, feature_model, feature_student, is_end2end
from .assign import ASSIGN_SOURCES, Prediction, assign_mode, decode_prediction
from .edges import box_distill, edge_target, expected_edges, kl_to_target
from .losses import angle_distill, class_kd, kl_distill
from .regions import hbb_overlaps, obb_overlaps, vlr_weights
from .schedules import SCHEDULES

if TYPE_CHECKING:  # ultrald.cfg reads this module's registries to check the keys
    from ..cfg import DistillConfig


def config_of(model: nn.Module) -> DistillConfig:
    """The checked, frozen settings of a bare model's args (a trainer passes the run's own)."""
    from ..cfg import distill_config

    return distill_config(model.args)


class Assignment(NamedTuple):
    """What the label assigner saw and decided for one batch (A grid points, n padded boxes per image)."""

    gt_bboxes: torch.Tensor  # (B, n, 4) xyxy pixels, or (B, n, 5) xywhr for OBB
    mask_gt: torch.Tensor  # (B, n, 1) real boxes
    target_scores: torch.Tensor  # (B, A, nc) IoU-aligned soft labels, zero off the positives
    fg_mask: torch.Tensor  # (B, A) positives


def normalizer(weight_sum: torch.Tensor, floor: float = 1.0) -> torch.Tensor:
    """Return a sum of weights over all ranks divided by their number (the local sum without DDP), at least `floor`.

    Ultralytics multiplies each rank's loss by the world size and DDP averages the gradients, so dividing each rank's
    sum by this makes the distillation terms independent of how the batch is split over ranks. `floor=1` is
    Ultralytics' own clamp of its target-score sum.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return weight_sum.detach().clamp(min=floor)
    total = weight_sum.detach().clone()
    dist.all_reduce(total)
    return total.clamp(min=floor) / dist.get_world_size()


def target_weight(preds: dict, teacher: dict, assigned: Assignment) -> torch.Tensor:
    """(B, A) the assigner's IoU-aligned target score of each positive: the DFL loss's own weight (the default)."""
    return assigned.target_scores.sum(-1)


def student_score_weight(preds: dict, teacher: dict, assigned: Assignment) -> torch.Tensor:
    """(B, A) the student's detached top class probability on each positive (the weighting of the paper's code)."""
    return preds["scores"].detach().float().sigmoid().amax(1) * assigned.fg_mask


def teacher_score_weight(preds: dict, teacher: dict, assigned: Assignment) -> torch.Tensor:
    """(B, A) the teacher's top class probability on each positive: a teacher-quality weight."""
    return teacher["scores"].float().sigmoid().amax(1) * assigned.fg_mask


class MainWeight(NamedTuple):
    """A `main_weight=` form: each positive's weight in the main-region terms, and the floor of their sum."""

    weight: Callable[[dict, dict, Assignment], torch.Tensor]  # (preds, teacher, assigned) -> (B, A)
    # 1 for target scores, as Ultralytics clamps them for DFL; the score weights give a true weighted mean, which early
    # in training (scores ~0.01) a floor of 1 would shrink a hundredfold
    floor: float


MAIN_WEIGHTS = Registry(
    "main_weight",
    target=MainWeight(target_weight, 1.0),
    student=MainWeight(student_score_weight, 1e-6),
    teacher=MainWeight(teacher_score_weight, 1e-6),
)
# kd_region= -> whether KD runs on every grid point (normalised like the cls loss) or on the main region only
KD_REGIONS = Registry("kd_region", all=True, main=False)


def nonfinite(named: dict[str, torch.Tensor]) -> list[str]:
    """Return the names of the tensors in `named` that hold NaN or Inf."""
    return [k for k, v in named.items() if not torch.isfinite(v).all()]


class StepGuard:
    """Skips the batches whose distillation is non-finite and stops the run after `limit` of them in a row.

    A skipped batch contributes a zero loss (so no gradient and no weight change from it); the run then stops with
    NonFiniteError before the epoch ends, so no checkpoint is ever written from weights that saw a NaN.
    """

    def __init__(self, limit: int = 3):
        """Allow `limit` non-finite batches in a row."""
        self.limit, self.in_row, self.skipped = limit, 0, 0

    def apply(self, loss: torch.Tensor, items: dict, bad: list[str]) -> tuple[torch.Tensor, dict]:
        """Return (loss, items) unchanged for a finite batch, else zeros after counting it (raising at the limit)."""
        if not bad:
            self.in_row = 0
            return loss, items
        self.in_row += 1
        self.skipped += 1
        what = ", ".join(dict.fromkeys(bad))
        if self.in_row >= self.limit:
            raise NonFiniteError(
                f"{what} non-finite on {self.in_row} batches in a row: training stopped before writing any checkpoint "
                "from these weights (check the teacher, lower lr0, or try amp=False)."
            )
        LOGGER.warning(
            f"ultrald: skipped a batch with non-finite {what} ({self.in_row} in a row, {self.skipped} in all)"
        )
        return loss * 0, {k: torch.zeros_like(v) for k, v in items.items()}


class AssignmentRecorder(nn.Module):
    """Wrap an Ultralytics TAL assigner, keep the assignment of its last call in `last`, and let the teacher guide it.

    Ultralytics' criteria use the assignment internally without returning it; the distillation terms need it to find
    the main region and to weight it exactly like the DFL loss. With `mode` 'teacher' or 'mix' and a `guide` (the
    teacher's `Prediction` of this batch), the assigner ranks the grid points by the teacher's (or the mixed)
    prediction instead of the student's (LAD, see `assign.py`); Ultralytics' box, cls and DFL losses and every
    distillation term then use that assignment. Mode 'student', or no guide, is Ultralytics' own call, unchanged.
    """

    def __init__(self, assigner: nn.Module):
        """Wrap `assigner`; the student's own assignment until `mode` and `guide` say otherwise."""
        super().__init__()
        self.assigner, self.last, self.mode, self.guide = assigner, None, "student", None

    def forward(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra):
        """Run the wrapped assigner on the prediction `mode` picks, record its inputs and outputs, and return them."""
        if self.mode != "student" and self.guide is not None:
            # the dtypes Ultralytics hands the assigner (the scores follow autocast, the boxes the ground truth's)
            pick = ASSIGN_SOURCES[self.mode](Prediction(pd_scores, pd_bboxes), self.guide)
            pd_scores, pd_bboxes = pick.scores.to(pd_scores.dtype), pick.bboxes.to(pd_bboxes.dtype)
        out = self.assigner(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra)
        self.last = Assignment(gt_bboxes, mask_gt, *assigned(out))
        return out


def schedule_criterion(trainer) -> None:
    """Set the assignment source (`assign`, `assign_until`) and the terms' factor (`distill_schedule`) of the epoch
    starting on the student's criterion.

    An `on_train_epoch_start` callback of the LD trainers. Without it a criterion keeps the schedule of epoch 0.
    """
    model = unwrap_model(trainer.model)
    model = feature_student(model) if feature_model(model) is not None else model  # dis > 0: the wrapped student
    criterion = getattr(model, "criterion", None)
    if hasattr(criterion, "schedule"):
        criterion.schedule(trainer.epoch, trainer.epochs)


class Batch:
    """What the distillation terms of one batch read. The per-row LD and KD losses are computed on first use, once,
    and only when a term with a non-zero weight asks for them.

    Attributes:
        rows (tuple): (image, grid point) indices of the main region and the VLR, N rows.
        w_main (torch.Tensor): (N,) each row's main-region weight (`main_weight`), zero off the positives.
        w_vlr (torch.Tensor): (N,) each row's VLR weight (its IoU with the box), zero off the VLR.
    """

    def __init__(self, crit: DistillationLoss, preds: dict, teacher: dict, assigned: Assignment, main: MainWeight):
        """Find the region of `assigned` and its weights."""
        self.crit, self.h, self.preds, self.teacher, self.assigned = crit, crit.cfg, preds, teacher, assigned
        w_main = main.weight(preds, teacher, assigned)  # (B, A), zero off the positives
        with record_function("ultrald VLR region"):
            w_vlr = crit.vlr_region(preds, assigned) if self.use_vlr else torch.zeros_like(w_main)
        self.rows = (assigned.fg_mask | (w_vlr > 0)).nonzero(as_tuple=True)
        self.w_main, self.w_vlr = w_main[self.rows], w_vlr[self.rows]
        self.main_norm = normalizer(w_main.sum(), main.floor)
        self.zero = w_main.new_zeros(())

    @property
    def use_vlr(self) -> bool:
        """Whether the VLR is distilled at all."""
        return self.h.vlr and (self.h.vlr_ld > 0 or self.h.vlr_kd > 0)

    @cached_property
    def ld_rows(self) -> torch.Tensor:
        """(N,) the LD loss of each row's four edges, whatever the two heads (`DistillationLoss.localization`)."""
        with record_function("ultrald LD"):
            branch = self.crit.dfl_branch
            edges = [self.preds["boxes"], self.teacher["boxes"]]
            if branch is not None:  # LD on the DFL branch; the box-level term on the head (ld_box, 0: off)
                edges.append(branch(self.preds["feats"]))
            s, t, *b = (x.transpose(1, 2)[self.rows].unflatten(-1, (4, -1)) for x in edges)  # (N, 4, reg_max)
            loss = self.crit.localization(s, t)
            return loss + self.crit.localization(b[0], t) if b else loss

    @cached_property
    def kd_grid(self) -> torch.Tensor:
        """(B, A) classification KD at every grid point (`kd_region=all`)."""
        with record_function("ultrald KD"):
            s, t = (x["scores"].transpose(1, 2) for x in (self.preds, self.teacher))  # (B, A, nc)
            return class_kd(s, t, self.h.kd_temp, self.h.kd_type)

    @cached_property
    def kd_rows(self) -> torch.Tensor:
        """(N,) classification KD of each row."""
        if self.crit.kd_dense:
            return self.kd_grid[self.rows]
        with record_function("ultrald KD"):
            s, t = (x["scores"].transpose(1, 2)[self.rows] for x in (self.preds, self.teacher))
            return class_kd(s, t, self.h.kd_temp, self.h.kd_type)


def ld_term(b: Batch) -> torch.Tensor:
    """LD on the main region: each positive's edge KL times its main weight, times `ld`."""
    return (b.ld_rows * b.w_main).sum() * b.h.ld if b.h.ld > 0 else b.zero


def vlr_term(b: Batch) -> torch.Tensor:
    """LD (`vlr_ld`) and KD (`vlr_kd`) on the valuable localization region, each point weighted by its IoU."""
    if not b.use_vlr:
        return b.zero
    ld = b.ld_rows * b.h.vlr_ld if b.h.vlr_ld > 0 else b.zero
    kd = b.kd_rows * b.h.vlr_kd if b.h.vlr_kd > 0 else b.zero
    return ((ld + kd) * b.w_vlr).sum()


def kd_term(b: Batch) -> torch.Tensor:
    """Classification KD, times `kd`: over every grid point, each weighted 1 (`kd_region=all`), or on the main region
    weighted like LD."""
    if b.h.kd <= 0:
        return b.zero
    return b.kd_grid.sum() * b.h.kd if b.crit.kd_dense else (b.kd_rows * b.w_main).sum() * b.h.kd


def kd_norm(b: Batch) -> torch.Tensor:
    """Dense KD is divided by the target-score sum, as Ultralytics' cls loss; on the main region like LD."""
    return normalizer(b.assigned.target_scores.sum()) if b.crit.kd_dense else b.main_norm


def ald_term(b: Batch) -> torch.Tensor:
    """OBB: the periodic angle term on the main region (`ald_type`), times `ald`."""
    if b.h.ald <= 0:
        return b.zero
    s, t = (x["angle"][:, 0][b.rows] for x in (b.preds, b.teacher))  # (N,) radians
    return (angle_distill(s, t, b.h.ald_type) * b.w_main).sum() * b.h.ald


class Term(NamedTuple):
    """A distillation term: its results.csv column is its registry name."""

    weights: tuple[str, ...]  # the keys that weight it
    region: str  # where it lives: 'main' (the positives), 'vlr', or 'dense' (every grid point) / 'main' (kd_region)
    compute: Callable[[Batch], torch.Tensor]  # () its weighted sum over the region, before normalisation
    norm: Callable[[Batch], torch.Tensor]  # () what it is divided by


def by_main(b: Batch) -> torch.Tensor:
    """The sum of the main weights, the DFL loss's own normaliser."""
    return b.main_norm


# column -> term; a criterion lists the columns it computes (`names`), in the results.csv order
TERMS = Registry(
    "term",
    ld_loss=Term(("ld",), "main", ld_term, by_main),
    vlr_loss=Term(("vlr_ld", "vlr_kd"), "vlr", vlr_term, by_main),
    kd_loss=Term(("kd",), "dense (kd_region=all) or main", kd_term, kd_norm),
    ald_loss=Term(("ald",), "main", ald_term, by_main),
)


class DistillationLoss:
    """Mixin for an Ultralytics criterion that appends the distillation terms `names` to its loss vector.

    The main region is the assigner's positives, each weighted by its IoU-aligned target score and normalised by the
    sum of those scores, exactly like Ultralytics' DFL loss; the VLR lies beyond them (see `regions.py`). The terms are
    multiplied by the batch size like Ultralytics' own, so their weights do not change with the batch size.

    Args:
        model (nn.Module): The student (de-paralleled); its `args` hold the distillation keys.
        teacher (Callable): Maps the batch images to the teacher's raw head dict ('boxes', 'scores'[, 'angle']).
        guard (StepGuard, optional): Shared by both branches of an end-to-end student; one of its own otherwise.
        cfg (DistillConfig, optional): The run's settings (default: those of `model.args`).
        branch (DFLBranch, optional): A reg_max=1 student's training-only DFL branch (`dfl_branch`), taught by LD.
    """

    names = ("ld_loss", "vlr_loss", "kd_loss")

    def __init__(
        self,
        model: nn.Module,
        teacher: Callable[..., dict],
        guard: StepGuard | None = None,
        cfg: DistillConfig | None = None,
        branch: nn.Module | None = None,
        **kwargs,
    ):
        """Build Ultralytics' criterion for `model`, record its assignments, and use the assignment of epoch 0."""
        super().__init__(model, **kwargs)
        self.cfg, self.dfl_branch = cfg or config_of(model), branch
        self.teacher, self.guard, self.branch = teacher, guard or StepGuard(), "one2many"
        self.teacher_epochs = getattr(teacher, "epochs", None)  # as its checkpoint records them; a bare callable: None
        self.dense_kd = True  # False on a one-to-one branch taught by a dense head, whose duplicates it must not learn
        self.guided = True  # False on a one-to-one branch: it keeps its own top-1 assignment (see LDE2ELoss)
        self.assigner = AssignmentRecorder(self.assigner)
        self.schedule(0, self.hyp.epochs)

    def schedule(self, epoch: int, epochs: int) -> None:
        """Set the assignment source of `epoch` (0-based) of `epochs` (`assign` until `assign_until`, then 'student')
        and the factor on the distillation terms (`distill_schedule`)."""
        c = self.cfg
        self.assigner.mode = assign_mode(c.assign, c.assign_until, epoch, epochs) if self.guided else "student"
        self.scale = SCHEDULES[c.distill_schedule](epoch, epochs, self.hyp.close_mosaic, self.teacher_epochs)

    def __call__(self, preds, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the loss vector and items of a batch, zeroed (and counted) when the distillation is non-finite."""
        return self.guard.apply(*self.distilled_loss(self.parse_output(preds), batch))

    def loss(self, preds: dict[str, torch.Tensor], batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Ultralytics' `loss` contract: the loss vector with the distillation terms, and its items."""
        return self.distilled_loss(preds, batch)[:2]

    def distilled_loss(self, preds: dict[str, torch.Tensor], batch: dict) -> tuple[torch.Tensor, dict, list[str]]:
        """Return Ultralytics' loss vector with the distillation terms appended (times batch size), its items, and
        the names of what was non-finite (teacher outputs or terms), whose terms are then zeros."""
        teacher = self.teacher(batch["img"], self.branch)  # first: it may guide the assignment
        bad = nonfinite({f"teacher {k}": v for k, v in teacher.items() if k in {"boxes", "scores", "angle"}})
        if self.assigner.mode != "student" and not bad:  # a non-finite batch is skipped: any assignment will do
            with record_function("ultrald terms"):  # the decode is ultrald's cost (bench/cost.py sums the label)
                self.assigner.guide = decode_prediction(teacher, *make_anchors(preds["feats"], self.stride, 0.5))
        try:
            with record_function("ultralytics loss"):  # labels for profilers: bench/cost.py splits a step by them
                loss, items = super().loss(preds, batch)
        finally:
            self.assigner.guide = None  # never a stale batch's teacher
        with record_function("ultrald terms"):
            terms = torch.zeros(len(self.names), device=loss.device)
            if not bad and self.scale > 0:  # off (distill_schedule): not computed at all
                terms = self.distill(preds, teacher, self.assigner.last) * self.scale
                bad = nonfinite(dict(zip(self.names, terms)))
                terms = torch.where(torch.isfinite(terms), terms, 0.0)
        batch_size = preds["scores"].shape[0]
        return torch.cat((loss, terms * batch_size)), {**items, **dict(zip(self.names, terms.detach()))}, bad

    @property
    def kd_dense(self) -> bool:
        """Whether KD runs on every grid point (normalised like Ultralytics' cls loss) rather than the main region."""
        return self.cfg.kd > 0 and KD_REGIONS[self.cfg.kd_region] and self.dense_kd

    def distill(self, preds: dict, teacher: dict, assigned: Assignment) -> torch.Tensor:
        """Return the registered terms `names` of one batch (`TERMS`), each divided by its normaliser."""
        b = Batch(self, preds, teacher, assigned, MAIN_WEIGHTS[self.cfg.main_weight])
        return torch.stack([t / TERMS[n].norm(b) for n, t in zip(self.names, self.terms(b))])

    def terms(self, b: Batch) -> list[torch.Tensor]:
        """Return the weighted sums of the terms `names` over their regions, before normalisation and stacking."""
        return [TERMS[n].compute(b) for n in self.names]

    def localization(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Return the LD loss per row (N,) between edge outputs (N, 4, Ks) and (N, 4, Kt), whatever the two heads.

        Same bins: the KL of the edge distributions. Other bins, or a reg_max=1 teacher: the KL to the teacher's edges
        mapped onto the student's bins. A reg_max=1 student: the box-level term on decoded edges, times `ld_box`.
        """
        h, ks, kt = self.cfg, student.shape[-1], teacher.shape[-1]
        if ks == 1:
            return box_distill(student[..., 0], expected_edges(teacher), h.ld_box_type) * h.ld_box
        if ks == kt:
            return kl_distill(student, teacher, h.ld_temp).mean(-1)
        return kl_to_target(student, edge_target(teacher, ks), h.ld_temp).mean(-1)

    def vlr_region(self, preds: dict, assigned: Assignment) -> torch.Tensor:
        """Return the VLR weight (B, A) of every grid point."""
        anchor_points, strides = make_anchors(preds["feats"], self.stride, 0.5)
        anchor_points = anchor_points * strides  # pixels
        gt = assigned.gt_bboxes.float()
        iou, diou = self.overlaps(anchor_points, strides, gt, self.cfg.vlr_scale)
        centres = gt[..., :2] if gt.shape[-1] == 5 else (gt[..., :2] + gt[..., 2:4]) / 2
        level_sizes = [f.shape[2] * f.shape[3] for f in preds["feats"]]
        return vlr_weights(
            iou, diou, centres, anchor_points, level_sizes, assigned.mask_gt, assigned.fg_mask, self.cfg.vlr_alpha
        )


class LDE2ELoss(E2ELoss):
    """Ultralytics' end-to-end loss with both branches distilled: one-to-many densely, as a DFL head, and one-to-one
    (the branch that runs at inference, with its own top-1 assignment) from the teacher's one-to-one branch when it
    has one, else from its dense head, and then with KD on its positives only (`kd_region=all` would teach it the
    dense head's duplicates, which NMS-free inference cannot remove); the one-to-one terms are scaled by `ld_o2o`
    (0 distils one-to-many only).

    The distillation columns report both branches, weighted as they enter the loss.

    Teacher-guided assignment (`assign`) applies to the one-to-many branch only. The one-to-one branch keeps its own
    top-1 assignment: NMS-free inference keeps exactly the grid point the branch itself ranks first, so its positive
    must be the one its own scores make first; a dense teacher's favourite point, ranked among its duplicates, need
    not be, and after the hand-over the branch would have to move its one positive.
    """

    def __init__(
        self,
        model: nn.Module,
        teacher: Callable[..., dict],
        loss_fn: type,
        cfg: DistillConfig | None = None,
        branch: nn.Module | None = None,
    ):
        """Build both branch criteria of `loss_fn` (LDDetectionLoss or LDOBBLoss) around one shared guard."""
        guard, cfg = StepGuard(), cfg or config_of(model)
        super().__init__(model, lambda m, **kw: loss_fn(m, teacher, guard, cfg, branch, **kw))
        self.guard, self.one2one.branch, self.names = guard, "one2one", loss_fn.names
        self.one2one.dense_kd = getattr(teacher, "end2end", False)
        self.one2one.guided = False
        self.schedule(0, self.one2one.hyp.epochs)

    def schedule(self, epoch: int, epochs: int) -> None:
        """Set both branches' assignment source for `epoch` (the one-to-one branch always keeps its own)."""
        self.one2many.schedule(epoch, epochs)
        self.one2one.schedule(epoch, epochs)

    def __call__(self, preds, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the weighted sum of both branches' loss vectors and the one-to-one items with both branches' terms."""
        preds = self.one2many.parse_output(preds)
        branches = (self.one2many, self.one2one)
        (l_m, i_m, b_m), (l_o, i_o, b_o) = (c.distilled_loss(preds[c.branch], batch) for c in branches)
        n, w = len(self.names), self.one2one.cfg.ld_o2o
        l_o = torch.cat((l_o[:-n], l_o[-n:] * w))
        o2m, o2o = e2e_weights(self)
        items = {**i_o, **{k: i_m[k] * o2m + i_o[k] * w * o2o for k in self.names}}
        return self.guard.apply(l_m * o2m + l_o * o2o, items, b_m + b_o)


def build_criterion(
    model: nn.Module,
    teacher: Callable[..., dict],
    loss_fn: type,
    cfg: DistillConfig | None = None,
    branch: nn.Module | None = None,
) -> Callable:
    """Return the distillation criterion for a student: `loss_fn(model, teacher)`, or LDE2ELoss for end-to-end heads,
    with the run's settings `cfg` (default: those of `model.args`) and a reg_max=1 student's DFL `branch`."""
    if is_end2end(model):
        return LDE2ELoss(model, teacher, loss_fn, cfg, branch)
    return loss_fn(model, teacher, cfg=cfg, branch=branch)


class LDDetectionLoss(DistillationLoss, v8DetectionLoss):
    """v8DetectionLoss (box, cls, dfl) + ld_loss, vlr_loss, kd_loss."""

    overlaps = staticmethod(hbb_overlaps)


class LDOBBLoss(DistillationLoss, v8OBBLoss):
    """v8OBBLoss (box, cls, dfl, angle) + ld_loss, vlr_loss, kd_loss and ald_loss.

    LD covers the 4 rotated edges (DFL distributions, as for horizontal boxes); the angle, a single regressed value,
    gets its own periodic term on the main region (`ald`, `ald_type`).
    """

    names = (*DistillationLoss.names, "ald_loss")
    overlaps = staticmethod(obb_overlaps)
