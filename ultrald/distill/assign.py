"""Teacher-guided label assignment (LAD, Nguyen et al., WACV 2022) for Ultralytics' task-aligned assigner.

Ultralytics' TAL assigner picks each box's positives by the task-aligned metric s^0.5 * IoU^6 of the *student's*
predictions. A thin student early in training predicts near-zero scores and boxes far from the objects, so its
positives are few and poorly placed, and every term that lives on them (box, cls, DFL, LD on the main region, the
VLR around them) is taught in the wrong places. LAD feeds the assigner the frozen teacher's predictions instead: the
same ground truth, the same metric, the same top-k, only whose scores and boxes rank the grid points changes.

`assign=` picks the source of the predictions the assigner ranks by (`ASSIGN_SOURCES`); `assign_until=` hands the
assignment back to the student after that fraction of the epochs (`assign_mode`), so the student ends on the
assignment it is validated with.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from ultralytics.utils.tal import dist2bbox, dist2rbox

from ..registry import Registry
from .edges import expected_edges


class Prediction(NamedTuple):
    """What the TAL assigner ranks grid points by: class probabilities and decoded boxes in pixels."""

    scores: torch.Tensor  # (B, A, nc) sigmoid probabilities
    bboxes: torch.Tensor  # (B, A, 4) xyxy pixels, or (B, A, 5) xywhr (pixels, radians) for rotated boxes


def decode_prediction(
    head: dict[str, torch.Tensor], anchor_points: torch.Tensor, stride_tensor: torch.Tensor
) -> Prediction:
    """Return a raw head output as the assigner sees a prediction, in float32, exactly as Ultralytics decodes its own.

    Any head: DFL edges (reg_max > 1) are decoded as the expectation of their softmax, reg_max = 1 edges are used as
    they are (`expected_edges`), so a teacher of another `reg_max` than the student's decodes correctly.

    Args:
        head (dict): 'boxes' (B, 4 * reg_max, A) edge logits, 'scores' (B, nc, A) class logits, and for rotated heads
            'angle' (B, 1, A) in radians.
        anchor_points (torch.Tensor): Grid points (A, 2) in stride units (Ultralytics' `make_anchors`).
        stride_tensor (torch.Tensor): Stride of each grid point (A, 1).

    Returns:
        (Prediction): scores (B, A, nc) and bboxes (B, A, 4) xyxy pixels, or (B, A, 5) xywhr for a rotated head.
    """
    scores = head["scores"].detach().float().sigmoid().transpose(1, 2)
    edges = expected_edges(head["boxes"].detach().transpose(1, 2).unflatten(-1, (4, -1)))  # (B, A, 4) strides
    anchor_points, stride_tensor = anchor_points.float(), stride_tensor.float()
    if "angle" not in head:
        return Prediction(scores, dist2bbox(edges, anchor_points, xywh=False) * stride_tensor)
    angle = head["angle"].detach().float().transpose(1, 2)  # (B, A, 1)
    xywh = dist2rbox(edges, angle, anchor_points) * stride_tensor  # v8OBBLoss scales the first four only
    return Prediction(scores, torch.cat((xywh, angle), -1))


def mean_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return the mean (...,) of two box angles (...,) in radians, as directions modulo pi.

    A rotated box is the same box turned by pi, so the plain mean of 0.1 and pi - 0.1 (pi / 2, a box turned a quarter
    turn) would be wrong; the mean of the doubled angles as unit vectors, halved, is right (0 here).
    """
    return torch.atan2((2 * a).sin() + (2 * b).sin(), (2 * a).cos() + (2 * b).cos()) / 2


def mix_predictions(student: Prediction, teacher: Prediction) -> Prediction:
    """Return the ensemble of the two predictions: the mean of their probabilities and of their boxes.

    Why the arithmetic mean and not a product of the two task-aligned metrics: while the student's scores are near 0
    a product would let them veto every grid point the teacher is sure of (the failure LAD removes), whereas in the
    mean the confident network ranks; as the student's scores grow it gets an equal vote, a hand-over by confidence.
    Rotated boxes average their centres and sides and their angles modulo pi (`mean_angle`).
    """
    scores = (student.scores.float() + teacher.scores.float()) / 2
    s, t = student.bboxes.float(), teacher.bboxes.float()
    if s.shape[-1] == 4:
        return Prediction(scores, (s + t) / 2)
    return Prediction(scores, torch.cat(((s[..., :4] + t[..., :4]) / 2, mean_angle(s[..., 4:], t[..., 4:])), -1))


def student_prediction(student: Prediction, teacher: Prediction) -> Prediction:
    """Return the student's own prediction: Ultralytics' assignment."""
    return student


def teacher_prediction(student: Prediction, teacher: Prediction) -> Prediction:
    """Return the teacher's prediction: LAD's assignment."""
    return teacher


# assign= -> (student's, teacher's prediction) -> the prediction the assigner ranks grid points by
ASSIGN_SOURCES = Registry("assign", student=student_prediction, teacher=teacher_prediction, mix=mix_predictions)


def assign_mode(assign: str, until: float, epoch: int, epochs: int) -> str:
    """Return the assignment source ('student', 'teacher' or 'mix') of `epoch` (0-based) of `epochs`.

    `assign` for the epochs before `until * epochs`, then 'student' (the student's own assignment, the one its
    validation and inference scores follow); `assign` for every epoch when `until` is 0. An unknown `assign` raises
    KeyError naming the key.

    Examples:
        >>> [assign_mode("teacher", 0.5, e, 4) for e in range(4)]
        ['teacher', 'teacher', 'student', 'student']
    """
    ASSIGN_SOURCES[assign]  # raises for an unknown source, even one the schedule never reaches
    if until and epoch >= until * epochs:
        return "student"
    return assign
