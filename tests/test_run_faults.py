"""Runs that end badly as a new user meets them: data errors, a teacher whose outputs are never finite, Ctrl-C, and two
live runs in one directory.

Each fault ends in one line (exit 2, or 130 for Ctrl-C), leaves no run directory it made and keeps no checkpoint it
should not.
"""

import _thread
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import ANY_TEACHER, FAST, IMGSZ
from helpers import read_results, sha256

from ultrald import LDTrainer
from ultrald.cli import entrypoint
from ultrald.distill.criterion import StepGuard
from ultrald.engine.checks import RUN_LOCK, hold_run, release_run, run_holder
from ultrald.engine.trainer import DDP_OWNER, DistillationTrainerMixin
from ultrald.errors import DataError, Interrupted, NonFiniteError, RunInUseError


def args(project: Path, name: str, student_yaml, data, teacher, **kw) -> dict:
    base = dict(model=str(student_yaml), data=str(data), teacher=str(teacher), epochs=1, imgsz=IMGSZ, batch=8)
    base.update(workers=0, plots=False, project=str(project), name=name, exist_ok=True, seed=0, **FAST, **ANY_TEACHER)
    return {**base, **kw}


def argv(overrides: dict) -> list[str]:
    return ["train", *(f"{k}={v}" for k, v in overrides.items())]


def one_line(capsys) -> str:
    """stderr of the last command: exactly one line, no traceback."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def broken_data(shapes_yaml: Path, tmp: Path, kind: str) -> Path:
    """A data yaml of the synthetic dataset broken in one way a user meets."""
    cfg = yaml.safe_load(Path(shapes_yaml).read_text())
    cfg["path"] = str(Path(shapes_yaml).parent)
    if kind == "yaml":
        return tmp / "missing.yaml"
    if kind == "val":
        cfg["val"] = "images/no-such-val"
    elif kind == "train":
        cfg["train"] = "images/no-such-train"
    elif kind == "images":
        (tmp / "empty").mkdir()
        cfg["train"] = str(tmp / "empty")
    elif kind == "boxes":  # the val images with empty label files: nothing to score a teacher or student on
        for image in sorted((Path(shapes_yaml).parent / "images" / "val").iterdir())[:4]:
            (tmp / "bg" / "images" / "val").mkdir(parents=True, exist_ok=True)
            (tmp / "bg" / "images" / "val" / image.name).write_bytes(image.read_bytes())
            (tmp / "bg" / "labels" / "val").mkdir(parents=True, exist_ok=True)
            (tmp / "bg" / "labels" / "val" / f"{image.stem}.txt").write_text("")
        cfg["val"] = str(tmp / "bg" / "images" / "val")
    path = tmp / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


DATA_MESSAGES = {
    "yaml": r"data=.*missing\.yaml: '.*missing\.yaml' does not exist",
    "val": r"data=.*val\.yaml: .*missing path '.*no-such-val'",
    "train": r"data=.*train\.yaml: the train path '.*no-such-train' does not exist\.",
    "images": r"data=.*images\.yaml: the train folder '.*empty' has no images\.",
    "boxes": r"data=.*boxes\.yaml: no image of the val split has a box",
}


@pytest.mark.parametrize("kind", list(DATA_MESSAGES))
def test_data_error_is_one_line_and_leaves_no_run(
    tmp_path, untrained_teacher_pt, student_yaml, shapes_yaml, kind, capsys
):
    """Found before the teacher stage from a teacher file (no directory made), or once Ultralytics has made the run
    directory when the teacher is a Python object (the directory is removed): one line naming the problem either way."""
    from ultralytics import YOLO

    data, project = broken_data(shapes_yaml, tmp_path, kind), tmp_path / "runs"
    overrides = args(project, "train", student_yaml, data, untrained_teacher_pt, exist_ok=False)
    assert entrypoint(argv(overrides)) == 2
    err = one_line(capsys)
    assert err.startswith("yolo-ld: error: data=")
    assert re.search(DATA_MESSAGES[kind], err), err
    assert not project.exists()
    with pytest.raises(DataError, match=DATA_MESSAGES[kind]) as e:
        LDTrainer(overrides={**overrides, "teacher": YOLO(str(untrained_teacher_pt))})
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)
    assert not project.exists() or not any(project.iterdir())  # Ultralytics' run directory was removed


def test_val_that_is_the_train_split_is_named(tmp_path, untrained_teacher_pt, student_yaml, shapes_yaml, logged):
    """A one-json COCO conversion without --val names its one split for train and val: the run says its mAPs are
    measured on training images."""
    cfg = {
        **yaml.safe_load(Path(shapes_yaml).read_text()),
        "path": str(Path(shapes_yaml).parent),
        "val": "images/train",
    }
    (data := tmp_path / "same.yaml").write_text(yaml.safe_dump(cfg))
    LDTrainer(overrides=args(tmp_path / "runs", "same", student_yaml, data, untrained_teacher_pt))
    assert any("val is the train split, so the teacher's check and every mAP" in m for m in logged)


def test_label_format_against_the_task(
    tmp_path, untrained_teacher_pt, student_yaml, shapes_yaml, shapes_obb_yaml, logged
):
    """Axis-aligned labels for an OBB student are refused before a teacher stage trains; rotated labels for a detect
    student train (their enclosing boxes) with a warning."""
    from ultrald import LDOBBTrainer

    project = tmp_path / "runs"
    obb = {
        "model": "yolov8n-obb.yaml",
        "teacher": "yolov8n-obb.yaml",
        "data": str(shapes_yaml),
        "project": str(project),
    }
    with pytest.raises(DataError, match="holds axis-aligned boxes .* and the student is an OBB model"):
        LDOBBTrainer(overrides=obb)
    assert not project.exists()
    LDTrainer(overrides=args(project, "det", student_yaml, shapes_obb_yaml, untrained_teacher_pt))
    assert any("holds rotated boxes (4 corners); a detect model learns their axis-aligned" in m for m in logged)


@pytest.fixture
def interrupted_run(tmp_path, untrained_teacher_pt, student_yaml, shapes_yaml, monkeypatch):
    """A 2-epoch run started in tmp/work with a relative data= and stopped after epoch 1 (as Ctrl-C would)."""
    work = tmp_path / "work"
    work.mkdir()
    cfg = {**yaml.safe_load(Path(shapes_yaml).read_text()), "path": str(Path(shapes_yaml).parent)}
    (work / "data.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(work)
    overrides = args(tmp_path / "runs", "rel", student_yaml, "data.yaml", untrained_teacher_pt, epochs=2)
    trainer = LDTrainer(overrides=overrides)
    trainer.add_callback("on_fit_epoch_end", lambda t: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(Interrupted, match=r"holds the last finished epoch; resume with 'yolo-ld train resume") as e:
        trainer.train()
    assert isinstance(e.value, KeyboardInterrupt) and e.value.last == trainer.last
    assert not (Path(trainer.save_dir) / RUN_LOCK).exists()  # released
    monkeypatch.chdir(tmp_path)  # the relative path no longer resolves from here
    return trainer.last


@pytest.mark.slow
def test_relative_data_on_resume_from_another_directory(interrupted_run, tmp_path, capsys):
    """A checkpoint that keeps a relative data= (Ultralytics' own, or an older ultrald's) cannot resume from another
    directory: one line saying so, and the run is left as it was. ultrald's own checkpoints keep it absolute."""
    last = interrupted_run
    saved = torch.load(last, weights_only=False)
    assert saved["train_args"]["data"] == str(tmp_path / "work" / "data.yaml")  # absolute: resumes from anywhere
    saved["train_args"]["data"] = "data.yaml"
    torch.save(saved, last)
    before, runs = sha256(last), sorted((tmp_path / "runs").iterdir())
    assert entrypoint(["train", "resume", f"model={last}"]) == 2
    err = one_line(capsys)
    assert f"data=data.yaml is relative to the directory this run started in and is not found from {tmp_path}" in err
    assert "pass data=/absolute/path/to/data.yaml" in err
    assert sha256(last) == before and sorted((tmp_path / "runs").iterdir()) == runs
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.pt", "last.pt"]
    # the way out the message gives
    assert entrypoint(["train", "resume", f"model={last}", f"data={tmp_path / 'work' / 'data.yaml'}"]) == 0
    assert len(read_results(last.parent.parent)) == 2


def loud_teacher(teacher_pt: Path, path: Path) -> Path:
    """A copy of a teacher with finite weights whose outputs overflow to Inf/NaN (every conv weight x100)."""
    ckpt = torch.load(teacher_pt, weights_only=False)
    with torch.no_grad():
        for module in ckpt["model"].modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.mul_(100)
    torch.save(ckpt, path)
    return path


@pytest.mark.slow
def test_teacher_never_finite_in_a_short_run_is_an_error(
    tmp_path, untrained_teacher_pt, student_yaml, shapes_yaml, capsys
):
    """Two batches, both skipped (fewer than the 3 in a row that stop a run): the run ends with an error, not exit 0
    with an untrained best.pt."""
    teacher = loud_teacher(untrained_teacher_pt, tmp_path / "loud.pt")
    overrides = args(tmp_path / "runs", "loud", student_yaml, shapes_yaml, teacher, batch=24)  # 48 images: 2 batches
    assert entrypoint(argv(overrides)) == 2
    assert "yolo-ld: error: all 2 batches of this run were skipped: the teacher's outputs" in one_line(capsys)
    weights = tmp_path / "runs" / "loud" / "weights"
    assert not list(weights.glob("*.pt"))
    trainer = LDTrainer(overrides={**overrides, "name": "loud2"})
    with pytest.raises(NonFiniteError, match="all 2 batches of this run were skipped"):
        trainer.train()
    assert not trainer.last.exists() and not trainer.best.exists()


def test_only_a_run_with_every_batch_skipped_is_refused():
    def check(skipped: int, steps: int) -> None:
        guard = StepGuard()
        guard.skipped = skipped
        DistillationTrainerMixin.check_distilled(SimpleNamespace(step_guard=guard, distill_steps=steps))

    check(1, 2)  # some batches distilled: the run stands
    check(0, 0)  # nothing trained yet
    with pytest.raises(NonFiniteError, match="all 1 batches"):
        check(1, 1)


@pytest.mark.slow
def test_ctrl_c_is_one_line_with_the_resume_command(tmp_path, untrained_teacher_pt, student_yaml, shapes_yaml, capsys):
    """Ctrl-C (SIGINT in the main thread) once epoch 1 is saved: one line with last.pt and the resume command, exit
    130; the lock is held while training and released, and last.pt resumes."""
    project = tmp_path / "runs"
    overrides = args(project, "int", student_yaml, shapes_yaml, untrained_teacher_pt, epochs=50)
    last, seen = project / "int" / "weights" / "last.pt", {}

    def press_ctrl_c():
        deadline = time.time() + 600
        while not last.exists() and time.time() < deadline:
            time.sleep(0.2)
        lock = project / "int" / RUN_LOCK
        seen["lock"] = json.loads(lock.read_text())["pid"] if lock.exists() else None
        _thread.interrupt_main()  # what Ctrl-C does: KeyboardInterrupt in the main thread

    watcher = threading.Thread(target=press_ctrl_c, daemon=True)
    watcher.start()
    try:
        code = entrypoint(argv(overrides))
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped yolo-ld as a traceback")
    watcher.join()
    assert code == 130
    err = one_line(capsys)
    assert err == (
        f"yolo-ld: training interrupted: {last} holds the last finished epoch; "
        f"resume with 'yolo-ld train resume model={last}'"
    )
    assert seen["lock"] == os.getpid() and not (project / "int" / RUN_LOCK).exists()
    from ultrald.engine.trainer import resume_checkpoint

    assert resume_checkpoint(True, str(last))[0] == last.resolve()  # a checkpoint the given command resumes


@pytest.fixture
def live_pid():
    """The pid of a live process that is not this one (a sleeping Python)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process.pid
    process.kill()
    process.wait()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()  # reaped: the pid names no process
    return process.pid


def test_second_live_run_into_a_held_directory_is_refused(
    tmp_path, untrained_teacher_pt, student_yaml, shapes_yaml, live_pid, capsys
):
    """exist_ok=True into a directory another live run holds: refused in one line before anything is written."""
    run = tmp_path / "runs" / "shared"
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "last.pt").write_bytes(b"the other run's weights")
    (run / RUN_LOCK).write_text(json.dumps({"pid": live_pid}))
    files = {p: sha256(p) for p in run.rglob("*") if p.is_file()}
    overrides = args(tmp_path / "runs", "shared", student_yaml, shapes_yaml, untrained_teacher_pt)
    assert entrypoint(argv(overrides)) == 2
    err = one_line(capsys)
    assert f"error: {run} is in use by another live run (pid {live_pid}): wait for it to end" in err
    assert f"delete {run / RUN_LOCK}" in err
    with pytest.raises(RunInUseError, match=f"pid {live_pid}"):
        LDTrainer(overrides=overrides)
    with pytest.raises(RunInUseError, match=f"pid {live_pid}"):
        hold_run(run)
    assert {p: sha256(p) for p in run.rglob("*") if p.is_file()} == files  # nothing written


def test_stale_lock_is_taken_over(tmp_path, live_pid, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_LOCK).write_text(json.dumps({"pid": dead_pid()}))
    assert run_holder(run) is None  # its process is gone
    (run / RUN_LOCK).write_text(json.dumps({"pid": live_pid, "started": 1.0}))
    assert run_holder(run) is None  # its pid now names a process started later
    (run / RUN_LOCK).write_text("")
    assert run_holder(run) is None  # torn
    lock = hold_run(run)
    assert json.loads(lock.read_text())["pid"] == os.getpid() and run_holder(run) is None  # ours
    release_run(lock)
    assert not lock.exists()
    (run / RUN_LOCK).write_text(json.dumps({"pid": live_pid}))
    assert run_holder(run) == live_pid
    release_run(run / RUN_LOCK)  # not ours: left alone
    assert run_holder(run) == live_pid


def test_ddp_workers_leave_the_lock_to_their_launcher(
    tmp_path, untrained_teacher_pt, student_yaml, shapes_yaml, live_pid, monkeypatch
):
    """A worker started by a launcher that holds the directory (DDP_OWNER set) does not refuse the launcher's run."""
    run = tmp_path / "runs" / "ddp"
    run.mkdir(parents=True)
    (run / RUN_LOCK).write_text(json.dumps({"pid": live_pid}))
    overrides = args(tmp_path / "runs", "ddp", student_yaml, shapes_yaml, untrained_teacher_pt)
    monkeypatch.setenv(DDP_OWNER, str(live_pid))
    trainer = LDTrainer(overrides=overrides)
    assert Path(trainer.save_dir) == run and json.loads((run / RUN_LOCK).read_text())["pid"] == live_pid
