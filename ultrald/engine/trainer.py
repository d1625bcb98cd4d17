"""LDTrainer: Ultralytics' DetectionTrainer with a frozen teacher and the LD/VLR/KD criterion.

The trainer only wires things: the student stays a plain Ultralytics model, the teacher lives outside its module tree
(in the criterion), so EMA, checkpoints, export and inference never see it.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn
from ultralytics.cfg import DEFAULT_CFG, DEFAULT_CFG_DICT
from ultralytics.engine.model import Model
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.models.yolo.obb import OBBTrainer
from ultralytics.nn.distill_model import DistillationModel
from ultralytics.utils import LOCAL_RANK, LOGGER, RANK, WORLD_SIZE, IterableSimpleNamespace, colorstr
from ultralytics.utils.torch_utils import unwrap_model

from ..cfg import check_ld_args, ld_cfg
from ..data.shapes import resolve_data
from ..distill.criterion import LDDetectionLoss, LDOBBLoss
from ..distill.teacher import IN_MEMORY, TeacherError, TeacherHead, check_teacher, check_teacher_file, load_teacher
from ..models import resolve_model
from ..utils import ensure_offline_fonts


class DistillationTrainerMixin:
    """Adds a frozen teacher and a distillation criterion to an Ultralytics trainer.

    Subclasses set `criterion_class`. `teacher=` is a checkpoint path (kept in the args, so resume and DDP workers
    rebuild the teacher from it) or, in Python, a YOLO object or model (kept on the trainer only).
    """

    criterion_class: type = LDDetectionLoss

    def __init__(self, cfg=DEFAULT_CFG, overrides: dict[str, Any] | None = None, _callbacks: dict | None = None):
        """Merge ultrald's keys into the cfg, check them and the teacher path, then build the Ultralytics trainer."""
        overrides = dict(overrides or {})
        if "model" in overrides:
            overrides["model"] = resolve_model(overrides["model"])
        self.teacher_model = None  # a teacher passed as an object
        teacher = overrides.get("teacher")
        if isinstance(teacher, (nn.Module, Model)):
            self.teacher_model = teacher
            overrides["teacher"] = IN_MEMORY
        base = ld_cfg(cfg)
        check_ld_args({**base, **overrides})
        if not overrides.get("resume"):
            self._check_teacher_arg({**base, **overrides})
        ensure_offline_fonts()
        super().__init__(base, overrides, _callbacks)
        check_ld_args(self.args)  # resume replaced the args with the checkpoint's
        metric_tasks = {"coco": "detect", "voc": "detect", "dota": "obb"}
        if self.args.metric and metric_tasks[self.args.metric] != self.args.task:
            raise ValueError(
                f"metric={self.args.metric} evaluates {metric_tasks[self.args.metric]} models, "
                f"this is a {self.args.task} run."
            )
        self._check_teacher_arg(vars(self.args))
        if LOCAL_RANK != -1 and 0 < self.world_size < WORLD_SIZE:  # a torchrun worker of a multi-node job
            self.world_size = WORLD_SIZE  # Ultralytics counts only this node's devices
        if self.args.dis > 0:  # Ultralytics' feature imitation runs beside LD, on the same teacher
            if self.args.distill_model not in {None, self.args.teacher}:
                raise TeacherError(
                    f"distill_model={self.args.distill_model} differs from teacher={self.args.teacher}; "
                    "ultrald sets distill_model to the teacher when dis > 0, leave it unset."
                )
            if self.args.teacher == IN_MEMORY:
                raise TeacherError("dis > 0 needs teacher as a checkpoint path, not a model object.")
            self.args.distill_model = self.args.teacher
        self.teacher = None

    def _check_teacher_arg(self, args: dict) -> None:
        """Raise TeacherError unless `teacher` is set and, when a path, an existing *.pt file."""
        teacher = args.get("teacher")
        if teacher is None:
            raise TeacherError("teacher= is required, e.g. teacher=runs/detect/train/weights/best.pt")
        if teacher == IN_MEMORY:
            if self.teacher_model is None:
                raise TeacherError(
                    "this run's teacher was a model object in Python, which checkpoints do not store: "
                    "pass teacher=path/to/teacher.pt to resume it."
                )
        else:
            check_teacher_file(teacher)

    def train(self):
        """Train; a multi-GPU launch first checks that the workers can rebuild the teacher from its path."""
        if self.ddp and self.args.teacher == IN_MEMORY:
            raise TeacherError(
                "multi-GPU training needs teacher= as a checkpoint path: each DDP worker loads the teacher itself."
            )
        return super().train()

    def get_dataset(self) -> dict:
        """Resolve the embedded dataset names ('shapes', 'shapes-obb') to their yaml, then check the dataset."""
        self.args.data = resolve_data(self.args.data)
        return super().get_dataset()

    def get_validator(self):
        """Return Ultralytics' validator, or with `metric=` the protocol's, whose fitness then picks best.pt.

        It is built from the args without ultrald's keys, which Ultralytics' validators would reject.
        """
        args = self.args
        self.args = IterableSimpleNamespace(**{k: v for k, v in vars(args).items() if k in DEFAULT_CFG_DICT})
        try:
            validator = super().get_validator()
        finally:
            self.args = args
        if args.metric:
            protocol = importlib.import_module(f"ultrald.eval.{args.metric}").Validator
            validator = protocol(validator.dataloader, validator.save_dir, validator.args, validator.callbacks)
        return validator

    def set_model_attributes(self) -> None:
        """Set the student's attributes, then load the teacher and check it against the student before training."""
        super().set_model_attributes()
        teacher = load_teacher(self.teacher_model or self.args.teacher, self.device)
        check_teacher(teacher, unwrap_model(self.model), self.args)
        self.teacher = teacher

    def _setup_train(self) -> None:
        """Set up Ultralytics' training, then give the student the distillation criterion.

        This runs after the EMA copy is made, so the EMA (and every checkpoint) keeps a teacher-free criterion.
        """
        super()._setup_train()
        model = unwrap_model(self.model)
        if isinstance(model, DistillationModel):  # dis > 0: its teacher forward serves LD too
            self.teacher = model.teacher_model
            student, head = model.student_model, TeacherHead(model.teacher_model, shared=True)
        else:
            student, head = model, TeacherHead(self.teacher)
        student.criterion = self.criterion_class(student, head)
        if RANK in {-1, 0}:
            a = self.args
            angle = f" ald={a.ald} ({a.ald_type})" if self.criterion_class is LDOBBLoss else ""
            LOGGER.info(
                f"{colorstr('ultrald:')} teacher={a.teacher} ld={a.ld} (T={a.ld_temp}) kd={a.kd} (T={a.kd_temp}, "
                f"{a.kd_type}) vlr={a.vlr} (ld={a.vlr_ld}, kd={a.vlr_kd}, alpha={a.vlr_alpha}, scale={a.vlr_scale})"
                f"{angle} dis={a.dis}"
            )


class LDTrainer(DistillationTrainerMixin, DetectionTrainer):
    """Detection trainer with Localization Distillation from a frozen teacher.

    Examples:
        >>> from ultrald import LDTrainer
        >>> LDTrainer(overrides=dict(model="yolov8s.yaml", teacher="yolov8x.pt", data="coco.yaml")).train()
    """


class LDOBBTrainer(DistillationTrainerMixin, OBBTrainer):
    """Oriented-box trainer with Localization Distillation (edges), KD and angle distillation from a frozen teacher.

    Examples:
        >>> from ultrald import LDOBBTrainer
        >>> LDOBBTrainer(overrides=dict(model="yolov8s-obb.yaml", teacher="yolov8x-obb.pt", data="DOTAv1.yaml")).train()
    """

    criterion_class = LDOBBLoss


def trainer_for(task: str) -> type:
    """Return the distillation trainer class for an Ultralytics task name."""
    trainers = {"detect": LDTrainer, "obb": LDOBBTrainer}
    if task not in trainers:
        raise TeacherError(f"ultrald distils tasks {list(trainers)}, not task='{task}'.")
    return trainers[task]
