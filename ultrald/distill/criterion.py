"""The student's criterion: Ultralytics' own loss plus LD, VLR and KD against the frozen teacher."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import nn
from ultralytics.utils.loss import v8DetectionLoss, v8OBBLoss
from ultralytics.utils.tal import make_anchors

from .losses import angle_distill, class_kd, kl_distill
from .regions import hbb_overlaps, obb_overlaps, vlr_weights


class Assignment(NamedTuple):
    """What the label assigner saw and decided for one batch (A grid points, n padded boxes per image)."""

    gt_bboxes: torch.Tensor  # (B, n, 4) xyxy pixels, or (B, n, 5) xywhr for OBB
    mask_gt: torch.Tensor  # (B, n, 1) real boxes
    target_scores: torch.Tensor  # (B, A, nc) IoU-aligned soft labels, zero off the positives
    fg_mask: torch.Tensor  # (B, A) positives


def normalizer(target_scores_sum: torch.Tensor) -> torch.Tensor:
    """Return the sum of the target scores over all ranks divided by their number (the local sum without DDP).

    Ultralytics multiplies each rank's loss by the world size and DDP averages the gradients, so dividing each rank's
    sum by this makes the distillation terms independent of how the batch is split over ranks.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return target_scores_sum.clamp(min=1)
    total = target_scores_sum.detach().clone()
    dist.all_reduce(total)
    return total.clamp(min=1) / dist.get_world_size()


class AssignmentRecorder(nn.Module):
    """Wrap an Ultralytics TAL assigner and keep the assignment of its last call in `last`.

    Ultralytics' criteria use the assignment internally without returning it; the distillation terms need it to find
    the main region and to weight it exactly like the DFL loss.
    """

    def __init__(self, assigner: nn.Module):
        """Wrap `assigner`."""
        super().__init__()
        self.assigner, self.last = assigner, None

    def forward(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra):
        """Run the wrapped assigner, record its inputs and outputs, and return its outputs unchanged."""
        out = self.assigner(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra)
        self.last = Assignment(gt_bboxes, mask_gt, out[2], out[3])
        return out


class DistillationLoss:
    """Mixin for an Ultralytics criterion that appends the distillation terms `names` to its loss vector.

    The main region is the assigner's positives, each weighted by its IoU-aligned target score and normalised by the
    sum of those scores, exactly like Ultralytics' DFL loss; the VLR lies beyond them (see `regions.py`). The terms are
    multiplied by the batch size like Ultralytics' own, so their weights do not change with the batch size.

    Args:
        model (nn.Module): The student (de-paralleled); its `args` hold the distillation keys.
        teacher (Callable): Maps the batch images to the teacher's raw head dict ('boxes', 'scores'[, 'angle']).
    """

    names = ("ld_loss", "vlr_loss", "kd_loss")

    def __init__(self, model: nn.Module, teacher: Callable[[torch.Tensor], dict], **kwargs):
        """Build Ultralytics' criterion for `model` and record its assignments."""
        super().__init__(model, **kwargs)
        self.teacher = teacher
        self.assigner = AssignmentRecorder(self.assigner)

    def loss(self, preds: dict[str, torch.Tensor], batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return Ultralytics' loss vector with the distillation terms appended (times batch size), and its items."""
        loss, items = super().loss(preds, batch)
        terms = self.distill(preds, self.teacher(batch["img"]), self.assigner.last)
        batch_size = preds["scores"].shape[0]
        return torch.cat((loss, terms * batch_size)), {**items, **dict(zip(self.names, terms.detach()))}

    def distill(self, preds: dict, teacher: dict, assigned: Assignment) -> torch.Tensor:
        """Return the weighted distillation terms of one batch, in the order of `names`."""
        h = self.hyp
        w_main = assigned.target_scores.sum(-1)  # (B, A), the DFL loss weight
        use_vlr = h.vlr and (h.vlr_ld > 0 or h.vlr_kd > 0)
        w_vlr = self.vlr_region(preds, assigned) if use_vlr else torch.zeros_like(w_main)
        rows = (assigned.fg_mask | (w_vlr > 0)).nonzero(as_tuple=True)  # (image, grid point) of main region + VLR
        terms = self.terms(preds, teacher, rows, w_main[rows], w_vlr[rows])
        return torch.stack(terms) / normalizer(assigned.target_scores.sum())

    def terms(self, preds: dict, teacher: dict, rows: tuple, w_main: torch.Tensor, w_vlr: torch.Tensor) -> list:
        """Return (ld, vlr, kd), unnormalised sums over the region `rows` with main/VLR weights (N,) per row.

        With `kd_region=all` the KD term instead sums over every grid point, each weighted 1 like Ultralytics' cls loss.
        """
        h = self.hyp
        zero = w_main.new_zeros(())
        use_vlr = h.vlr and (h.vlr_ld > 0 or h.vlr_kd > 0)
        ld_rows = kd_rows = kd = zero
        if h.ld > 0 or (use_vlr and h.vlr_ld > 0):
            s, t = (x["boxes"].transpose(1, 2)[rows] for x in (preds, teacher))  # (N, 4 * reg_max)
            ld_rows = kl_distill(s.view(-1, 4, self.reg_max), t.view(-1, 4, self.reg_max), h.ld_temp).mean(-1)
        if h.kd > 0 or (use_vlr and h.vlr_kd > 0):
            s, t = (x["scores"].transpose(1, 2) for x in (preds, teacher))  # (B, A, nc)
            if h.kd > 0 and h.kd_region == "all":
                kd_grid = class_kd(s, t, h.kd_temp, h.kd_type)  # (B, A)
                kd, kd_rows = kd_grid.sum() * h.kd, kd_grid[rows]
            else:
                kd_rows = class_kd(s[rows], t[rows], h.kd_temp, h.kd_type)
                kd = (kd_rows * w_main).sum() * h.kd
        ld = (ld_rows * w_main).sum() * h.ld
        vlr = ((ld_rows * h.vlr_ld + kd_rows * h.vlr_kd) * w_vlr).sum() if use_vlr else zero
        return [ld, vlr, kd]

    def vlr_region(self, preds: dict, assigned: Assignment) -> torch.Tensor:
        """Return the VLR weight (B, A) of every grid point."""
        anchor_points, strides = make_anchors(preds["feats"], self.stride, 0.5)
        anchor_points = anchor_points * strides  # pixels
        gt = assigned.gt_bboxes.float()
        iou, diou = self.overlaps(anchor_points, strides, gt, self.hyp.vlr_scale)
        centres = gt[..., :2] if gt.shape[-1] == 5 else (gt[..., :2] + gt[..., 2:4]) / 2
        level_sizes = [f.shape[2] * f.shape[3] for f in preds["feats"]]
        return vlr_weights(
            iou, diou, centres, anchor_points, level_sizes, assigned.mask_gt, assigned.fg_mask, self.hyp.vlr_alpha
        )


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

    def terms(self, preds: dict, teacher: dict, rows: tuple, w_main: torch.Tensor, w_vlr: torch.Tensor) -> list:
        """Return (ld, vlr, kd, ald)."""
        angle = w_main.new_zeros(())
        if self.hyp.ald > 0:
            s, t = (x["angle"][:, 0][rows] for x in (preds, teacher))  # (N,) radians
            angle = (angle_distill(s, t, self.hyp.ald_type) * w_main).sum() * self.hyp.ald
        return [*super().terms(preds, teacher, rows, w_main, w_vlr), angle]
