"""LDTrainer: Ultralytics' DetectionTrainer with a frozen teacher and the LD/VLR/KD criterion.

The trainer owns the teacher: it reads and checks the file before the dataset scan, checks the pair once the student
is built, hands the same module to Ultralytics' feature term when `dis > 0`, and releases it when training ends. The
student stays a plain Ultralytics model; the teacher lives outside its module tree (in the criterion), so EMA,
checkpoints, export and inference never see it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from copy import deepcopy
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from ultralytics.cfg import DEFAULT_CFG, DEFAULT_CFG_DICT, get_cfg, get_save_dir
from ultralytics.models.yolo.detect import DetectionTrainer, DetectionValidator
from ultralytics.models.yolo.obb import OBBTrainer, OBBValidator
from ultralytics.utils import LOCAL_RANK, LOGGER, RANK, WORLD_SIZE, IterableSimpleNamespace, colorstr
from ultralytics.utils.files import get_latest_run
from ultralytics.utils.torch_utils import unwrap_model

from ..cfg import check_ld_args, distill_config, ld_cfg
from ..data.shapes import resolve_data
from ..distill.branch import dfl_branch
from ..distill.criterion import LDDetectionLoss, LDOBBLoss, build_criterion, schedule_criterion
from ..distill.schedules import auto_form, feature_weight
from ..distill.teacher import (
    IN_MEMORY,
    TeacherHead,
    check_classes,
    check_teacher,
    first_nonfinite,
)
from ..errors import Interrupted, NonFiniteError, ResumeError, TeacherError, UltraldError
from ..eval import Benchmark
from ..models import resolve_model
from ..seam import (
    SetupHooks,
    add_param_groups,
    feature_model,
    feature_student,
    read_checkpoint_dict,
    release_feature_teacher,
    resumable,
    set_feature_weight,
    train_args,
)
from ..utils import ensure_offline_fonts
from .checks import check_splits, data_error, hold_run, preserved_random_state, refuse_held_run, release_run
from .teacher_stage import build_teacher

TEACHER_RECORD = "teacher.json"  # in each run directory: the teacher's origin and its mAP on the val split
TEACHER_MAP = ("mAP50-95", "mAP50")
# Set by a launcher for the DDP workers it starts: the launcher holds the run directory's lock for them.
DDP_OWNER = "ULTRALD_RUN_OWNER"
UNUSED_RUN = {"args.yaml", TEACHER_RECORD}  # all a run directory holds when the run failed before training


def resume_checkpoint(resume: Any, model: Any = None) -> tuple[Path, dict]:
    """Return (checkpoint, its train_args) for `resume=`: a path, else `model=` when a *.pt, else the newest last.pt.

    Raises ResumeError when there is nothing to resume: no such file, or a finished (stripped) checkpoint, which
    keeps no optimizer state; Ultralytics would otherwise start a new run.
    """
    if isinstance(resume, (str, Path)) and str(resume) not in {"True", "true"}:
        path = Path(resume)
    elif model is not None and str(model).endswith(".pt"):
        path = Path(model)
    else:
        latest = get_latest_run()
        if not latest:
            raise ResumeError("nothing to resume: no last.pt under the current directory; pass resume=path/to/last.pt")
        path = Path(latest)
    if not path.is_file():
        raise ResumeError(f"nothing to resume: '{path}' does not exist.")
    try:
        ckpt = read_checkpoint_dict(path)
    except Exception as e:
        raise ResumeError(f"cannot resume from '{path}': it is not a readable checkpoint ({type(e).__name__}).") from e
    if train_args(ckpt) is None:
        raise ResumeError(f"cannot resume from '{path}': it is not an Ultralytics training checkpoint.")
    if not resumable(ckpt):
        raise ResumeError(
            f"nothing to resume: '{path}' is a finished (stripped) checkpoint without optimizer state. To train it "
            f"further, start a new run from it: 'yolo-ld train model={path} teacher=... data=...'."
        )
    return path.resolve(), train_args(ckpt)


def schedule_feature_term(trainer) -> None:
    """Set Ultralytics' feature-imitation weight for the epoch starting (`dis`, `dis_until`)."""
    model = feature_model(unwrap_model(trainer.model))
    if model is not None:
        c = trainer.distill
        set_feature_weight(model, feature_weight(c.dis, c.dis_until, trainer.epoch, trainer.epochs))


def teacher_provenance(record_file: Path) -> dict[str, Any]:
    """Return what a checkpoint keeps of the run's teacher record: where the teacher came from and its val mAP."""
    if not record_file.is_file():
        return {}
    r = json.loads(record_file.read_text())
    stage = (r.get("stage") or {}).get("run")
    return {"teacher_source": r.get("source"), "teacher_stage": stage, **{f"teacher_{k}": r[k] for k in TEACHER_MAP}}


def count_step(trainer) -> None:
    """Count a training batch (the criterion's guard counts those it skipped as non-finite)."""
    trainer.distill_steps += 1


class DistillationTrainerMixin(SetupHooks):
    """Adds a frozen teacher and a distillation criterion to an Ultralytics trainer.

    Subclasses set `criterion_class`. `teacher=` is a checkpoint path or official name (kept in the args as an
    absolute path with its hash, so resume and DDP workers rebuild the same teacher) or, in Python, a YOLO object or
    model (kept on the trainer only; pass it again to resume).
    """

    criterion_class: type = LDDetectionLoss
    task_name: str = "detect"  # the student's task, before Ultralytics' trainer sets args.task
    validator_class: type = DetectionValidator  # Ultralytics' own, for the teacher's check on the val split

    def __init__(self, cfg=DEFAULT_CFG, overrides: dict[str, Any] | None = None, _callbacks: dict | None = None):
        """Check ultrald's keys, read and check the teacher, then build the Ultralytics trainer."""
        overrides = dict(overrides or {})
        if "model" in overrides:
            overrides["model"] = resolve_model(overrides["model"])
        base = ld_cfg(cfg)
        teacher, expected_hash = overrides.pop("teacher", base["teacher"]), overrides.pop("teacher_hash", None)
        saved = None
        if overrides.get("resume"):
            path, saved = resume_checkpoint(overrides["resume"], overrides.get("model"))
            overrides["resume"] = str(path)
            expected_hash = expected_hash or saved.get("teacher_hash")
            if teacher is None:
                teacher = saved.get("teacher")
                if teacher not in {None, IN_MEMORY} and not Path(teacher).is_file():
                    raise ResumeError(
                        f"this run's teacher '{teacher}' no longer exists: resume with teacher=NEW/PATH.pt "
                        "(the same file, moved)."
                    )
        check_ld_args({**base, **(saved or {}), **overrides})
        get_cfg(DEFAULT_CFG, {k: v for k, v in overrides.items() if k in DEFAULT_CFG_DICT})  # before a teacher stage
        # Before the dataset scan: a bad teacher fails in seconds and leaves no run directory behind.
        ensure_offline_fonts()
        args = {**base, **overrides}
        self._refuse_held_run(args, saved)  # before anything is written, the teacher stage included
        self.step_guard, self.distill_steps, self.branch = (
            None,
            0,
            None,
        )  # the criterion's guard counts the skipped batches
        self.teacher_info = build_teacher(teacher, expected_hash, None if saved else args, self.task_name)
        self.teacher, self.teacher_head = self.teacher_info.model, None
        recorded = {"teacher": self.teacher_info.arg, "teacher_hash": self.teacher_info.hash}
        super().__init__(base, {**overrides, **recorded}, _callbacks)
        if saved:  # resume replaces the args with the checkpoint's, which may name the teacher before it moved
            self.args.teacher, self.args.teacher_hash = recorded.values()
        try:
            self.distill = distill_config(self.args)  # ultrald's settings, checked and frozen, passed down from here
            if self.args.metric and Benchmark(self.args.metric).task != self.args.task:
                raise ValueError(
                    f"metric={self.args.metric} evaluates {Benchmark(self.args.metric).task} models, "
                    f"this is a {self.args.task} run."
                )
            if self.args.dis > 0:  # Ultralytics' feature imitation runs beside LD, on the same teacher module
                if self.args.distill_model not in {None, self.args.teacher}:
                    raise TeacherError(
                        f"distill_model={self.args.distill_model} differs from teacher={self.args.teacher}; "
                        "ultrald sets distill_model to the teacher when dis > 0, leave it unset."
                    )
                self.args.distill_model = self.args.teacher
        except Exception:
            self._remove_unused_run()
            raise
        self.add_callback("on_train_epoch_start", schedule_feature_term)
        self.add_callback("on_train_epoch_start", schedule_criterion)
        self.add_callback("on_train_batch_end", count_step)
        if LOCAL_RANK != -1 and 0 < self.world_size < WORLD_SIZE:  # a torchrun worker of a multi-node job
            self.world_size = WORLD_SIZE  # Ultralytics counts only this node's devices

    def _refuse_held_run(self, args: dict[str, Any], saved: dict | None) -> None:
        """Raise RunInUseError when another live run holds the directory this run will write to: the checkpoint's on
        resume, else Ultralytics' (an existing one with exist_ok=True)."""
        if RANK not in {-1, 0} or DDP_OWNER in os.environ:  # a DDP worker: its launcher holds the directory
            return
        if saved is not None:
            save_dir = args.get("save_dir") or saved.get("save_dir")
        else:
            save_dir = get_save_dir(IterableSimpleNamespace(**{**args, "task": self.task_name}))
        if save_dir:
            refuse_held_run(Path(save_dir))

    def _remove_unused_run(self) -> None:
        """Remove the run directory of a run that failed before training (only its args and teacher record written),
        so run names do not skip ahead."""
        save_dir = getattr(self, "save_dir", None)
        if RANK in {-1, 0} and not self.args.resume and save_dir is not None and Path(save_dir).is_dir():
            files = {p.name for p in Path(save_dir).rglob("*") if p.is_file()}
            if files <= UNUSED_RUN:
                shutil.rmtree(save_dir, ignore_errors=True)

    def train(self):
        """Train, then release the teacher.

        The run holds its directory while it trains (`ultrald.lock`, with its pid): a second live run into it is
        refused with RunInUseError. A run that fails before its first epoch leaves no directory behind. Ctrl-C raises
        Interrupted, a KeyboardInterrupt whose message says where last.pt is and how to resume it.
        """
        if self.ddp and self.args.teacher == IN_MEMORY:
            raise TeacherError(
                "multi-GPU training needs teacher= as a checkpoint path: each DDP worker loads the teacher itself."
            )
        lock = hold_run(self.save_dir) if RANK in {-1, 0} and DDP_OWNER not in os.environ else None
        if self.ddp:  # the workers this process starts train into the directory it holds
            os.environ[DDP_OWNER] = str(os.getpid())
        try:
            if RANK == -1:  # once per run: not again in each DDP worker
                check_classes(self.teacher, self.args.task, self.data["names"])  # before scoring it on those classes
                self.check_teacher_on_val()
            result = super().train()
            if RANK in {-1, 0}:
                self.check_distilled()  # also when no checkpoint was saved (save=False)
            return result
        except BaseException as e:
            release_run(lock)  # first: a directory holding only its lock and args is still unused
            self._remove_unused_run()
            if isinstance(e, KeyboardInterrupt) and not isinstance(e, Interrupted):
                raise self.interrupted() from e
            raise
        finally:
            if self.ddp:
                os.environ.pop(DDP_OWNER, None)
            release_run(lock)
            self._release_teacher()

    def interrupted(self) -> Interrupted:
        """Return the Interrupted error for Ctrl-C now: where last.pt is and the command that resumes it."""
        if self.last.is_file():
            return Interrupted(
                f"training interrupted: {self.last} holds the last finished epoch; resume with "
                f"'yolo-ld train resume model={self.last}'",
                self.last,
            )
        where = f"in {self.save_dir}" if Path(self.save_dir).is_dir() else "(its empty run directory was removed)"
        return Interrupted(f"training interrupted before the first epoch ended: there is no last.pt to resume {where}")

    def check_distilled(self) -> None:
        """Raise NonFiniteError when the criterion skipped every batch of this run as non-finite, however few: the
        student then learned nothing (its losses were zeroed), and no checkpoint of it is kept."""
        guard, steps = self.step_guard, self.distill_steps
        if guard is not None and steps and guard.skipped >= steps:
            raise NonFiniteError(
                f"all {steps} batches of this run were skipped: the teacher's outputs or the distillation terms were "
                "NaN/Inf on every one, so the student learned nothing and no checkpoint was written. Check the "
                "teacher's predictions on these images, lower lr0, or try amp=False."
            )

    def check_teacher_on_val(self) -> None:
        """Validate the teacher once on the val split before the first epoch: log its mAP, keep it in the run's
        teacher.json (and so in the checkpoints' provenance), and stop when it has learned nothing to distil (mAP50
        below `teacher_min_map`). A resumed run keeps the record it has."""
        a, record_file = self.args, Path(self.save_dir) / TEACHER_RECORD
        if record_file.is_file() and json.loads(record_file.read_text()).get("teacher_hash") == a.teacher_hash:
            return
        device = a.device[0] if isinstance(a.device, (list, tuple)) else str(a.device).split(",")[0]
        batch = a.batch if isinstance(a.batch, int) and a.batch > 0 else 16
        args = dict(data=a.data, imgsz=a.imgsz, batch=batch, device=device, workers=a.workers, task=a.task)
        # the validator's plots and files are not the run's, nor may it move the seeded random streams training uses
        with tempfile.TemporaryDirectory() as tmp, preserved_random_state():
            validator = self.validator_class(save_dir=Path(tmp), args={**args, "plots": False, "verbose": False})
            stats = validator(model=deepcopy(self.teacher))  # Ultralytics' validation fuses what it is given
        map50_95, map50 = (float(stats[f"metrics/{m}(B)"]) for m in ("mAP50-95", "mAP50"))
        LOGGER.info(f"{colorstr('ultrald:')} teacher on the val split: mAP50-95 {map50_95:.4f}, mAP50 {map50:.4f}")
        if map50 < a.teacher_min_map:
            raise TeacherError(
                f"teacher {a.teacher} scores mAP50 {map50:.4f} on the val split of {a.data}, below "
                f"teacher_min_map={a.teacher_min_map}: it has learned nothing to distil. Train it longer "
                "(teacher_epochs=), check the data, or pass teacher_min_map=0 to distil anyway."
            )
        record = self.teacher_info.record
        record_file.write_text(json.dumps({**record, "mAP50-95": map50_95, "mAP50": map50}, indent=2, default=str))

    def _release_teacher(self) -> None:
        """Remove the teacher's hooks and drop every reference to it, so its memory is freed when training ends."""
        if self.teacher_head is not None:
            self.teacher_head.close()
        model = unwrap_model(self.model) if isinstance(self.model, nn.Module) else None
        if feature_model(model) is not None:
            model = release_feature_teacher(model)
        if model is not None:
            model.criterion = None  # Ultralytics builds a plain one again if the model is used for a loss later
        self.teacher = self.teacher_head = self.branch = None

    def get_dataset(self) -> dict:
        """Resolve an embedded dataset's name (`data=shapes`, `digits`, ...) to its yaml, then check the dataset and
        that its splits have images.

        A data error is one line (DataError; ultrald's own errors as they are) and removes the run directory just made
        for it. The yaml's path is kept absolute, so the run's checkpoints resume from any directory.
        """
        try:
            self.args.data = resolve_data(self.args.data)
            data = super().get_dataset()
            check_splits(data, self.args.data, ("train", self.args.split or "val"), self.task_name)
        except BaseException as e:
            self._remove_unused_run()
            if isinstance(e, Exception) and not isinstance(e, UltraldError):  # Ultralytics wraps the cause
                raise data_error(self.args.data, e.__cause__ or e, self.args.resume) from e
            raise
        if isinstance(self.args.data, (str, Path)) and Path(self.args.data).is_file():
            self.args.data = str(Path(self.args.data).resolve())
        if RANK in {-1, 0} and data.get("train") == data.get("val"):
            LOGGER.warning(
                "ultrald: val is the train split, so the teacher's check and every mAP of this run are measured on "
                "training images; hold some out ('yolo-ld convert ... --val 0.2')."
            )
        return data

    def get_validator(self):
        """Return the task's Ultralytics validator, or with `metric=` the protocol's (whose fitness then picks best.pt),
        given the run's args less ultrald's keys, which Ultralytics' validators reject."""
        keep = {k: v for k, v in vars(self.args).items() if k in DEFAULT_CFG_DICT}
        args = IterableSimpleNamespace(**{**keep, "distill_model": None})
        validator = Benchmark(self.args.metric).validator if self.args.metric else self.validator_class
        return validator(self.test_loader, save_dir=self.save_dir, args=args, _callbacks=self.callbacks)

    def set_model_attributes(self) -> None:
        """Set the student's attributes, then check the teacher against the student (once) and move it beside it;
        build a reg_max=1 student's DFL branch (`dfl_branch`) before the optimizer that trains it."""
        super().set_model_attributes()
        student = unwrap_model(self.model)
        check_teacher(self.teacher, student, self.args)
        self.teacher.to(self.device)
        self.branch = dfl_branch(student, self.teacher, self.distill)
        if self.branch is not None:
            self.branch.to(self.device)

    def build_optimizer(self, model, *args, **kwargs):
        """Ultralytics' optimizer, also training the DFL branch when there is one (in groups like the model's)."""
        optimizer = super().build_optimizer(model, *args, **kwargs)
        if self.branch is not None:
            add_param_groups(optimizer, self.branch)
        return optimizer

    def feature_teacher(self) -> nn.Module | None:
        """With `dis > 0` Ultralytics' feature term runs beside LD on the same teacher module: one teacher, one
        forward per batch."""
        return self.teacher if self.args.dis > 0 else None

    def after_setup(self) -> None:
        """Give the student the distillation criterion, after Ultralytics' setup made the EMA copy (so the EMA and
        every checkpoint keep a teacher-free criterion)."""
        model = unwrap_model(self.model)
        if feature_model(model) is not None:  # its teacher forward serves LD too, read from a hook
            student, shared = feature_student(model), True
        else:
            student, shared = model, False
        self.teacher_head = TeacherHead(self.teacher, shared, self.teacher_info.epochs)
        student.criterion = build_criterion(student, self.teacher_head, self.criterion_class, self.distill, self.branch)
        self.step_guard = student.criterion.guard
        if RANK in {-1, 0}:
            a = self.args
            angle = f" ald={a.ald} ({a.ald_type})" if self.criterion_class is LDOBBLoss else ""
            te = self.teacher_info.epochs
            auto = f" ({auto_form(a.epochs, te)}: student {a.epochs} epochs, teacher {te or 'not on record'})"
            LOGGER.info(
                f"{colorstr('ultrald:')} teacher={a.teacher} ld={a.ld} (T={a.ld_temp}) kd={a.kd} (T={a.kd_temp}, "
                f"{a.kd_type}, {a.kd_region}) vlr={a.vlr} (ld={a.vlr_ld}, kd={a.vlr_kd}, alpha={a.vlr_alpha}, "
                f"scale={a.vlr_scale}){angle} dis={a.dis} assign={a.assign} distill_schedule={a.distill_schedule}"
                + (auto if a.distill_schedule == "auto" else "")
                + (f" dfl_branch={self.branch.reg_max} bins (ld_box={a.ld_box})" if self.branch is not None else "")
            )

    def save_model(self):
        """Save last.pt/best.pt, unless the student's weights went NaN/Inf or every batch so far was skipped as
        non-finite: then stop and leave them as they were."""
        self.check_distilled()
        bad = first_nonfinite(unwrap_model(self.model))
        if bad is not None:
            raise NonFiniteError(
                f"student weights '{bad}' are NaN/Inf after epoch {self.epoch + 1}: training stopped, "
                f"{self.last.name} and {self.best.name} keep the last good epoch."
            )
        return super().save_model()

    def final_eval(self):
        """Strip and validate the checkpoints as Ultralytics does, then put the distillation settings back in them.

        Ultralytics' strip keeps only its own keys in train_args; ultrald's (teacher path and hash, weights, regions)
        are what makes a result traceable to its teacher.
        """
        super().final_eval()
        if RANK in {-1, 0}:
            teacher = teacher_provenance(Path(self.save_dir) / TEACHER_RECORD)
            for f in (self.last, self.best):
                if f.is_file():
                    ckpt = read_checkpoint_dict(f)
                    ckpt["train_args"] = {**(train_args(ckpt) or {}), **asdict(self.distill), **teacher}
                    torch.save(ckpt, f)


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
    task_name = "obb"
    validator_class = OBBValidator


def trainer_for(task: str) -> type:
    """Return the distillation trainer class for an Ultralytics task name."""
    trainers = {"detect": LDTrainer, "obb": LDOBBTrainer}
    if task not in trainers:
        raise TeacherError(f"ultrald distils tasks {list(trainers)}, not task='{task}'.")
    return trainers[task]
