"""Runs that go wrong: bad teachers, resume in every way it can go wrong, NaN in training, a killed process.

Each test asserts the outcome and that no existing checkpoint was overwritten with worse or non-finite weights.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ANY_TEACHER, FAST, IMGSZ
from helpers import read_results, sha256

from ultrald import LDTrainer
from ultrald.cli import entrypoint
from ultrald.errors import NonFiniteError, ResumeError, TeacherError


def rows(save_dir: Path) -> int:
    """The number of epochs a run has logged."""
    return len(read_results(save_dir))


def args(project: Path, name: str, student_yaml, shapes_yaml, teacher, **kw) -> dict:
    base = dict(model=str(student_yaml), data=str(shapes_yaml), teacher=str(teacher), epochs=2, imgsz=IMGSZ, batch=8)
    base.update(workers=0, plots=False, project=str(project), name=name, exist_ok=True, seed=0, **FAST, **ANY_TEACHER)
    return {**base, **kw}


def finite(ckpt_file: Path) -> bool:
    model = torch.load(ckpt_file, weights_only=False)
    model = model["ema"] or model["model"]
    return all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def interrupted(project, name, student_yaml, shapes_yaml, teacher, **kw) -> Path:
    """A 2-epoch run stopped after its first epoch (as Ctrl-C would); returns its last.pt."""

    def stop(trainer):
        raise KeyboardInterrupt

    trainer = LDTrainer(overrides=args(project, name, student_yaml, shapes_yaml, teacher, **kw))
    trainer.add_callback("on_fit_epoch_end", stop)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    return trainer.last


# ---- bad teachers: refused with one line naming the file, before the dataset scan, leaving no run directory


def broken_copies(teacher_pt: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    """Teacher files broken in each way a user meets (copies of a valid one), with the message each must give."""
    ckpt = torch.load(teacher_pt, weights_only=False)
    nan = tmp / "nan.pt"
    with torch.no_grad():
        ckpt["model"].model[-1].cv2[0][2].weight[0, 0, 0, 0] = float("nan")
    torch.save(ckpt, nan)
    data = Path(teacher_pt).read_bytes()
    (tmp / "empty.pt").write_bytes(b"")
    (tmp / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint at all" * 100)
    torch.save(ckpt["model"].float().state_dict(), tmp / "state_dict.pt")
    return {
        "nan": (nan, r"has NaN/Inf values in 'model\.22\.cv2\.0\.2\.weight'"),
        "empty": (tmp / "empty.pt", "is an empty file"),
        "truncated": (tmp / "truncated.pt", "cannot be read as an Ultralytics checkpoint"),
        "garbage": (tmp / "garbage.pt", "cannot be read as an Ultralytics checkpoint"),
        "state_dict": (tmp / "state_dict.pt", "cannot be read as an Ultralytics checkpoint"),
    }


@pytest.mark.parametrize("kind", ["nan", "empty", "truncated", "garbage", "state_dict"])
def test_bad_teacher_refused_before_the_dataset_scan(tmp_path, untrained_teacher_pt, student_yaml, kind, capsys):
    file, message = broken_copies(untrained_teacher_pt, tmp_path)[kind]
    project = tmp_path / "runs"
    # the dataset does not exist either: the teacher error must come first, in seconds
    overrides = args(project, "bad", student_yaml, tmp_path / "no-such-data.yaml", file)
    with pytest.raises(TeacherError, match=message) as e:
        LDTrainer(overrides=overrides)
    assert str(file) in str(e.value) and "\n" not in str(e.value)
    assert not project.exists()
    # the CLI: one line, exit 2, no traceback
    assert entrypoint(["train", *(f"{k}={v}" for k, v in overrides.items())]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("yolo-ld: error: teacher=") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not project.exists()


@pytest.mark.parametrize("key, value", [("ld", "abc"), ("vlr", "maybe"), ("kd_region", "everywhere")])
def test_bad_values_are_one_line_errors(tmp_path, untrained_teacher_pt, student_yaml, shapes_yaml, key, value, capsys):
    teacher = untrained_teacher_pt
    argv = ["train", f"model={student_yaml}", f"data={shapes_yaml}", f"teacher={teacher}", f"{key}={value}"]
    assert entrypoint([*argv, f"project={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"'{key}={value}'" in err and len(err.splitlines()) == 1
    with pytest.raises((TypeError, ValueError)):  # --traceback shows the real exception
        entrypoint([*argv, f"project={tmp_path}", "--traceback"])


def test_failed_start_removes_its_empty_run_directory(tmp_path, untrained_teacher_pt, student_yaml, shapes_yaml):
    """A teacher that scores nothing on the val split is found once the dataset is scanned (the run directory exists
    by then), before the first epoch: the run stops with one message and its directory is removed, so the next run
    does not get a bumped name."""
    from ultrald.cfg import LD_DEFAULTS

    project = tmp_path / "runs"
    min_map = LD_DEFAULTS["teacher_min_map"]  # the default, which the other tests here lower to 0
    overrides = args(project, "train", student_yaml, shapes_yaml, untrained_teacher_pt, exist_ok=False)
    trainer = LDTrainer(overrides={**overrides, "teacher_min_map": min_map})
    assert Path(trainer.save_dir).is_dir() and min_map > 0
    with pytest.raises(TeacherError, match=rf"scores mAP50 0.0000 .* below teacher_min_map={min_map}: it has learned"):
        trainer.train()
    assert not Path(trainer.save_dir).exists()
    with pytest.raises(ValueError, match="metric=dota evaluates obb models"):
        LDTrainer(overrides=args(project, "train", student_yaml, shapes_yaml, untrained_teacher_pt, metric="dota"))
    assert not any(project.iterdir())


# ---- resume


@pytest.mark.slow
def test_resume_after_moving_the_teacher(tmp_path, teacher_pt, student_yaml, shapes_yaml):
    teacher = tmp_path / "teacher.pt"
    shutil.copy(teacher_pt, teacher)
    last = interrupted(tmp_path / "runs", "moved", student_yaml, shapes_yaml, teacher)
    before = sha256(last)
    moved = tmp_path / "elsewhere" / "teacher.pt"
    moved.parent.mkdir()
    teacher.rename(moved)
    with pytest.raises(ResumeError, match=r"teacher '.*teacher.pt' no longer exists: resume with teacher="):
        LDTrainer(overrides=dict(resume=str(last)))
    assert sha256(last) == before  # refused resumes touch nothing
    resumed = LDTrainer(overrides=dict(resume=str(last), teacher=str(moved)))
    assert resumed.args.teacher == str(moved.resolve())
    resumed.train()
    assert rows(resumed.save_dir) == 2
    assert torch.load(resumed.best, weights_only=False)["train_args"]["teacher"] == str(moved.resolve())


@pytest.mark.slow
def test_resume_with_a_different_teacher_is_refused(tmp_path, teacher_pt, student_yaml, shapes_yaml):
    last = interrupted(tmp_path / "runs", "other", student_yaml, shapes_yaml, teacher_pt)
    ckpt = torch.load(teacher_pt, weights_only=False)
    with torch.no_grad():
        ckpt["model"].model[-1].cv2[0][2].bias.add_(0.1)
    other = tmp_path / "other.pt"
    torch.save(ckpt, other)
    with pytest.raises(TeacherError, match=r"is not the teacher this run was trained with \(hash sha256:"):
        LDTrainer(overrides=dict(resume=str(last), teacher=str(other)))


@pytest.mark.slow
def test_resume_from_another_directory_with_a_relative_teacher(tmp_path, teacher_pt, student_yaml, shapes_yaml):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(teacher_pt, work / "teacher.pt")
    cwd = os.getcwd()
    try:
        os.chdir(work)
        last = interrupted(tmp_path / "runs", "rel", student_yaml, shapes_yaml, "teacher.pt")
        os.chdir(tmp_path)  # the relative path no longer resolves from here
        assert entrypoint(["train", f"resume={last}"]) == 0
    finally:
        os.chdir(cwd)
    assert rows(last.parent.parent) == 2


@pytest.mark.slow
def test_resume_of_a_run_taught_by_a_python_object_takes_the_same_object_again(
    tmp_path, teacher_pt, student_yaml, shapes_yaml, capsys
):
    from ultralytics import YOLO

    teacher = YOLO(str(teacher_pt))
    overrides = args(tmp_path / "runs", "obj", student_yaml, shapes_yaml, teacher_pt)
    trainer = LDTrainer(overrides={**overrides, "teacher": teacher})
    trainer.add_callback("on_fit_epoch_end", lambda t: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    last, before = trainer.last, sha256(trainer.last)
    assert torch.load(last, weights_only=False)["train_args"]["teacher_hash"].startswith("weights:")
    # the checkpoint cannot hold the object: the CLI says how to resume, in one line
    assert entrypoint(["train", f"resume={last}"]) == 2
    assert "pass the same YOLO object again as teacher=" in capsys.readouterr().err
    other = YOLO(str(teacher_pt))
    with torch.no_grad():
        other.model.model[-1].cv2[0][2].bias.add_(0.1)
    with pytest.raises(TeacherError, match="is not the teacher this run was trained with"):
        LDTrainer(overrides=dict(resume=str(last), teacher=other))
    assert sha256(last) == before
    resumed = LDTrainer(overrides=dict(resume=str(last), teacher=YOLO(str(teacher_pt))))  # the same weights
    resumed.train()
    assert rows(resumed.save_dir) == 2


@pytest.mark.slow
def test_resume_true_with_model_resumes_that_run_only(tmp_path, teacher_pt, student_yaml, shapes_yaml, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = interrupted(tmp_path / "runs", "first", student_yaml, shapes_yaml, teacher_pt)
    second = interrupted(tmp_path / "runs", "second", student_yaml, shapes_yaml, teacher_pt)  # the newest last.pt
    untouched = sha256(second)
    trainer = LDTrainer(overrides=dict(resume=True, model=str(first)))
    trainer.train()
    assert Path(trainer.save_dir).name == "first" and rows(first.parent.parent) == 2
    assert sha256(second) == untouched and rows(second.parent.parent) == 1


@pytest.mark.slow
def test_resume_of_a_finished_run_says_nothing_to_resume(tmp_path, teacher_pt, student_yaml, shapes_yaml, capsys):
    trainer = LDTrainer(overrides=args(tmp_path / "runs", "done", student_yaml, shapes_yaml, teacher_pt, epochs=1))
    trainer.train()
    best, runs = trainer.best, sorted((tmp_path / "runs").iterdir())
    untouched = sha256(best)
    with pytest.raises(ResumeError, match="nothing to resume: .* is a finished"):
        LDTrainer(overrides=dict(resume=True, model=str(best)))
    assert entrypoint(["train", "resume", f"model={best}"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert sha256(best) == untouched and sorted((tmp_path / "runs").iterdir()) == runs  # no new run on other data
    # the finished checkpoint records how it was made, and is still a plain Ultralytics model
    from ultralytics import YOLO

    saved = torch.load(best, weights_only=False)["train_args"]
    assert (
        saved["teacher"] == str(Path(teacher_pt).resolve()) and saved["teacher_hash"] == f"sha256:{sha256(teacher_pt)}"
    )
    assert saved["ld"] == trainer.args.ld and saved["vlr_ld"] == trainer.args.vlr_ld
    assert YOLO(str(best)).predict(torch.zeros(1, 3, IMGSZ, IMGSZ), verbose=False)


KILL_SCRIPT = """
import os, signal, sys
from ultrald import LDTrainer
trainer = LDTrainer(overrides={overrides!r})
def kill_mid_epoch(t):  # the second epoch, a few batches in: after epoch 1's checkpoints were written
    if t.epoch == 1 and getattr(t, "_batches", 0) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    t._batches = getattr(t, "_batches", 0) + (t.epoch == 1)
trainer.add_callback("on_train_batch_end", kill_mid_epoch)
trainer.train()
"""


@pytest.mark.slow
def test_killed_mid_epoch_then_resumed(tmp_path, teacher_pt, student_yaml, shapes_yaml):
    overrides = args(tmp_path / "runs", "killed", student_yaml, shapes_yaml, teacher_pt, epochs=3)
    code = KILL_SCRIPT.format(overrides=overrides)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=600)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    last = tmp_path / "runs" / "killed" / "weights" / "last.pt"
    assert finite(last) and rows(last.parent.parent) == 1  # epoch 1 intact
    assert entrypoint(["train", "resume", f"model={last}"]) == 0
    assert rows(last.parent.parent) == 3 and finite(last)


# ---- non-finite values during training


@pytest.mark.slow
def test_nonfinite_teacher_output_skips_then_stops_before_any_bad_checkpoint(
    tmp_path, teacher_pt, student_yaml, shapes_yaml
):
    """Epoch 1 trains normally; in epoch 2 the teacher starts to output Inf. The bad batches are skipped, the run
    stops with an error naming the term, and last.pt/best.pt are byte for byte those of epoch 1."""
    saved = {}

    def poison(trainer):
        if trainer.epoch == 1:
            saved.update(last=sha256(trainer.last), best=sha256(trainer.best))
            with torch.no_grad():
                trainer.teacher.model[-1].cv3[0][2].bias.fill_(float("inf"))

    trainer = LDTrainer(overrides=args(tmp_path / "runs", "nan", student_yaml, shapes_yaml, teacher_pt))
    trainer.add_callback("on_train_epoch_start", poison)
    with pytest.raises(NonFiniteError, match="teacher scores non-finite on 3 batches in a row"):
        trainer.train()
    assert sha256(trainer.last) == saved["last"] and sha256(trainer.best) == saved["best"]
    assert finite(trainer.last) and rows(trainer.save_dir) == 1


def test_guard_counts_skips_and_resets(tmp_path):
    from ultrald.distill.criterion import StepGuard

    guard, loss, items = StepGuard(limit=3), torch.ones(4, requires_grad=True), {"ld_loss": torch.tensor(1.0)}
    zero, zero_items = guard.apply(loss, items, ["ld_loss"])
    assert zero.sum() == 0 and zero_items["ld_loss"] == 0 and (guard.in_row, guard.skipped) == (1, 1)
    zero.sum().backward()
    assert loss.grad.abs().sum() == 0  # a skipped batch moves no weight
    assert guard.apply(loss, items, [])[0] is loss and guard.in_row == 0  # a good batch resets the count
    guard.apply(loss, items, ["vlr_loss"])
    guard.apply(loss, items, ["vlr_loss"])
    with pytest.raises(NonFiniteError, match="vlr_loss non-finite on 3 batches in a row"):
        guard.apply(loss, items, ["vlr_loss"])
    assert guard.skipped == 4
