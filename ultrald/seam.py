"""The one place ultrald uses Ultralytics beyond its documented API.

Each use is a small named function or class here, with a smoke test in tests/test_seam.py that fails loudly, naming
the Ultralytics version, when Ultralytics moves the internal it relies on; the rest of ultrald imports these names
from here and otherwise only Ultralytics' public API (models, trainers, validators, losses, cfg, callbacks). Tested
on the versions pyproject.toml allows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ultralytics
from torch import nn
from ultralytics.cfg import merge_equals_args
from ultralytics.nn.distill_model import DistillationModel
from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES
from ultralytics.utils.patches import torch_load

from .errors import UltraldError

VERSION = ultralytics.__version__


class SeamError(UltraldError, RuntimeError):
    """An Ultralytics internal ultrald relies on has moved: a bug report, not a user error."""

    def __init__(self, what: str, detail: str):
        """Name the seam, the Ultralytics version and what was found instead."""
        super().__init__(
            f"ultrald's use of Ultralytics' {what} does not fit Ultralytics {VERSION} ({detail}); pin the "
            "ultralytics version pyproject.toml allows, and report it."
        )


class SetupHooks:
    """Trainer mixin: public hooks around Ultralytics' private `BaseTrainer._setup_train`, the one place the model,
    EMA, optimizer and Ultralytics' feature term (DistillationModel) are built.

    `feature_teacher()` returns the teacher module Ultralytics' feature term should hook (None: none); it is put in
    `args.distill_model` for the setup's duration only (DistillationModel hooks the teacher's layers when built there,
    and would otherwise read a second copy from the path; the args keep the path). `after_setup()` runs once the EMA
    copy exists, so what it attaches to the model (the distillation criterion) stays out of the EMA and checkpoints.
    """

    def feature_teacher(self) -> nn.Module | None:
        """The teacher module of Ultralytics' feature term, or None."""
        return None

    def after_setup(self) -> None:
        """Run after Ultralytics' setup."""

    def _setup_train(self) -> None:
        """Ultralytics' setup with `feature_teacher()` as `distill_model`, then `after_setup()`."""
        path, teacher = self.args.distill_model, self.feature_teacher()
        if teacher is not None:
            self.args.distill_model = teacher
        try:
            super()._setup_train()
        finally:
            self.args.distill_model = path
        self.after_setup()


def merge_cli_args(args: list[str]) -> list[str]:
    """Join 'key', '=', 'value' pieces of a command line as `yolo` does ('cfg/__init__.merge_equals_args')."""
    return merge_equals_args(args)


def is_official_asset(name: str) -> bool:
    """Whether `name` is an asset Ultralytics' downloader fetches by name (yolov8x.pt, yolo26m.pt, ...)."""
    return name in GITHUB_ASSETS_NAMES


def read_checkpoint_dict(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file as the dict Ultralytics saves (its own safe torch.load wrapper)."""
    return torch_load(path, map_location="cpu")


def resumable(ckpt: Any) -> bool:
    """Whether a checkpoint dict can resume training: Ultralytics strips the optimizer and sets epoch -1 when done."""
    return isinstance(ckpt, dict) and ckpt.get("epoch", -1) >= 0 and ckpt.get("optimizer") is not None


def train_args(ckpt: Any) -> dict[str, Any] | None:
    """The settings a checkpoint dict was trained with ('train_args'), None when it is no training checkpoint."""
    args = ckpt.get("train_args") if isinstance(ckpt, dict) else None
    return args if isinstance(args, dict) else None


def is_end2end(model: nn.Module) -> bool:
    """Whether a model's head has a one-to-one branch (YOLOv10, YOLO26: `one2one_cv2`)."""
    return getattr(model.model[-1], "one2one_cv2", None) is not None


def head_channels(model: nn.Module) -> list[int]:
    """The input channels of each level of a Detect/OBB head (those of its box branch `cv2`)."""
    try:
        return [level[0].conv.in_channels for level in model.model[-1].cv2]
    except (AttributeError, IndexError, TypeError) as e:
        raise SeamError("Detect head layout", f"no cv2[i][0].conv.in_channels: {e}") from e


def add_param_groups(optimizer: Any, module: nn.Module) -> None:
    """Add `module`'s parameters to an optimizer built by Ultralytics' `build_optimizer`, each in a new group with the
    settings of Ultralytics' group of its kind ('param_group': 'bias', 'bn' or 'weight', 'muon' for MuSGD's weights),
    so that warmup, the lr schedule and weight decay treat them as the model's own."""
    settings = {}
    for g in sorted(optimizer.param_groups, key=lambda g: -g["lr"]):  # the base lr wins over MuSGD's boosted heads
        settings[g.get("param_group")] = {k: v for k, v in g.items() if k != "params"}
    settings.setdefault("weight", settings.get("muon"))
    if not {"bias", "bn", "weight"} <= {k for k, v in settings.items() if v}:
        raise SeamError("optimizer param groups", f"found groups {sorted(map(str, settings))}")
    kinds = {"bias": [], "bn": [], "weight": []}
    for m in module.modules():
        for name, p in m.named_parameters(recurse=False):
            kinds["bias" if name == "bias" else "bn" if isinstance(m, nn.BatchNorm2d) else "weight"].append(p)
    for kind, params in kinds.items():
        if params:
            optimizer.add_param_group({**settings[kind], "params": params})


def raw_head_output(output: Any) -> dict:
    """The raw head dict of a Detect/OBB forward: in eval mode the head returns (decoded, raw), in train mode raw."""
    raw = output[1] if isinstance(output, tuple) else output
    if not isinstance(raw, dict):
        raise SeamError("head output", f"expected a dict of raw outputs, got {type(raw).__name__}")
    return raw


def assigned(outputs: tuple) -> tuple[Any, Any]:
    """(target_scores (B, A, nc), fg_mask (B, A)) of a TaskAlignedAssigner's outputs, which it returns by position."""
    if not isinstance(outputs, tuple) or len(outputs) < 4:
        raise SeamError("TaskAlignedAssigner outputs", f"expected 5 tensors, got {type(outputs).__name__}")
    return outputs[2], outputs[3]


def e2e_weights(loss: Any) -> tuple[float, float]:
    """The one-to-many and one-to-one weights of an E2ELoss at this epoch (its `o2m`/`o2o` schedule)."""
    return loss.o2m, loss.o2o


def feature_model(model: nn.Module) -> DistillationModel | None:
    """Ultralytics' feature-distillation wrapper (`distill_model=`, `dis=`) around a student, None for a plain one."""
    return model if isinstance(model, DistillationModel) else None


def set_feature_weight(model: DistillationModel, weight: float) -> None:
    """Set the weight of Ultralytics' feature-imitation term (`dis`) for the steps that follow."""
    model.dis = weight


def feature_student(model: DistillationModel) -> nn.Module:
    """The student inside Ultralytics' feature-distillation wrapper."""
    return model.student_model


def release_feature_teacher(model: DistillationModel) -> nn.Module:
    """Drop the wrapper's reference to its teacher (as Ultralytics' EMA copy does) and return the student."""
    model.teacher_model = None
    return model.student_model
