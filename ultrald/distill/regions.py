"""Distillation regions: the main region (assigned positives) and the valuable localization region (VLR).

The VLR of Zheng et al. comes from anchor boxes; YOLO's heads are anchor-free, so each grid point gets a virtual square
anchor of side `scale * stride`. Per ground-truth box g, the ATSS threshold thr_g is the mean + std of the IoUs of the
`topk` anchors per level whose centres lie nearest to g's centre. Grid points whose DIoU with g lies in
[alpha * thr_g, thr_g) and that are not positives form the VLR, weighted by their largest such IoU over the boxes.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou, distance_box_iou


def virtual_anchors(anchor_points: torch.Tensor, strides: torch.Tensor, scale: float) -> torch.Tensor:
    """Return square xyxy boxes (A, 4) of side `scale * stride` centred on the grid points (A, 2), in pixels."""
    half = strides.view(-1, 1) * (scale / 2)
    return torch.cat((anchor_points - half, anchor_points + half), dim=-1)


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
        k = min(topk, size)
        candidates.append(dist[:, start : start + size].topk(k, dim=1, largest=False).indices + start)
        start += size
    cand_iou = iou.gather(1, torch.cat(candidates, dim=1))
    return cand_iou.mean(1) + cand_iou.std(1)


def vlr_weights(
    anchor_points: torch.Tensor,
    strides: torch.Tensor,
    level_sizes: list[int],
    gt_bboxes: torch.Tensor,
    mask_gt: torch.Tensor,
    fg_mask: torch.Tensor,
    alpha: float = 0.25,
    scale: float = 5.0,
    topk: int = 9,
) -> torch.Tensor:
    """Return the VLR weight of every grid point (B, A): the IoU with the box it belongs to, 0 outside the VLR.

    Args:
        anchor_points (torch.Tensor): Grid points (A, 2), in pixels, level by level.
        strides (torch.Tensor): Stride of each grid point (A, 1).
        level_sizes (list[int]): Number of grid points of each level.
        gt_bboxes (torch.Tensor): Ground-truth boxes (B, n, 4), xyxy pixels, padded.
        mask_gt (torch.Tensor): Which of the n boxes are real (B, n, 1).
        fg_mask (torch.Tensor): Positives of the assigner (B, A); they are excluded.
        alpha (float): Lower end of the DIoU band as a fraction of the threshold.
        scale (float): Virtual anchor side in strides.
        topk (int): ATSS candidates per level.

    Returns:
        (torch.Tensor): Weights (B, A) in [0, 1]; all zero for images without boxes.
    """
    b, n = gt_bboxes.shape[:2]
    if n == 0:
        return torch.zeros_like(fg_mask, dtype=torch.float32)
    anchors = virtual_anchors(anchor_points.float(), strides.float(), scale)
    boxes = gt_bboxes.reshape(-1, 4).float()
    iou, diou = box_iou(boxes, anchors), distance_box_iou(boxes, anchors)  # (b*n, A)
    thr = atss_threshold(iou, (boxes[:, :2] + boxes[:, 2:]) / 2, anchor_points.float(), level_sizes, topk)
    thr = thr.unsqueeze(1)
    band = (diou >= alpha * thr) & (diou < thr) & mask_gt.reshape(-1, 1).bool()
    weights = (iou * band).view(b, n, -1).amax(1)  # a point in several bands takes the largest IoU
    return weights * ~fg_mask
