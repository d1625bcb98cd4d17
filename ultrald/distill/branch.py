"""A training-only DFL box branch for reg_max=1 students (YOLO26), so a DFL teacher teaches them the paper's LD.

A reg_max=1 head regresses each edge as one number: there is no distribution for LD to match, and the box-level term
(`ld_box`) passes on only the teacher's expected edge. The branch reads the head's own input feature maps and predicts
each edge as a distribution over the teacher's bins (as YOLOv6 v3 trains its small models with a DFL branch it drops
at deployment). LD on it sends the teacher's localization knowledge, ambiguity included, into the features the real
head reads. It lives outside the student's module tree (like the teacher): the optimizer trains it, and no checkpoint,
EMA copy or export ever holds it, so the student stays a plain YOLO26 model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from ultralytics.nn.modules import Conv

from ..errors import TeacherError
from ..seam import head_channels
from .teacher import head_of


class DFLBranch(nn.Module):
    """Per level, the layout of Ultralytics' DFL box branch (two 3x3 Conv and a 1x1 conv to 4 * reg_max channels).

    Args:
        channels (Sequence[int]): The head's input channels, level by level (`seam.head_channels`).
        reg_max (int): Bins per edge, the teacher's.
    """

    def __init__(self, channels: Sequence[int], reg_max: int):
        """Build one branch per level, with Ultralytics' box bias initialisation."""
        super().__init__()
        c2 = max(16, channels[0] // 4, reg_max * 4)
        self.reg_max = reg_max
        self.levels = nn.ModuleList(
            nn.Sequential(Conv(c, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for c in channels
        )
        for level in self.levels:
            nn.init.constant_(level[-1].bias, 1.0)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return the edge logits (B, 4 * reg_max, A) of the feature maps (B, C_l, H_l, W_l), in the order of
        Ultralytics' raw 'boxes' output (levels concatenated, each flattened row-major)."""
        return torch.cat([level(f).flatten(2) for level, f in zip(self.levels, feats)], 2)


def dfl_branch(student: nn.Module, teacher: nn.Module, cfg) -> DFLBranch | None:
    """Return the DFL branch a run trains (`cfg.dfl_branch`): for a reg_max=1 student of a DFL teacher, with the
    teacher's bins; None when off or when the student has a DFL head of its own (LD then reads that).

    Raises:
        TeacherError: `dfl_branch` for a reg_max=1 student whose teacher has no distributions to teach either.
    """
    ks, kt = head_of(student).reg_max, head_of(teacher).reg_max
    if not cfg.dfl_branch or ks > 1:
        return None
    if kt == 1:
        raise TeacherError("dfl_branch=True needs a teacher with a DFL head (reg_max > 1); this teacher has reg_max=1.")
    return DFLBranch(head_channels(student), kt)
