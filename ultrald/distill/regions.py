"""The valuable localization region (VLR) of Zheng et al., adapted to anchor-free YOLO heads.

The paper's VLR comes from anchor boxes; YOLO's heads have none, so each grid point gets a virtual square anchor of
side `scale * stride`. Per ground-truth box g, the ATSS threshold thr_g is the mean + std of the IoUs of the `topk`
anchors per level whose centres lie nearest to g's centre. Grid points whose DIoU with g lies in [alpha * thr_g, thr_g)
and that are not positives form the VLR, each weighted by its largest such IoU over the boxes.

Rotated boxes: the virtual square at each grid point is turned to the angle of the box it is compared with, so IoU and
DIoU are exact and computed as axis-aligned ones in that box's frame (an unrotated square's overlap with a rotated box
would depend on the box's angle, not only on where the grid point lies).
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou, distance_box_iou
from ultralytics.utils.metrics import bbox_iou


def virtual_anchors(anchor_points: torch.Tensor, strides: torch.Tensor, scale: float) -> torch.Tensor:
    """Return square xyxy boxes (A, 4) of side `scale * stride` centred on the grid points (A, 2), in pixels."""
    half = strides.view(-1, 1) * (scale / 2)
    return torch.cat((anchor_points - half, anchor_points + half), dim=-1)


def hbb_overlaps(
    anchor_points: torch.Tensor, strides: torch.Tensor, gt_bboxes: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return IoU and DIoU (B, n, A) of xyxy boxes (B, n, 4) with the virtual anchors of the grid points (A, 2)."""
    b, n = gt_bboxes.shape[:2]
    anchors, boxes = virtual_anchors(anchor_points, strides, scale), gt_bboxes.reshape(-1, 4)
    a = len(anchors)
    return box_iou(boxes, anchors).view(b, n, a), distance_box_iou(boxes, anchors).view(b, n, a)


def obb_overlaps(
    anchor_points: torch.Tensor, strides: torch.Tensor, gt_bboxes: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return IoU and DIoU (B, n, A) of xywhr boxes (B, n, 5) with virtual anchors turned to each box's angle."""
    xy, wh, angle = gt_bboxes[..., None, :2], gt_bboxes[..., None, 2:4], gt_bboxes[..., None, 4]  # (B, n, 1, ...)
    d = anchor_points - xy  # (B, n, A, 2) offsets in image axes
    cos, sin = angle.cos(), angle.sin()
    local = torch.stack((d[..., 0] * cos + d[..., 1] * sin, -d[..., 0] * sin + d[..., 1] * cos), -1)  # box frame
    anchors = torch.cat((local, (strides.view(-1, 1) * scale).expand_as(local)), -1)  # (B, n, A, 4) xywh
    box = torch.cat((torch.zeros_like(wh), wh), -1)  # (B, n, 1, 4) xywh, centred at the origin
    return bbox_iou(anchors, box).squeeze(-1), bbox_iou(anchors, box, DIoU=True).squeeze(-1)


def atss_threshold(
    iou: torch.Tensor, gt_centres: torch.Tensor, anchor_points: torch.Tensor, level_sizes: list[int], topk: int = 9
) -> torch.Tensor:
    """Return the ATSS IoU threshold (mean + std over the `topk` nearest anchors of every level) per box.

    Args:
        iou (torch.Tensor): IoU of boxes with the anchors (N, A).
        gt_centres (torch.Tensor): Box centres (N, 2), in pixels.
        anchor_points (torch.Tensor): Grid points (A, 2), in pixels, level by level.
        level_sizes (list[int]): Number of grid points of each level, summing to A.
        topk (int): Candidates per level.

    Returns:
        (torch.Tensor): Threshold per box (N,).
    """
    dist = torch.cdist(gt_centres, anchor_points)  # (N, A)
    candidates, start = [], 0
    for size in level_sizes:
        candidates.append(dist[:, start : start + size].topk(min(topk, size), dim=1, largest=False).indices + start)
        start += size
    cand_iou = iou.gather(1, torch.cat(candidates, dim=1))
    return cand_iou.mean(1) + cand_iou.std(1)


def vlr_weights(
    iou: torch.Tensor,
    diou: torch.Tensor,
    gt_centres: torch.Tensor,
    anchor_points: torch.Tensor,
    level_sizes: list[int],
    mask_gt: torch.Tensor,
    fg_mask: torch.Tensor,
    alpha: float = 0.25,
    topk: int = 9,
) -> torch.Tensor:
    """Return the VLR weight of every grid point (B, A): the IoU with the box it belongs to, 0 outside the VLR.

    Args:
        iou (torch.Tensor): IoU of the padded boxes with the virtual anchors (B, n, A).
        diou (torch.Tensor): DIoU of the same pairs (B, n, A).
        gt_centres (torch.Tensor): Box centres (B, n, 2), in pixels.
        anchor_points (torch.Tensor): Grid points (A, 2), in pixels, level by level.
        level_sizes (list[int]): Number of grid points of each level.
        mask_gt (torch.Tensor): Which of the n boxes are real (B, n, 1).
        fg_mask (torch.Tensor): Positives of the assigner (B, A); they are excluded.
        alpha (float): Lower end of the DIoU band as a fraction of the threshold.
        topk (int): ATSS candidates per level.

    Returns:
        (torch.Tensor): Weights (B, A) in [0, 1]; all zero for images without boxes.
    """
    b, n, a = iou.shape
    if n == 0:
        return torch.zeros_like(fg_mask, dtype=torch.float32)
    iou, diou = iou.float(), diou.float()
    thr = atss_threshold(iou.view(-1, a), gt_centres.reshape(-1, 2).float(), anchor_points.float(), level_sizes, topk)
    thr = thr.view(b, n, 1)
    band = (diou >= alpha * thr) & (diou < thr) & mask_gt.bool()
    weights = (iou * band).amax(1)  # a point in several bands takes the largest IoU
    return weights * ~fg_mask
