"""The frozen teacher: read it, check it against the student, and run it on the student's batch."""

from __future__ import annotations

import hashlib
from copy import deepcopy
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from ultralytics.engine.model import Model
from ultralytics.nn.modules.head import OBB, Detect, Pose, Segment
from ultralytics.nn.tasks import load_checkpoint
from ultralytics.utils import LOGGER

from ..errors import TeacherError
from ..models import resolve_weights
from ..seam import is_end2end, raw_head_output

IN_MEMORY = "<in-memory model>"  # args.teacher of a teacher passed as a model object in Python

__all__ = ("IN_MEMORY", "TeacherError", "TeacherHead", "check_teacher", "load_teacher", "teacher_hash")


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


def file_hash(path: str | Path) -> str:
    """Return the sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_hash(model: nn.Module) -> str:
    """Return the sha256 of a model's parameters and buffers (names, float32 values), for teachers without a file."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def teacher_hash(teacher: str | Path | nn.Module | Model) -> str:
    """Return the fingerprint a run records for its teacher: 'sha256:<file hash>' or 'weights:<weights hash>'."""
    if isinstance(teacher, (str, Path)):
        return f"sha256:{file_hash(teacher)}"
    return f"weights:{weights_hash(teacher.model if isinstance(teacher, Model) else teacher)}"


def first_nonfinite(model: nn.Module) -> str | None:
    """Return the name of the first parameter or buffer of `model` holding NaN or Inf, else None."""
    for name, t in (*model.named_parameters(), *model.named_buffers()):
        if t.is_floating_point() and not torch.isfinite(t).all():
            return name
    return None


def read_checkpoint(path: Path) -> nn.Module:
    """Load an Ultralytics checkpoint's model, turning every way a file can be unreadable into one TeacherError."""
    if path.stat().st_size == 0:
        raise TeacherError(
            f"teacher='{path}' is an empty file: pass a trained Ultralytics checkpoint (weights/best.pt)."
        )
    try:
        model = load_checkpoint(path)[0]
    except Exception as e:  # truncated zip, not a pickle, foreign classes: all mean "not a checkpoint"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, TypeError) and "outside the supported" in reason:
            reason = "it holds no Ultralytics model (a bare state_dict?)"
        raise TeacherError(f"teacher='{path}' cannot be read as an Ultralytics checkpoint: {reason}") from e
    return model


def load_teacher(teacher: str | Path | nn.Module | Model, device: torch.device | str = "cpu") -> nn.Module:
    """Load a teacher from a checkpoint path, a YOLO object or a model; return it frozen, fused, in eval mode.

    Raises TeacherError, naming the file and the tensor, for unreadable files and non-finite weights.
    """
    if isinstance(teacher, (str, Path)):
        path = resolve_weights(teacher, "teacher", TeacherError)
        model, where = read_checkpoint(path), f"teacher='{teacher}'"
    elif isinstance(teacher, (Model, nn.Module)):  # ultralytics.YOLO("teacher.pt") or its .model
        model = deepcopy(teacher.model if isinstance(teacher, Model) else teacher)  # leave the caller's object be
        where = f"teacher {type(teacher).__name__} object"
    else:
        raise TeacherError(f"teacher={teacher!r} is not a checkpoint path, a YOLO object or an Ultralytics model.")
    if not isinstance(model, nn.Module) or not hasattr(model, "model") or head_task(model) is None:
        raise TeacherError(f"{where} has no Detect/OBB head; LD needs a YOLO detector.")
    bad = first_nonfinite(model)
    if bad is not None:
        raise TeacherError(
            f"{where} has NaN/Inf values in '{bad}': it cannot teach. Use a checkpoint from a good epoch."
        )
    model = model.float().to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if not is_end2end(model):  # fusing an end-to-end head would drop the one-to-many branch LD reads
        model.fuse(verbose=False)
    return model


def check_classes(teacher: nn.Module, task: str, names: dict[int, str]) -> None:
    """Raise TeacherError if `teacher` does not predict `task` and the classes `names` (count, names and order)."""
    t_task, t_names, nc = head_task(teacher), dict(getattr(teacher, "names", {})), head_of(teacher).nc
    if t_task != task:
        raise TeacherError(
            f"teacher task '{t_task}' does not match student task '{task}'. Use a teacher of task '{task}'."
        )
    if nc != len(names):
        raise TeacherError(f"teacher has {nc} classes, student has {len(names)}: they must predict the same classes.")
    if [t_names.get(i) for i in range(nc)] != [names.get(i) for i in range(len(names))]:
        raise TeacherError(
            f"teacher class names {list(t_names.values())} differ from the student's {list(names.values())} "
            "(order matters): train the teacher on the same dataset yaml, or pass it as a checkpoint file and "
            "ultrald fine-tunes it on data= first."
        )


def check_teacher(teacher: nn.Module, student: nn.Module, args: SimpleNamespace) -> None:
    """Raise TeacherError if `teacher` cannot distil into `student` under `args`.

    Checks task, classes (count, names and order), input channels and strides. Any pair of heads (DFL or reg_max=1,
    dense or end-to-end) can distil: `ultrald.distill.edges` maps the teacher's edges onto the student's form.
    """
    check_classes(teacher, head_task(student), dict(student.names))
    t_head, s_head = head_of(teacher), head_of(student)
    t_ch, s_ch = teacher.yaml.get("channels", 3), student.yaml.get("channels", 3)
    if t_ch != s_ch:
        raise TeacherError(f"teacher takes {t_ch} input channels, student takes {s_ch}.")
    if t_head.stride.tolist() != s_head.stride.tolist():
        raise TeacherError(
            f"teacher strides {t_head.stride.tolist()} differ from student strides {s_head.stride.tolist()}: "
            "LD compares the heads grid point by grid point, so both need the same levels (e.g. no -p2/-p6 mix)."
        )
    if args.kd_type == "softmax" and s_head.nc == 1 and (args.kd > 0 or (args.vlr and args.vlr_kd > 0)):
        raise TeacherError("kd_type=softmax is identically zero with one class: use kd_type=binary.")
    LOGGER.info(f"ultrald: {pairing(teacher, student)}")


def pairing(teacher: nn.Module, student: nn.Module) -> str:
    """Return one line saying how this pair of heads is distilled (see README's table of pairings)."""
    kt, ks = head_of(teacher).reg_max, head_of(student).reg_max
    if ks == 1:
        loc = "box-level LD (student reg_max=1: decoded edges against the teacher's)"
    elif kt == 1:
        loc = f"LD on two-bin targets (teacher reg_max=1 edges as DFL targets over {ks} bins)"
    elif kt != ks:
        loc = f"LD with the teacher's {kt} bins resampled onto the student's {ks}"
    else:
        loc = f"LD on {ks}-bin edge distributions"
    branches = "one-to-many and one-to-one branches" if is_end2end(student) else "dense head"
    source = "the teacher's matching branch" if is_end2end(teacher) else "the teacher's dense head"
    return f"{loc}; student {branches} distilled from {source}."


class TeacherHead:
    """Callable returning the teacher's raw head outputs for a batch of images, computed once per batch.

    Args:
        model (nn.Module): The frozen teacher.
        shared (bool): True when another module (Ultralytics' DistillationModel, when dis > 0) already runs the teacher
            on each batch; the output is then read from a forward hook instead of a second forward pass.
        epochs (int | None): The epochs of the teacher's whole training (`Teacher.epochs`), which
            `distill_schedule=auto` compares with the student's; None when not on record.
    """

    def __init__(self, model: nn.Module, shared: bool = False, epochs: int | None = None):
        """Keep the frozen teacher and hook its head."""
        self.model, self.shared, self.epochs, self.output, self._img = model, shared, epochs, None, None
        self.reg_max, self.end2end = head_of(model).reg_max, is_end2end(model)
        self._hook = head_of(model).register_forward_hook(self._store)

    def _store(self, module: nn.Module, inputs: tuple, output) -> None:
        """Keep the head output of the latest teacher forward."""
        self.output = raw_head_output(output)

    def close(self) -> None:
        """Remove the forward hook and drop the last output (the trainer calls this when training ends)."""
        self._hook.remove()
        self.output = self._img = None

    def __call__(self, img: torch.Tensor, branch: str = "one2many") -> dict[str, torch.Tensor]:
        """Return the teacher head dict ('boxes' (B, 4*reg_max, A), 'scores' (B, nc, A)[, 'angle']) for `img`.

        `branch` picks the branch of an end-to-end teacher ('one2many' or 'one2one'); a dense teacher has one output.
        The forward runs once per batch however many student branches ask, under inference mode (no autograd
        bookkeeping) and under whatever autocast the trainer set (fp16 with AMP on CUDA); the losses cast to fp32.
        """
        if not self.shared and img is not self._img:
            with torch.inference_mode(), torch.profiler.record_function("ultrald teacher forward"):
                self.model(img)
            self._img = img
        return self.output.get(branch, self.output) if self.end2end else self.output
