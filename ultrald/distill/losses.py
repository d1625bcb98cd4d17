"""Distillation losses as pure tensor functions (no state), always computed in float32."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..registry import Registry


def kl_distill(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Return KL(softmax(t/T) || softmax(s/T)) * T^2 averaged over the last dim, the LD/KD loss of Zheng et al.

    Args:
        student (torch.Tensor): Student logits (..., K), e.g. the K bins of one box edge.
        teacher (torch.Tensor): Teacher logits (..., K); no gradient flows into them.
        temperature (float): Softening temperature T.

    Returns:
        (torch.Tensor): Loss per row (...,). Its gradient w.r.t. the student logits is T * (p_s - p_t) / K.
    """
    log_ps = F.log_softmax(student.float() / temperature, dim=-1)
    log_pt = F.log_softmax(teacher.detach().float() / temperature, dim=-1)
    return (log_pt.exp() * (log_pt - log_ps)).mean(-1) * temperature**2


def binary_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Return the per-class Bernoulli KL(sigmoid(t/T) || sigmoid(s/T)) * T^2 summed over the last dim.

    The counterpart of `kl_distill` for YOLO's sigmoid (BCE) classifier: each class is its own two-way distribution,
    so it also works with one class, where the softmax form is identically zero.

    Args:
        student (torch.Tensor): Student class logits (..., C).
        teacher (torch.Tensor): Teacher class logits (..., C).
        temperature (float): Softening temperature T.

    Returns:
        (torch.Tensor): Loss per row (...,); gradient w.r.t. the student logits: T * (sigmoid(s/T) - sigmoid(t/T)).
    """
    s, t = student.float() / temperature, teacher.detach().float() / temperature
    pt = t.sigmoid()
    # BCE(s, pt) - BCE(t, pt) = KL(pt || ps): zero when s == t, same gradient as the BCE
    kl = F.binary_cross_entropy_with_logits(s, pt, reduction="none") - F.binary_cross_entropy_with_logits(
        t, pt, reduction="none"
    )
    return kl.sum(-1) * temperature**2


KD_FORMS = Registry("kd_type", binary=binary_kd, softmax=kl_distill)  # YOLO's sigmoid head; the paper's softmax


def class_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float, kind: str = "binary") -> torch.Tensor:
    """Return classification KD per row (...,) in the `kind` form (`KD_FORMS`): 'binary' (per-class sigmoid) or
    'softmax'; another kind raises KeyError."""
    return KD_FORMS[kind](student, teacher, temperature)


def sin2_angle(d: torch.Tensor) -> torch.Tensor:
    """sin^2 of an angle difference: smooth, gradient sin(2 d)."""
    return d.sin().pow(2)


def l1_angle(d: torch.Tensor) -> torch.Tensor:
    """|d| with the angle difference wrapped to [-pi/2, pi/2): its gradient keeps its size up to a quarter turn."""
    return (d - math.pi * torch.round(d / math.pi)).abs()


ANGLE_FORMS = Registry("ald_type", sin2=sin2_angle, l1=l1_angle)
ALD_TYPES = tuple(ANGLE_FORMS)


def angle_distill(student: torch.Tensor, teacher: torch.Tensor, kind: str = "sin2") -> torch.Tensor:
    """Return a distillation loss between box angles (radians) that has the box's period pi.

    A rotated box at angle a and at a + pi is the same box, so both forms depend only on the difference modulo pi:
    'sin2' is sin^2(a_s - a_t), smooth with gradient sin(2 d); 'l1' is |d| with d wrapped to [-pi/2, pi/2), whose
    gradient keeps its size up to a quarter turn.

    Args:
        student (torch.Tensor): Student angles (...,).
        teacher (torch.Tensor): Teacher angles (...,); no gradient flows into them.
        kind (str): One of `ANGLE_FORMS`, 'sin2' or 'l1'; another kind raises KeyError.

    Returns:
        (torch.Tensor): Loss per element (...,), zero where the angles agree modulo pi.
    """
    return ANGLE_FORMS[kind](student.float() - teacher.detach().float())
