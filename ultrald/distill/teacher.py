"""The frozen teacher: load it, check it against the student, and run it on the student's batch."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from ultralytics.engine.model import Model
from ultralytics.nn.modules.head import OBB, Detect, Pose, Segment
from ultralytics.nn.tasks import load_checkpoint
from ultralytics.utils import LOGGER

IN_MEMORY = "<in-memory model>"  # args.teacher of a teacher passed as a model object in Python


class TeacherError(ValueError):
    """The teacher cannot distil into this student (missing file, other task, classes, strides or head)."""


def head_of(model: nn.Module) -> nn.Module:
    """Return the last module of an Ultralytics model: its Detect/OBB head."""
    return model.model[-1]


def head_task(model: nn.Module) -> str | None:
    """Return the task the head of `model` predicts ('detect', 'obb', 'segment', 'pose') or None for other heads."""
    head = head_of(model)
    for cls, task in ((OBB, "obb"), (Segment, "segment"), (Pose, "pose"), (Detect, "detect")):
        if isinstance(head, cls):
            return task
    return None


def is_end2end(model: nn.Module) -> bool:
    """Return True for heads with a one-to-one branch (YOLOv10, YOLO26)."""
    return getattr(head_of(model), "one2one_cv2", None) is not None


def check_teacher_file(teacher: str | Path) -> Path:
    """Return `teacher` as a Path if it is an existing *.pt file, else raise TeacherError naming the path.

    Checked before Ultralytics sees the path: Ultralytics would try GitHub for a missing *.pt, which hangs or fails
    with a download traceback offline.
    """
    path = Path(teacher).expanduser()
    if path.suffix != ".pt":
        raise TeacherError(
            f"teacher='{teacher}' is not a *.pt checkpoint. Pass the path of a trained Ultralytics model."
        )
    if not path.is_file():
        raise TeacherError(
            f"teacher='{teacher}' does not exist (resolved to '{path.resolve()}'). ultrald never downloads teachers: "
            "train one with 'yolo train model=yolov8s.yaml data=...' and pass its weights/best.pt."
        )
    return path


def load_teacher(teacher: str | Path | nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """Load a teacher from a checkpoint path, a YOLO object or a model; return it frozen, fused, in eval mode."""
    if isinstance(teacher, (str, Path)):
        model = load_checkpoint(check_teacher_file(teacher))[0]
    elif isinstance(teacher, (Model, nn.Module)):  # ultralytics.YOLO("teacher.pt") or its .model
        model = deepcopy(teacher.model if isinstance(teacher, Model) else teacher)  # leave the caller's object be
    else:
        raise TeacherError(f"teacher={teacher!r} is not a checkpoint path, a YOLO object or an Ultralytics model.")
    if not hasattr(model, "model") or head_task(model) is None:
        raise TeacherError(f"teacher {type(model).__name__} has no Detect/OBB head; LD needs a YOLO detector.")
    model = model.float().to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if not is_end2end(model):  # fusing an end-to-end head would drop the one-to-many branch LD reads
        model.fuse(verbose=False)
    return model


def check_teacher(teacher: nn.Module, student: nn.Module, args: SimpleNamespace) -> None:
    """Raise TeacherError if `teacher` cannot distil into `student` under `args` (ld, vlr, kd weights).

    Checks task, classes (count, names and order), input channels, strides and the DFL head that LD needs.
    """
    t_head, s_head = head_of(teacher), head_of(student)
    t_task, s_task = head_task(teacher), head_task(student)
    if t_task != s_task:
        raise TeacherError(f"teacher task '{t_task}' does not match student task '{s_task}'. Use a {s_task} teacher.")
    if is_end2end(student):
        raise TeacherError(
            "student has an end-to-end head (YOLOv10/YOLO26 one-to-one branch), which ultrald does not distil. "
            "Use a DFL student such as yolov8*.yaml or yolo11*.yaml."
        )
    t_names, s_names = dict(getattr(teacher, "names", {})), dict(student.names)
    if t_head.nc != s_head.nc:
        raise TeacherError(
            f"teacher has {t_head.nc} classes, student has {s_head.nc}: they must predict the same classes."
        )
    if [t_names.get(i) for i in range(t_head.nc)] != [s_names.get(i) for i in range(s_head.nc)]:
        raise TeacherError(
            f"teacher class names {list(t_names.values())} differ from the student's {list(s_names.values())} "
            "(order matters): train the teacher on the same dataset yaml."
        )
    t_ch, s_ch = teacher.yaml.get("channels", 3), student.yaml.get("channels", 3)
    if t_ch != s_ch:
        raise TeacherError(f"teacher takes {t_ch} input channels, student takes {s_ch}.")
    if t_head.stride.tolist() != s_head.stride.tolist():
        raise TeacherError(
            f"teacher strides {t_head.stride.tolist()} differ from student strides {s_head.stride.tolist()}: "
            "LD compares the heads grid point by grid point, so both need the same levels (e.g. no -p2/-p6 mix)."
        )
    wants_ld = args.ld > 0 or (args.vlr and args.vlr_ld > 0)
    if wants_ld:
        for who, head in (("teacher", t_head), ("student", s_head)):
            if head.reg_max <= 1:
                raise TeacherError(
                    f"{who} has no DFL head (reg_max={head.reg_max}, e.g. YOLO26), so there are no edge distributions "
                    "for LD. Use a yolov8/yolo11 model, or set ld=0 vlr=False to run classification KD alone."
                )
        if t_head.reg_max != s_head.reg_max:
            raise TeacherError(f"teacher reg_max={t_head.reg_max} differs from student reg_max={s_head.reg_max}.")
    if args.kd_type == "softmax" and s_head.nc == 1 and (args.kd > 0 or (args.vlr and args.vlr_kd > 0)):
        raise TeacherError("kd_type=softmax is identically zero with one class: use kd_type=binary.")
    if is_end2end(teacher):
        LOGGER.info("ultrald: end-to-end teacher, distilling from its one-to-many branch.")


class TeacherHead:
    """Callable returning the teacher's raw head outputs for a batch of images.

    Args:
        model (nn.Module): The frozen teacher.
        shared (bool): True when another module (Ultralytics' DistillationModel, when dis > 0) already runs the teacher
            on each batch; the output is then read from a forward hook instead of a second forward pass.
    """

    def __init__(self, model: nn.Module, shared: bool = False):
        """Keep the frozen teacher and hook its head."""
        self.model, self.shared, self.output = model, shared, None
        head_of(model).register_forward_hook(self._store)

    def _store(self, module: nn.Module, inputs: tuple, output) -> None:
        """Keep the head output of the latest teacher forward."""
        self.output = output

    def __call__(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the teacher head dict ('boxes' (B, 4*reg_max, A), 'scores' (B, nc, A)[, 'angle']) for `img`."""
        if not self.shared:
            with torch.no_grad():
                self.model(img)
        out = self.output[1] if isinstance(self.output, tuple) else self.output  # eval mode: (decoded, raw dict)
        return out.get("one2many", out)
