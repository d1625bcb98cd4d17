"""`yolo-ld compare`: did distillation pay off on *your* data? The plain and the distilled student side by side.

    yolo-ld compare model=yolov8n.pt teacher=yolov8x.pt data=my-data.yaml epochs=100 seeds=0,1,2

For each seed it trains the distilled student (after the teacher stage, when the teacher must first learn the data's
classes: ultrald.engine.teacher_stage) and the plain student with the same seed and schedule, then prints and writes
the report to `<project>/<name>` (default `runs/<task>/compare`): `compare.md`, `compare.json` and `compare.png` (the
val curves). Every run is cached in its folder with the settings it was trained with: a second call reads back what is
done, resumes what was interrupted and trains only what is missing; a folder holding a run of other settings is
refused, never overwritten.
"""

from __future__ import annotations

import csv
import hashlib
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ultralytics.cfg import DEFAULT_CFG_DICT, get_save_dir
from ultralytics.data.utils import check_det_dataset
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.models.yolo.obb import OBBTrainer
from ultralytics.nn.tasks import load_checkpoint
from ultralytics.utils import LOGGER, colorstr

from .data.shapes import resolve_data
from .distill.teacher import file_hash
from .engine.teacher_stage import data_digest
from .engine.trainer import TEACHER_RECORD, resume_checkpoint, trainer_for
from .errors import Interrupted, ResumeError, UltraldError

RUN_STAMP = "ultrald-compare.json"  # in each run folder: the settings' key, and the summary once the run finished
PLAIN_TRAINERS = {"detect": DetectionTrainer, "obb": OBBTrainer}
MAP = "metrics/mAP50-95(B)"


def parse_seeds(seeds: Any) -> tuple[int, ...]:
    """Return the seeds of `seeds=`: '0,1,2', a list, or one number (that one seed)."""
    items = seeds if isinstance(seeds, (list, tuple)) else str(seeds).strip("[]() ").split(",")
    try:
        out = tuple(int(str(s).strip()) for s in items if str(s).strip())
    except ValueError:
        raise ValueError(f"'seeds={seeds}' is not a list of whole numbers, e.g. seeds=0,1,2") from None
    if not out or len(set(out)) != len(out):
        raise ValueError(f"'seeds={seeds}' needs one or more distinct seeds, e.g. seeds=0,1,2")
    return out


def run_settings(overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a run's settings as its stamp keeps them (JSON values), a file-valued teacher by its content (so a changed
    file is a new run)."""
    settings = dict(overrides)
    teacher = settings.get("teacher")
    if isinstance(teacher, (str, Path)) and Path(teacher).is_file():
        settings["teacher"] = file_hash(teacher)
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def settings_key(overrides: dict[str, Any]) -> str:
    """Return a hash of a run's settings (`run_settings`)."""
    return hashlib.sha256(json.dumps(run_settings(overrides), sort_keys=True).encode()).hexdigest()[:16]


def read_results(results_csv: Path) -> list[dict[str, float]]:
    """Return the rows of an Ultralytics results.csv as dicts of floats."""
    with open(results_csv) as f:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def csv_seconds(rows: list[dict[str, float]]) -> float | None:
    """Return the seconds a run's results.csv rows took over all its sessions: Ultralytics' `time` counts from each
    session's start, so it drops where a resumed session begins."""
    times = [r["time"] for r in rows if "time" in r]
    return sum(t for t, after in zip(times, [*times[1:], -1.0]) if after < t) if times else None


def params(checkpoint: Path) -> int:
    """Return the parameter count of a checkpoint's model."""
    return sum(p.numel() for p in load_checkpoint(checkpoint)[0].parameters())


def summary(trainer, seconds: float) -> dict[str, Any]:
    """Return what the report needs of a finished run: best.pt's final validation, size, time, val curve, teacher."""
    save_dir = Path(trainer.save_dir)
    teacher = save_dir / TEACHER_RECORD
    return {
        "mAP50-95": float(trainer.metrics[MAP]),
        "mAP50": float(trainer.metrics["metrics/mAP50(B)"]),
        "params": params(trainer.best),
        "seconds": seconds,
        "save_dir": str(save_dir),
        "curve": [row[MAP] for row in read_results(save_dir / "results.csv")],
        "teacher": json.loads(teacher.read_text()) if teacher.is_file() else None,
    }


def cached_run(trainer_class: type, overrides: dict[str, Any], folder: Path, name: str, data: str) -> dict[str, Any]:
    """Train one run into `folder/name` and return its summary; read it back when a finished run of the same
    settings and data (`data`, a digest of its content) is there, resume it when it was interrupted, refuse a folder
    that holds anything else."""
    settings = run_settings({**overrides, "data content": data})
    run, key, record = folder / name, settings_key(settings), {"settings": settings}
    stamp = run / RUN_STAMP
    saved = json.loads(stamp.read_text()) if stamp.is_file() else None
    if saved is None and run.is_dir() and any(run.iterdir()):
        raise UltraldError(f"'{run}' exists and is not a run of 'yolo-ld compare': pass another name= or remove it.")
    if saved is not None and saved["key"] != key:
        old = saved.get("settings") or {}  # stamps before 0.5.1 keep only the key
        changed = sorted(k for k in {*old, *settings} if old.get(k) != settings.get(k)) if old else []
        what = f" ({', '.join(changed)} changed)" if changed else ""
        raise UltraldError(
            f"'{run}' holds a run of other settings{what}: pass another name= for these, or remove it to retrain."
        )
    if saved is not None and "summary" in saved:
        LOGGER.info(f"{colorstr('ultrald compare:')} {name}: reusing the finished run {run}")
        return saved["summary"]
    run.mkdir(parents=True, exist_ok=True)
    spent = (saved or {}).get("seconds", 0.0)  # by this run's earlier, interrupted sessions
    stamp.write_text(json.dumps({"key": key, **record, "seconds": spent}))
    args = {**overrides, "project": str(folder), "name": name, "exist_ok": True}
    try:
        resume_checkpoint(last := run / "weights" / "last.pt")
        args = {"resume": str(last)}  # the checkpoint knows its teacher (the stage's best.pt, by path and hash)
        LOGGER.info(f"{colorstr('ultrald compare:')} {name}: resuming {last}")
    except ResumeError:
        pass  # nothing to resume: train from the start
    trainer = trainer_class(overrides=args)  # a teacher stage runs here, and is not the student's time
    start = time.time()
    try:
        trainer.train()
    finally:  # an interrupted session's time counts in the resumed run's
        spent += time.time() - start
        stamp.write_text(json.dumps({"key": key, **record, "seconds": spent}))
    result = summary(trainer, spent)
    stamp.write_text(json.dumps({"key": key, **record, "seconds": spent, "summary": result}, indent=2))
    return result


def paired_gain(rows: list[dict[str, Any]], metric: str = "mAP50-95") -> dict[str, Any]:
    """Return distilled − plain per seed, their mean, sample std (None for one seed) and the seeds won."""
    by_seed = {(r["kind"], r["seed"]): r[metric] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    gains = [by_seed["ultrald", s] - by_seed["plain", s] for s in seeds]
    return {
        "metric": metric,
        "per_seed": dict(zip(seeds, gains)),
        "mean": statistics.fmean(gains),
        "std": statistics.stdev(gains) if len(gains) > 1 else None,
        "wins": sum(g > 0 for g in gains),
        "seeds": len(gains),
    }


def verdict(gain: dict[str, Any]) -> str:
    """Return one line saying whether distillation paid off, honest about the spread."""
    mean, std, n = gain["mean"], gain["std"], gain["seeds"]
    spread = f" ± {std:.4f}" if std is not None else ""
    line = f"ultrald − plain, {gain['metric']} of best.pt: {mean:+.4f}{spread} over {n} seed(s), won {gain['wins']}/{n}"
    if std is None:
        return f"{line}. One seed has no spread: pass seeds=0,1,2 before trusting a difference."
    if abs(mean) <= std:
        return f"{line}: within the seed spread, no measurable difference."
    return f"{line}: distillation {'paid off' if mean > 0 else 'hurt'} on this data."


def report(rows: list[dict[str, Any]], teacher: dict[str, Any] | None) -> str:
    """Return the comparison as markdown: one row per run, the teacher, the paired gain and its verdict."""
    lines = ["| run | seed | params | mAP50-95 | mAP50 | train time (s) |", "|---|---:|---:|---:|---:|---:|"]
    teachers = [{**teacher, "kind": "teacher", "seed": "–"}] if teacher else []
    for r in (*teachers, *rows):
        seconds = "–" if r.get("seconds") is None else f"{r['seconds']:.0f}"
        lines.append(
            f"| {r['kind']} | {r['seed']} | {r['params']:,} | {r['mAP50-95']:.4f} | {r['mAP50']:.4f} | {seconds} |"
        )
    gains = [paired_gain(rows, m) for m in ("mAP50-95", "mAP50")]
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {verdict(g)}" for g in gains) + "\n"


def plot(rows: list[dict[str, Any]], teacher: dict[str, Any] | None, file: Path) -> None:
    """Save the val mAP50-95 curves of every run (and the teacher's level) as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no backend to choose, no figure to close

    fig = Figure(figsize=(6.5, 4), tight_layout=True)
    ax = fig.subplots()
    seeds = sorted({r["seed"] for r in rows})
    for r in rows:  # one colour per seed, solid distilled and dashed plain: each pair reads side by side
        style, colour = "-" if r["kind"] == "ultrald" else "--", f"C{seeds.index(r['seed']) % 10}"
        x = range(1, len(r["curve"]) + 1)
        ax.plot(x, r["curve"], style, color=colour, marker=".", label=f"{r['kind']} seed {r['seed']}")
    if teacher:
        ax.axhline(teacher["mAP50-95"], color="k", lw=0.8, ls=":", label="teacher")
    ax.set(xlabel="epoch", ylabel="mAP50-95 (val)", title="yolo-ld compare: plain vs distilled student")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(file, dpi=120)


def compare(model: str, task: str, overrides: dict[str, Any], seeds: Any = "0,1,2") -> dict[str, Any]:
    """Train the distilled and the plain student for each seed (the teacher stage first when needed); write and
    return the report.

    Args:
        model (str): The student (a model yaml or checkpoint), as `yolo-ld train model=` takes it.
        task (str): The student's task, 'detect' or 'obb'.
        overrides (dict): `yolo-ld train` keys: `teacher=`, `data=`, the schedule, ultrald's keys; `project`/`name`
            place the comparison (default runs/<task>/compare).
        seeds: The seeds, e.g. '0,1,2'.
    """
    seeds = parse_seeds(seeds)
    if overrides.get("teacher") is None:
        raise UltraldError("'teacher' is required, e.g. 'yolo-ld compare model=yolov8n.pt teacher=yolov8x.pt ...'")
    if overrides.get("resume"):
        raise UltraldError("'yolo-ld compare' resumes by itself: run the same command again, without resume.")
    where = SimpleNamespace(project=overrides.get("project"), name=overrides.get("name") or "compare", task=task)
    folder = get_save_dir(SimpleNamespace(**vars(where), mode="train", exist_ok=True))
    common = {k: v for k, v in overrides.items() if k not in {"project", "name", "exist_ok"}}
    common["data"] = resolve_data(common.get("data"))  # the plain trainer does not know the embedded names
    content = data_digest(check_det_dataset(str(common["data"])))
    plain = {k: v for k, v in common.items() if k in DEFAULT_CFG_DICT and k not in {"dis", "distill_model"}}
    plan = [(kind, s) for s in seeds for kind in ("ultrald", "plain")]  # distilled first: a useless teacher stops it
    rows = []
    for i, (kind, seed) in enumerate(plan, 1):
        LOGGER.info(f"{colorstr('ultrald compare:')} run {i}/{len(plan)}: {kind} student, seed {seed}")
        trainer_class, args = (trainer_for(task), common) if kind == "ultrald" else (PLAIN_TRAINERS[task], plain)
        try:
            run = cached_run(trainer_class, {**args, "model": model, "seed": seed}, folder, f"{kind}-s{seed}", content)
        except KeyboardInterrupt as e:  # the way back is this command, whichever stage or run was stopped
            raise Interrupted(
                f"compare interrupted in run {i}/{len(plan)} ({kind}, seed {seed}): run the same command again; the "
                "finished runs are reused and this one resumes"
            ) from e
        rows.append({"kind": kind, "seed": seed, **run})
    teacher = next((r["teacher"] for r in rows if r.get("teacher")), None)
    if teacher:  # a stage trained here reports its time
        stage = Path((teacher.get("stage") or {}).get("run") or "") / "results.csv"
        seconds = csv_seconds(read_results(stage)) if stage.is_file() else None
        teacher = {**teacher, "params": params(Path(teacher["teacher"])), "seconds": seconds}
    gain = {m: paired_gain(rows, m) for m in ("mAP50-95", "mAP50")}
    result = {"folder": str(folder), "teacher": teacher, "runs": rows, "gain": gain}
    text = report(rows, teacher)
    (folder / "compare.md").write_text(text)
    (folder / "compare.json").write_text(json.dumps(result, indent=2, default=str))
    plot(rows, teacher, folder / "compare.png")
    LOGGER.info(f"\n{colorstr('ultrald compare:')} {folder}\n{text}Report: {folder / 'compare.md'}, plot: compare.png")
    return result
