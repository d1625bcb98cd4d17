"""How the distillation weights move through a run: pure functions of the epoch, one registry entry per form.

`distill_schedule=` scales every distillation term (LD, VLR, KD, the angle term) by a factor of the epoch:
'constant' keeps them at their weights; 'cosine' decays them along a half cosine from 1 to 0.01 at the last epoch
(YOLOv6's distillation weight); 'close_mosaic' switches them off when Ultralytics closes the mosaic augmentation for
the last `close_mosaic` epochs (mmyolo's RTMDet distillation stops at the same point), so the student ends on its
own losses over the images it is validated on; 'auto' is 'cosine' for a student trained at least as many epochs as
its teacher's whole training and 'constant' otherwise (bench/README.md: cosine gained on every set at the teacher's
schedule and lost at a quarter of it).
"""

from __future__ import annotations

import math

from ..registry import Registry

COSINE_FLOOR = 0.01  # YOLOv6's end value of the distillation weight


def constant(epoch: int, epochs: int, close_mosaic: int, teacher_epochs: int | None = None) -> float:
    """1: the terms keep their weights."""
    return 1.0


def cosine(epoch: int, epochs: int, close_mosaic: int, teacher_epochs: int | None = None) -> float:
    """1 at epoch 0 falling along a half cosine to `COSINE_FLOOR` at the last epoch (YOLOv6).

    Examples:
        >>> [round(cosine(e, 3, 0), 3) for e in range(3)]
        [1.0, 0.505, 0.01]
    """
    t = epoch / max(epochs - 1, 1)
    return COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * t))


def mosaic_open(epoch: int, epochs: int, close_mosaic: int, teacher_epochs: int | None = None) -> float:
    """1 while the mosaic is on, 0 from the epoch Ultralytics closes it (`epochs - close_mosaic`, when that is an epoch
    of the run; a larger `close_mosaic` never closes it)."""
    start = epochs - close_mosaic
    return 0.0 if close_mosaic and 0 <= start <= epoch else 1.0


def auto_form(epochs: int, teacher_epochs: int | None) -> str:
    """Return the form 'auto' runs: 'cosine' when the student's `epochs` are at least `teacher_epochs`, the epochs of
    its teacher's whole training, else (also when they are not on record, None) 'constant'."""
    return "cosine" if teacher_epochs and epochs >= teacher_epochs else "constant"


def auto(epoch: int, epochs: int, close_mosaic: int, teacher_epochs: int | None = None) -> float:
    """The factor of `auto_form(epochs, teacher_epochs)` in `epoch`.

    Examples:
        >>> auto(2, 3, 0, teacher_epochs=3), auto(2, 3, 0, teacher_epochs=4), auto(2, 3, 0)
        (0.01, 1.0, 1.0)
    """
    return SCHEDULES[auto_form(epochs, teacher_epochs)](epoch, epochs, close_mosaic)


# distill_schedule= -> (epoch, epochs, close_mosaic, teacher_epochs) -> the factor on every term in that epoch
SCHEDULES = Registry("distill_schedule", constant=constant, cosine=cosine, close_mosaic=mosaic_open, auto=auto)


def feature_weight(dis: float, until: float, epoch: int, epochs: int) -> float:
    """Return the feature term's weight in `epoch` (0-based): `dis` falling along a half cosine to 0 at `until` of the
    epochs, then 0; constant `dis` when `until` is 0."""
    if not until:
        return dis
    t = epoch / (until * epochs)
    return dis * 0.5 * (1 + math.cos(math.pi * t)) if t < 1 else 0.0
