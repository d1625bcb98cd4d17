"""Box-edge distributions for LD between heads with different `reg_max`, as pure tensor functions in float32.

A DFL head (reg_max = K > 1) gives each ltrb edge as logits over K bins at 0, 1, ..., K - 1 stride units and decodes
it as the expectation of the softmax. A YOLO26 head (reg_max = 1) has `nn.Identity` for its DFL module: its raw box
output is the ltrb distance itself, in stride units, unbounded (no activation). These functions turn any teacher into
a target on the student's bins, or into edges for a box-level loss when the student has no bins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import Registry


def expected_edges(logits: torch.Tensor) -> torch.Tensor:
    """Return the decoded ltrb distances (..., 4) in stride units from edge logits (..., 4, K).

    For K > 1 this is the DFL decode sum_k softmax(logits)_k * k; for K == 1 (reg_max=1 heads) the raw output is the
    distance itself and is returned unchanged.
    """
    logits = logits.float()
    k = logits.shape[-1]
    if k == 1:
        return logits.squeeze(-1)
    return logits.softmax(-1) @ torch.arange(k, device=logits.device, dtype=torch.float32)


def two_bin_target(edges: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Return the two-bin distribution (..., 4, reg_max) that DFL builds for continuous distances (..., 4).

    Same as Ultralytics' `DFLoss`: x is clamped to [0, reg_max - 1.01], bin floor(x) gets floor(x) + 1 - x and the
    next bin gets x - floor(x), so the expectation is x wherever x lies in that range. Needs reg_max >= 2.
    """
    x = edges.float().clamp(0, reg_max - 1 - 0.01)
    left = x.long()  # floor, as x >= 0
    wl, wr = (left + 1 - x).unsqueeze(-1), (x - left).unsqueeze(-1)
    return F.one_hot(left, reg_max) * wl + F.one_hot(left + 1, reg_max) * wr


def resample_bins(probs: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Return teacher bin probabilities (..., 4, Kt) moved onto `reg_max` = Ks student bins (..., 4, Ks).

    The mass of teacher bin k goes to the student bins around k by the `two_bin_target` rule, so a teacher with more
    bins (Kt > Ks) keeps its expectation for mass below Ks - 1.01 and piles the rest at the last two bins as DFL would
    for a target beyond the range; a teacher with fewer bins is embedded exactly. Ks == Kt is the identity (the DFL
    clamp would otherwise move 1% of the last bin's mass).
    """
    probs = probs.float()
    kt = probs.shape[-1]
    if kt == reg_max:
        return probs
    # a linear map: row k is where bin k's mass lands
    moves = two_bin_target(torch.arange(kt, device=probs.device, dtype=torch.float32), reg_max)  # (Kt, Ks)
    return probs @ moves


def kl_to_target(student: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Return KL(q_T || softmax(s/T)) * T^2 averaged over the last dim, LD against a probability target.

    q_T = softmax(log q / T), i.e. q^(1/T) renormalised: zero bins stay zero (a two-bin target is only softened
    between its two bins) and add nothing, as in xlogy. For q = softmax(t) it equals `kl_distill(s, t, T)`.

    Args:
        student (torch.Tensor): Student logits (..., K).
        target (torch.Tensor): Target probabilities (..., K), rows summing to 1; no gradient flows into them.
        temperature (float): Softening temperature T.

    Returns:
        (torch.Tensor): Loss per row (...,). Its gradient w.r.t. the student logits is T * (p_s - q_T) / K.
    """
    log_ps = F.log_softmax(student.float() / temperature, dim=-1)
    log_q = F.log_softmax(target.detach().float().log() / temperature, dim=-1)  # -inf at zero bins
    q = log_q.exp()
    # 0 * (-inf) would be NaN; where() also keeps the gradient at those bins finite (it is -q = 0)
    kl = torch.where(q > 0, q * (log_q - log_ps), 0.0)
    return kl.mean(-1) * temperature**2


def ltrb_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Return the IoU (...,) of boxes given as ltrb distances (..., 4) from the same anchor point.

    Both boxes share the point, so the overlap is (min l + min r) * (min t + min b), clamped at 0 like `bbox_iou`;
    exact for distances of any sign as long as each box has l + r > 0 and t + b > 0.
    """
    a, b = a.float(), b.float()
    lo = torch.minimum(a, b)
    inter = (lo[..., 0] + lo[..., 2]).clamp(0) * (lo[..., 1] + lo[..., 3]).clamp(0)
    area_a = (a[..., 0] + a[..., 2]) * (a[..., 1] + a[..., 3])
    area_b = (b[..., 0] + b[..., 2]) * (b[..., 1] + b[..., 3])
    return inter / (area_a + area_b - inter + eps)


def l1_edges(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean |s - t| over the 4 ltrb edges (..., 4) -> (...,)."""
    return (s - t).abs().mean(-1)


def iou_edges(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """1 - IoU of the two boxes with ltrb edges (..., 4) from one point -> (...,)."""
    return 1 - ltrb_iou(s, t)


def l1_iou_edges(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The sum of both: the pair Ultralytics trains reg_max=1 boxes with (an L1 and an IoU term)."""
    return l1_edges(s, t) + iou_edges(s, t)


BOX_FORMS = Registry("ld_box_type", **{"l1": l1_edges, "iou": iou_edges, "l1+iou": l1_iou_edges})
BOX_TYPES = tuple(BOX_FORMS)


def box_distill(student: torch.Tensor, teacher: torch.Tensor, kind: str = "l1+iou") -> torch.Tensor:
    """Return a box-level localization distillation loss per row (...,) between ltrb edges (..., 4).

    For students without bins (reg_max=1). Edges are in stride units, so 'l1' has the same scale at every level and
    image size (Ultralytics' own L1 for these heads divides by the image size instead).

    Args:
        student (torch.Tensor): Student ltrb distances (..., 4), stride units.
        teacher (torch.Tensor): Teacher ltrb distances (..., 4); no gradient flows into them.
        kind (str): One of `BOX_FORMS`: 'l1' (mean |s - t| over the 4 edges), 'iou' (1 - IoU) or 'l1+iou' (sum);
            another kind raises KeyError.

    Returns:
        (torch.Tensor): Loss per row (...,), zero where the edges agree.
    """
    return BOX_FORMS[kind](student.float(), teacher.detach().float())


def edge_target(teacher: torch.Tensor, reg_max: int) -> torch.Tensor | None:
    """Return the LD target (..., 4, Ks) on a student's `reg_max` = Ks bins for teacher edge logits (..., 4, Kt).

    Pairings:
        Kt == Ks > 1: softmax of the teacher; `kl_to_target` on it equals `kl_distill` on the logits.
        Kt == 1 < Ks: `two_bin_target` of the teacher's distances, the DFL target of a box with those edges.
        Kt > 1, Ks > 1, Kt != Ks: `resample_bins` of the teacher's softmax.
        Ks == 1: None, the student has no bins; use `box_distill(student, expected_edges(teacher))` instead.

    Use the target as `kl_to_target(student_logits, target, T)`. The target is detached and float32.
    """
    teacher = teacher.detach().float()
    kt = teacher.shape[-1]
    if reg_max == 1:
        return None
    if kt == 1:
        return two_bin_target(teacher.squeeze(-1), reg_max)
    return resample_bins(teacher.softmax(-1), reg_max)
