"""The teacher a run distils from, built once (`build_teacher` -> `Teacher`), and the teacher stage that trains it
on the run's own data first when it does not know the data's classes.

A checkpoint trained on other classes (an official COCO model such as `yolov8x.pt`, a user's own) is fine-tuned on
`data=`; a model yaml (`yolov8x.yaml`) is trained from scratch. The stage is Ultralytics' own trainer, for
`teacher_epochs` epochs, with the student's data, image size, batch, device and every other training setting the
student run changed from Ultralytics' defaults (seed 0, so every seed of `yolo-ld compare` shares one teacher). It
runs in `<project>/teacher-<key>`, `key` hashing what determines it (the teacher's file, the data's content, the
settings): a second run with the same inputs reuses it at once, an interrupted one resumes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from torch import nn
from ultralytics.cfg import DEFAULT_CFG_DICT, get_save_dir
from ultralytics.data.utils import img2label_paths
from ultralytics.nn.tasks import guess_model_task
from ultralytics.utils import LOCAL_RANK, LOGGER, colorstr

from ..data.shapes import resolve_data
from ..distill.teacher import IN_MEMORY, file_hash, head_task, load_teacher, teacher_hash
from ..errors import Interrupted, ResumeError, TeacherError
from ..models import model_yaml, resolve_model, resolve_weights
from ..seam import read_checkpoint_dict, train_args
from .checks import check_data, split_images

YAMLS = {".yaml", ".yml"}
STAMP = "ultrald-teacher.json"  # written when a stage finishes: what it was trained from
VERSION = 1  # bump when what a stage inherits changes, so older stages are not reused
# The student run's own keys, which the teacher stage does not inherit (Ultralytics' FI keys belong to the student).
STUDENT_ONLY = {
    "model", "name", "project", "exist_ok", "resume", "seed", "epochs", "pretrained", "freeze", "time", "save_period",
    "distill_model", "dis", "mode", "task", "cfg", "save_dir", "data",
}  # fmt: skip


def data_digest(data: Mapping) -> str:
    """Return a hash of a dataset's content: class names, and per split each image's name and size and its labels."""
    h = hashlib.sha256(json.dumps(dict(data["names"]), sort_keys=True).encode())
    for split in ("train", "val"):
        images = split_images(data, split)
        for image, label in zip(images, img2label_paths([str(f) for f in images])):
            h.update(f"{split}/{image.name}:{image.stat().st_size if image.exists() else -1}\0".encode())
            h.update(Path(label).read_bytes() if Path(label).is_file() else b"-")
    return h.hexdigest()


def source_hash(source: Path) -> str:
    """Return the sha256 of a teacher's file, or of the model dict of a yaml name Ultralytics ships (yolov8x.yaml)."""
    if source.is_file():
        return file_hash(source)
    spec = model_yaml(source, "teacher", TeacherError)
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def inherited_settings(args: Mapping[str, Any]) -> dict[str, Any]:
    """Return the Ultralytics training settings of the student run that the teacher stage takes over: each key the
    run set to other than Ultralytics' default, less the student's own (model, name, epochs, seed, ...)."""
    changed = {k: v for k, v in args.items() if k in DEFAULT_CFG_DICT and v != DEFAULT_CFG_DICT[k] and v is not None}
    return {k: v for k, v in changed.items() if k not in STUDENT_ONLY}


def stage_reason(teacher: nn.Module | None, names: Mapping[int, str], task: str) -> str | None:
    """Return why a teacher (a loaded checkpoint's model, None for a yaml) needs a stage on `task` data with class
    `names` ("trained from scratch", "fine-tuned ..."), or None when it already predicts those classes in that order.
    A teacher of another task gets no stage: the pair check then names the mismatch."""
    if teacher is None:
        return "trained from scratch"
    t_names = list(dict(getattr(teacher, "names", {})).values())
    if t_names == [names[i] for i in sorted(names)] or head_task(teacher) != task:
        return None
    shown = ", ".join(t_names[:5]) + (f", ... ({len(t_names)} classes)" if len(t_names) > 5 else "")
    return f"fine-tuned from its classes [{shown}] to the data's {len(names)}"


def teacher_stage(
    teacher: str | Path, model: nn.Module | None, args: Mapping[str, Any], task: str, data: dict
) -> tuple[Path, dict[str, Any]] | None:
    """Return (the stage's best.pt, its record) when `teacher` must first learn the data's classes, training it on
    `args["data"]` once (later calls with the same inputs reuse it); None when it can distil as it is.

    Args:
        teacher (str | Path): A checkpoint (a local file) or a model yaml.
        model (nn.Module | None): The checkpoint's model, None for a yaml.
        args (Mapping): The student run's full settings (Ultralytics' and ultrald's keys; `data` a yaml).
        task (str): The student's task, 'detect' or 'obb'.
        data (dict): `args["data"]` checked (`check_data`).
    """
    data_yaml = resolve_data(args["data"])  # the embedded sets by name: generated and checked by then
    reason = stage_reason(model, data["names"], task)
    if reason is None:
        return None
    if LOCAL_RANK != -1:  # a torchrun worker: every process would train its own teacher
        raise TeacherError(
            f"teacher={teacher} must first be {reason} on data=, which multi-node (torchrun) runs cannot do: run the "
            "same command on one machine first (its teacher stage is reused by key) or pass the teacher's best.pt."
        )
    source = Path(resolve_model(str(teacher)))
    settings = inherited_settings(args)
    epochs = args.get("teacher_epochs") or args["epochs"]
    inputs = json.dumps(
        [VERSION, source_hash(source), data_digest(data), epochs, settings], sort_keys=True, default=str
    )
    key = hashlib.sha256(inputs.encode()).hexdigest()[:12]
    project = SimpleNamespace(project=args.get("project"), name=f"teacher-{key}", task=task, mode="train")
    run = get_save_dir(SimpleNamespace(**vars(project), exist_ok=True))
    record = {"key": key, "source": str(teacher), "reason": reason, "epochs": epochs, "run": str(run)}
    best, stamp = run / "weights" / "best.pt", run / STAMP
    if best.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        LOGGER.info(f"{colorstr('ultrald:')} stage 1/2 teacher: reusing {best} ({teacher} {reason}, key {key})")
        return best, {**record, "reused": True}
    LOGGER.info(
        f"{colorstr('ultrald:')} stage 1/2 teacher: {teacher} {reason} on {data_yaml} for {epochs} epoch(s) in {run}"
    )
    train_stage(source, run, {**settings, "data": str(data_yaml), "epochs": epochs})
    if not best.is_file():
        raise TeacherError(f"the teacher stage in {run} ended without a best.pt; see its log above.")
    stamp.write_text(json.dumps({**record, "settings": settings}, indent=2, default=str))
    return best, {**record, "reused": False}


def train_stage(source: Path, run: Path, settings: dict[str, Any]) -> None:
    """Train the teacher with Ultralytics' own trainer in `run`, resuming its last.pt when an earlier stage stopped."""
    from ultralytics import YOLO

    from .trainer import resume_checkpoint

    last = run / "weights" / "last.pt"
    try:
        resumable = last.is_file() and bool(resume_checkpoint(last))
    except ResumeError:  # a finished (stripped) or unreadable last.pt: train the stage again
        resumable = False
    try:
        if resumable:
            LOGGER.info(f"{colorstr('ultrald:')} resuming the interrupted teacher stage {last}")
            YOLO(str(last)).train(resume=True)
        else:
            YOLO(str(source)).train(**settings, project=str(run.parent), name=run.name, exist_ok=True, seed=0)
    except KeyboardInterrupt as e:  # the stage resumes by itself: the student's 'resume' cannot reach it
        done = f"{last} holds its last finished epoch" if last.is_file() else "no epoch of it finished"
        raise Interrupted(f"teacher stage interrupted: {done}; run the same command again to resume it", last) from e


@dataclass(frozen=True)
class Teacher:
    """The teacher a run distils from, built once by `build_teacher` and passed down.

    Attributes:
        model (nn.Module): The frozen, fused teacher.
        arg (str): What the run's args and checkpoints record as `teacher`: the checkpoint's absolute path, or
            IN_MEMORY for a model object.
        hash (str): Its fingerprint (`teacher_hash`), checked on resume.
        source (str): What the user passed: a path, an official name, a model yaml, or IN_MEMORY.
        stage (dict | None): The teacher stage's record when ultrald first trained it on the data, else None.
        epochs (int | None): The epochs of its whole training when its checkpoint records them (`trained_epochs`),
            else None.
    """

    model: nn.Module
    arg: str
    hash: str
    source: str
    stage: dict | None = None
    epochs: int | None = None

    @property
    def record(self) -> dict[str, Any]:
        """Where the teacher came from, as the run's teacher.json keeps it."""
        return {"source": self.source, "stage": self.stage, "teacher": self.arg, "teacher_hash": self.hash}


def build_teacher(teacher: Any, expected_hash: str | None, args: Mapping[str, Any] | None, task: str) -> Teacher:
    """Load the teacher (a path, an official name, a model yaml, or a YOLO object/model), first training it on the
    run's data when it does not predict its classes, and check it is the teacher `expected_hash` names.

    Args:
        teacher: What `teacher=` holds.
        expected_hash (str | None): The hash a resumed run recorded; None for a new run.
        args (Mapping | None): The run's settings, for the teacher stage; None on resume (the checkpoint's teacher).
        task (str): The student's task.
    """
    from ultralytics.engine.model import Model

    if teacher is None:
        raise TeacherError("teacher= is required, e.g. teacher=runs/detect/train/weights/best.pt")
    if teacher == IN_MEMORY:
        raise TeacherError(
            "this run's teacher was a model object in Python, which checkpoints do not store: resume with "
            "teacher=path/to/teacher.pt, or in Python pass the same YOLO object again as teacher=."
        )
    stage = None
    if isinstance(teacher, (nn.Module, Model)):
        source, arg, model = teacher, IN_MEMORY, load_teacher(teacher)
    else:
        is_yaml = Path(str(teacher)).suffix in YAMLS
        if is_yaml and (built := guess_model_task(model_yaml(teacher, "teacher", TeacherError))) != task:
            raise TeacherError(f"teacher={teacher} builds a model of task '{built}', the student's task is '{task}'.")
        source = Path(teacher) if is_yaml else resolve_weights(teacher, "teacher", TeacherError)
        model = None if is_yaml else load_teacher(source)
        trained = None
        if args and args.get("data") is not None:  # a data error is named before a stage trains on the data
            data = check_data(args["data"], ("train", args.get("split") or "val"), task)
            trained = teacher_stage(source, model, args, task, data)
        if trained:
            (source, stage), model = trained, load_teacher(trained[0])
            LOGGER.info(f"{colorstr('ultrald:')} stage 2/2 student: distilling from {source}")
        elif model is None:
            raise TeacherError(f"teacher={teacher} is a model yaml: it needs data= to be trained on first.")
        arg = str(source)
    fingerprint = teacher_hash(source)
    if expected_hash and fingerprint != expected_hash:
        raise TeacherError(
            f"teacher={arg} is not the teacher this run was trained with (hash {fingerprint} != {expected_hash}): "
            "pass the original teacher, or start a new run to change it."
        )
    ckpt = getattr(teacher, "ckpt", None) if arg == IN_MEMORY else read_checkpoint_dict(source)
    epochs = trained_epochs(train_args(ckpt) or {})
    if stage and stage["reason"] == "trained from scratch":  # also when resumed: its checkpoint then names last.pt
        epochs = stage["epochs"]
    return Teacher(model, arg, fingerprint, str(teacher) if arg != IN_MEMORY else IN_MEMORY, stage, epochs)


def trained_epochs(args: Mapping[str, Any]) -> int | None:
    """Return the epochs of a model's whole training from its checkpoint's `train_args`: its `epochs` when it was
    trained from a model yaml, without pretrained weights and not resumed; None otherwise (a model fine-tuned from
    weights, an official COCO one included, has earlier training that is not on record)."""
    epochs, model, pretrained = args.get("epochs"), str(args.get("model") or ""), args.get("pretrained")
    from_weights = (model.lower().endswith(".pt") and pretrained is not False) or isinstance(pretrained, (str, Path))
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1 or not model or from_weights:
        return None
    return None if args.get("resume") else epochs
