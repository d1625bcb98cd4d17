"""From a user's own data to a distilled student and its comparison with plain training: the teacher stage (a yaml
trained, an other-class checkpoint fine-tuned, both reused), the teacher's check on the val split, `yolo-ld compare`."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, IMGSZ, tiny_yaml

from bench.own_data import draw_folder
from ultrald.cli import entrypoint
from ultrald.compare import cached_run, paired_gain, parse_seeds, settings_key, verdict
from ultrald.engine.teacher_stage import STAMP, data_digest, inherited_settings, source_hash, stage_reason
from ultrald.errors import UltraldError

TINY = dict(imgsz=IMGSZ, batch=8, workers=0, plots=False, **FAST)


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> Path:
    """The user's folder of annotated images (labelImg's layout, its own classes Tree and Car, an image without XML,
    an XML without a size), converted by `yolo-ld convert voc` (classes sorted: Car, Tree)."""
    tmp = tmp_path_factory.mktemp("own")
    photos = draw_folder(tmp / "photos", 24, IMGSZ)
    assert entrypoint(["convert", "voc", str(photos), str(tmp / "data"), "--val", "0.25"]) == 0
    return tmp / "data" / "data.yaml"


def save_untrained(path: Path, yaml_file: Path, names: dict) -> Path:
    """Save a randomly initialised model with `names` as a checkpoint: a teacher that has learned nothing."""
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(str(yaml_file), nc=len(names), verbose=False)
    model.names, model.args = names, {}
    torch.save({"model": model, "train_args": {}, "epoch": -1}, path)
    return path


# The quick tier: the pieces by hand.


def test_parse_seeds():
    assert parse_seeds("0,1,2") == parse_seeds([0, 1, 2]) == parse_seeds("[0, 1, 2]") == (0, 1, 2)
    assert parse_seeds(3) == (3,)
    for bad in ("a,b", "0,0", ""):
        with pytest.raises(ValueError, match="seeds="):
            parse_seeds(bad)


def test_paired_gain_and_verdict_by_hand():
    rows = [
        {"kind": k, "seed": s, "mAP50-95": v, "mAP50": 0.5}
        for k, s, v in [("plain", 0, 0.10), ("ultrald", 0, 0.14), ("plain", 1, 0.20), ("ultrald", 1, 0.22)]
    ]
    gain = paired_gain(rows)
    assert gain["per_seed"] == pytest.approx({0: 0.04, 1: 0.02})
    assert gain["mean"] == pytest.approx(0.03) and gain["std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert gain["wins"] == 2 and "paid off" in verdict(gain)
    assert "within the seed spread" in verdict({**gain, "mean": -0.01})
    assert "hurt" in verdict({**gain, "mean": -0.03})
    one = paired_gain(rows[:2])
    assert one["std"] is None and "One seed has no spread" in verdict(one)


def test_an_interrupted_runs_time_counts_when_it_resumes(tmp_path):
    """Each session of a run adds its seconds to the stamp, so the report's train time is the whole run's, not the
    last session's (Ultralytics' results.csv restarts its clock on resume)."""
    import time

    class Stopped:  # a run the user stops after 0.05 s
        def __init__(self, **_):
            pass

        def train(self):
            time.sleep(0.05)
            raise KeyboardInterrupt

    stamp = tmp_path / "plain-s0" / "ultrald-compare.json"
    for session in (1, 2):
        with pytest.raises(KeyboardInterrupt):
            cached_run(Stopped, {"epochs": 1}, tmp_path, "plain-s0", "d")
        assert json.loads(stamp.read_text())["seconds"] >= 0.05 * session


def test_ctrl_c_in_compare_says_run_it_again(tmp_path, shapes_yaml, monkeypatch):
    import ultrald.compare
    from ultrald.errors import Interrupted

    def stopped(*args):
        raise KeyboardInterrupt  # whichever run: the teacher stage, a distilled or a plain student

    monkeypatch.setattr(ultrald.compare, "cached_run", stopped)
    overrides = {"teacher": "t.pt", "data": str(shapes_yaml), "project": str(tmp_path)}
    with pytest.raises(Interrupted, match=r"compare interrupted in run 1/2 \(ultrald, seed 0\): run the same command"):
        ultrald.compare.compare("s.yaml", "detect", overrides, seeds="0")


def test_csv_seconds_add_up_the_sessions_of_a_resumed_run():
    from ultrald.compare import csv_seconds

    assert csv_seconds([{"time": 10.0}, {"time": 21.0}, {"time": 30.0}]) == 30.0
    assert csv_seconds([{"time": 10.0}, {"time": 21.0}, {"time": 9.0}, {"time": 19.5}]) == 40.5  # resumed at epoch 3
    assert csv_seconds([{"epoch": 1.0}]) is None


def test_settings_key_follows_the_teacher_file(tmp_path):
    teacher = tmp_path / "t.pt"
    teacher.write_bytes(b"a")
    before = settings_key({"teacher": str(teacher), "epochs": 1})
    assert settings_key({"teacher": str(teacher), "epochs": 1}) == before
    assert settings_key({"teacher": str(teacher), "epochs": 2}) != before
    teacher.write_bytes(b"b")  # same path, other weights: another run
    assert settings_key({"teacher": str(teacher), "epochs": 1}) != before


def test_cached_run_reads_back_and_never_overwrites_another_run(tmp_path):
    class Refuse:  # any attempt to train fails the test
        def __init__(self, **_):
            raise AssertionError("trained although the run was cached")

    run = tmp_path / "plain-s0"
    run.mkdir()
    key = settings_key({"epochs": 1, "data content": "d"})
    (run / "ultrald-compare.json").write_text(json.dumps({"key": key, "summary": {"mAP50-95": 0.3}}))
    assert cached_run(Refuse, {"epochs": 1}, tmp_path, "plain-s0", "d") == {"mAP50-95": 0.3}
    with pytest.raises(UltraldError, match="holds a run of other settings"):
        cached_run(Refuse, {"epochs": 2}, tmp_path, "plain-s0", "d")
    with pytest.raises(UltraldError, match="holds a run of other settings"):
        cached_run(Refuse, {"epochs": 1}, tmp_path, "plain-s0", "other data")
    stamp = json.loads((run / "ultrald-compare.json").read_text())
    (run / "ultrald-compare.json").write_text(json.dumps({**stamp, "settings": {"epochs": 1, "data content": "d"}}))
    with pytest.raises(UltraldError, match=r"other settings \(data content, epochs changed\)"):  # 0.5.1 stamps
        cached_run(Refuse, {"epochs": 2}, tmp_path, "plain-s0", "other data")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    with pytest.raises(UltraldError, match="is not a run of 'yolo-ld compare'"):
        cached_run(Refuse, {"epochs": 1}, tmp_path, "mine", "d")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "a user's file"


def test_stage_reason(tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(str(tiny_yaml(tmp_path / "m.yaml", 0.0625)), nc=2, verbose=False)
    model.names = {0: "Car", 1: "Tree"}
    assert stage_reason(model, {0: "Car", 1: "Tree"}, "detect") is None  # distils as it is
    reason = stage_reason(model, {0: "Tree", 1: "Car"}, "detect")  # order matters
    assert reason == "fine-tuned from its classes [Car, Tree] to the data's 2"
    assert stage_reason(model, {0: "Tree"}, "detect").endswith("to the data's 1")
    assert stage_reason(model, {0: "plane"}, "obb") is None  # another task: the pair check names it
    assert stage_reason(None, {0: "Tree"}, "detect") == "trained from scratch"


def test_a_model_yaml_ultralytics_ships_is_a_teacher_by_name(tmp_path):
    """teacher=yolov8x.yaml (README's form) names no local file: the stage key hashes the model Ultralytics builds
    from it, its scale included; a local yaml keeps its file's hash."""
    n, s = source_hash(Path("yolov8n.yaml")), source_hash(Path("yolov8s.yaml"))
    assert n != s and n == source_hash(Path("yolov8n.yaml"))
    local = tiny_yaml(tmp_path / "t.yaml", 0.125)
    assert source_hash(local) == hashlib.sha256(local.read_bytes()).hexdigest()


def test_inherited_settings_and_data_digest(tmp_path, shapes_yaml):
    from ultralytics.data.utils import check_det_dataset

    args = {"imgsz": 64, "batch": 3, "epochs": 7, "seed": 5, "name": "x", "model": "s.yaml", "ld": 3.0, "lr0": 0.01}
    assert inherited_settings(args) == {"imgsz": 64, "batch": 3}  # lr0=0.01 is Ultralytics' default
    data = check_det_dataset(str(shapes_yaml))
    digest = data_digest(data)
    label = sorted((Path(data["path"]) / "labels" / "val").glob("*.txt"))[0]
    text = label.read_text()
    try:
        label.write_text(text + "0 0.5 0.5 0.1 0.1\n")
        assert data_digest(data) != digest  # a changed label is another dataset
    finally:
        label.write_text(text)
    assert data_digest(data) == digest


# The full suite: training.


@pytest.mark.slow
def test_compare_with_a_yaml_teacher_on_a_labelimg_folder(tmp_path, own_data):
    """One command from the converted folder: the teacher trained from its yaml, both students, the report; the
    second call reuses every run."""
    student, teacher = tiny_yaml(tmp_path / "s.yaml", 0.0625), tiny_yaml(tmp_path / "t.yaml", 0.125)
    argv = [
        "compare", f"model={student}", f"teacher={teacher}", f"data={own_data}", "epochs=1", "teacher_epochs=2",
        "seeds=0", "teacher_min_map=0", f"project={tmp_path}", "name=cmp", *(f"{k}={v}" for k, v in TINY.items()),
    ]  # fmt: skip
    assert entrypoint(argv) == 0
    folder = tmp_path / "cmp"
    report = json.loads((folder / "compare.json").read_text())
    assert [(r["kind"], r["seed"]) for r in report["runs"]] == [("ultrald", 0), ("plain", 0)]
    assert math.isfinite(report["gain"]["mAP50-95"]["mean"]) and report["gain"]["mAP50-95"]["seeds"] == 1
    assert report["runs"][0]["params"] == report["runs"][1]["params"] < report["teacher"]["params"]
    assert "| ultrald | 0 |" in (folder / "compare.md").read_text()
    assert (folder / "compare.png").stat().st_size > 1000
    stages = list(folder.glob("teacher-*"))
    assert len(stages) == 1 and json.loads((stages[0] / STAMP).read_text())["reason"] == "trained from scratch"
    assert report["teacher"]["teacher"] == str(stages[0] / "weights" / "best.pt")

    from ultralytics import YOLO

    best = YOLO(report["runs"][0]["save_dir"] + "/weights/best.pt")  # plain Ultralytics, no ultrald involved
    assert best.names == {0: "Car", 1: "Tree"}
    assert best.predict(np.zeros((IMGSZ, IMGSZ, 3), np.uint8), imgsz=IMGSZ, verbose=False)[0].boxes is not None

    weights = {p: p.stat().st_mtime_ns for p in folder.rglob("*.pt")}
    assert entrypoint(argv) == 0  # the same command again: nothing is trained
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.pt")} == weights
    assert json.loads((folder / "compare.json").read_text())["runs"] == report["runs"]


@pytest.mark.slow
def test_a_teacher_of_other_classes_is_fine_tuned_then_reused(tmp_path, own_data, teacher_pt):
    """teacher_pt predicts the 8 shapes classes; on the user's 2 classes it is fine-tuned first, not refused."""
    from ultrald import LDTrainer

    student = tiny_yaml(tmp_path / "s.yaml", 0.0625)
    args = dict(model=str(student), teacher=str(teacher_pt), data=str(own_data), epochs=1, teacher_epochs=1, **TINY)
    trainer = LDTrainer(overrides={**args, "project": str(tmp_path), "name": "a", "teacher_min_map": 0})
    stage = Path(trainer.args.teacher).parent.parent
    assert stage.parent == tmp_path and stage.name.startswith("teacher-")
    reason = json.loads((stage / STAMP).read_text())["reason"]
    assert (
        reason
        == "fine-tuned from its classes [circle, triangle, square, pentagon, hexagon, ... (8 classes)] to the data's 2"
    )
    trainer.train()
    ckpt = torch.load(trainer.best, map_location="cpu", weights_only=False)
    assert ckpt["train_args"]["teacher_source"] == str(teacher_pt)  # provenance: where the teacher came from
    assert ckpt["train_args"]["teacher_stage"] == str(stage)
    assert 0 <= ckpt["train_args"]["teacher_mAP50"] <= 1

    stage_weights = (stage / "weights" / "best.pt").stat().st_mtime_ns
    again = LDTrainer(overrides={**args, "project": str(tmp_path), "name": "b", "teacher_min_map": 0})
    assert again.args.teacher == trainer.args.teacher and again.args.teacher_hash == trainer.args.teacher_hash
    assert (stage / "weights" / "best.pt").stat().st_mtime_ns == stage_weights  # reused, not trained again


@pytest.mark.slow
def test_a_teacher_that_learned_nothing_stops_before_the_first_epoch(tmp_path, own_data, capsys):
    teacher = save_untrained(tmp_path / "t.pt", tiny_yaml(tmp_path / "t.yaml", 0.125), {0: "Car", 1: "Tree"})
    student = tiny_yaml(tmp_path / "s.yaml", 0.0625)
    argv = [
        "train", f"model={student}", f"teacher={teacher}", f"data={own_data}", "epochs=3", f"project={tmp_path}",
        "name=run", *(f"{k}={v}" for k, v in TINY.items()),
    ]  # fmt: skip
    assert entrypoint(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "it has learned nothing to distil" in err and "teacher_min_map=0" in err
    assert not (tmp_path / "run").exists()  # no epoch trained, no run folder left behind


@pytest.mark.slow
def test_an_interrupted_teacher_stage_resumes(tmp_path, own_data):
    """A stage stopped after its first epoch (Ctrl-C, a killed job) is resumed from its last.pt, not started over."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    from ultrald.engine.teacher_stage import train_stage

    source, run = tiny_yaml(tmp_path / "t.yaml", 0.125), tmp_path / "teacher-x"
    settings = {"data": str(own_data), "epochs": 3, **TINY}

    def stop(trainer):
        raise KeyboardInterrupt  # right after the first epoch's last.pt is written

    first = DetectionTrainer(overrides={**settings, "model": str(source), "project": str(tmp_path), "name": run.name})
    first.add_callback("on_model_save", stop)
    with pytest.raises(KeyboardInterrupt):
        first.train()
    rows = (run / "results.csv").read_text().splitlines()
    assert len(rows) == 2  # header and epoch 1

    train_stage(source, run, settings)
    resumed = (run / "results.csv").read_text().splitlines()
    assert len(resumed) == 4 and resumed[:2] == rows  # epochs 2 and 3 appended to the interrupted run's epoch 1
    assert (run / "weights" / "best.pt").is_file()


def test_ctrl_c_in_the_teacher_stage_says_how_to_resume(tmp_path, monkeypatch):
    """Ctrl-C in the stage names its last.pt and the way back (the same command: the stage resumes by itself), not
    'yolo-ld train resume', which cannot reach a stage."""
    import ultralytics

    from ultrald.engine.teacher_stage import train_stage
    from ultrald.errors import Interrupted

    class Stopped:  # Ultralytics' YOLO whose training the user stops
        def __init__(self, model):
            pass

        def train(self, **kwargs):
            raise KeyboardInterrupt

    monkeypatch.setattr(ultralytics, "YOLO", Stopped)
    run = tmp_path / "teacher-x"
    with pytest.raises(Interrupted, match="teacher stage interrupted: no epoch of it finished; run the same command"):
        train_stage(Path("t.yaml"), run, {})
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "last.pt").write_bytes(b"")  # unreadable: not resumable, trained again, stopped again
    with pytest.raises(Interrupted, match=r"teacher-x/weights/last.pt holds its last finished epoch; run the same"):
        train_stage(Path("t.yaml"), run, {})


def test_preserved_random_state():
    import random

    from ultrald.engine.checks import preserved_random_state

    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    with preserved_random_state():
        torch.rand(5), np.random.rand(5), random.random()  # what a check draws
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


@pytest.mark.slow
def test_the_teacher_check_leaves_training_as_it_was(tmp_path, teacher_pt, shapes_yaml, student_yaml, monkeypatch):
    """Validating the teacher after Ultralytics seeded the run must not change what the run trains."""
    from ultrald import LDTrainer

    def losses(name):
        args = dict(model=str(student_yaml), teacher=str(teacher_pt), data=str(shapes_yaml), epochs=1, **TINY)
        trainer = LDTrainer(overrides={**args, "project": str(tmp_path), "name": name, "teacher_min_map": 0})
        trainer.train()
        return (Path(trainer.save_dir) / "results.csv").read_text().splitlines()[1].split(",")[2:]

    checked = losses("checked")
    monkeypatch.setattr(LDTrainer, "check_teacher_on_val", lambda self: None)
    assert losses("unchecked") == checked
