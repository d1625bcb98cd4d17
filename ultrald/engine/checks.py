"""Checks a run makes before it writes anything: the data it names, and whether another live run holds its folder."""

from __future__ import annotations

import json
import os
import random
import re
import unicodedata
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from ultralytics.data.utils import IMG_FORMATS, check_det_dataset, img2label_paths
from ultralytics.utils import LOGGER

from ..data.shapes import resolve_data
from ..errors import DataError, RunInUseError, UltraldError

RUN_LOCK = "ultrald.lock"  # in the run directory while a process trains into it: that process's pid
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@contextmanager
def preserved_random_state():
    """Run the block without moving Python's, NumPy's or torch's (CPU and CUDA) random streams: a check made after
    Ultralytics seeded the run must not change the run it checks."""
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


def one_line(error: BaseException) -> str:
    """Return the first line of an exception's message without Ultralytics' colours and emoji."""
    text = ANSI.sub("", str(error)).strip()
    text = "".join(c for c in text if unicodedata.category(c) != "So").replace("\ufe0f", "")
    return " ".join(text.splitlines()[0].split()) if text else type(error).__name__


def data_error(data: Any, error: BaseException, resume: bool = False) -> DataError:
    """Return a one-line DataError for Ultralytics' dataset `error` on `data=`; on resume, a relative path that does not
    resolve from here is named as such, with the way out."""
    path = Path(str(data))
    if resume and not path.is_absolute() and not path.exists():
        return DataError(
            f"data={data} is relative to the directory this run started in and is not found from {Path.cwd()}: resume "
            f"from that directory, or pass data=/absolute/path/to/{path.name}."
        )
    return DataError(f"data={data}: {one_line(error)}")


def split_images(data: Mapping, split: str) -> list[Path]:
    """Return the image files of a split of a checked data dict: folders searched recursively, *.txt lists read."""
    entries = data.get(split) or []
    files = []
    for entry in [entries] if isinstance(entries, (str, Path)) else entries:
        p = Path(entry)
        if p.is_dir():
            files += [f for f in p.rglob("*.*") if f.suffix[1:].lower() in IMG_FORMATS]
        elif p.is_file():  # a list of image paths, relative to the dataset root as Ultralytics reads it
            root = Path(data.get("path") or p.parent)
            lines = [x.strip() for x in p.read_text().splitlines() if x.strip()]
            files += [Path(x) if Path(x).is_absolute() else root / x.removeprefix("./") for x in lines]
    return sorted(files)


def check_splits(data: dict, name: Any, splits: tuple[str, ...], task: str | None = None) -> None:
    """Raise DataError naming the first of `splits` (of a checked data dict) whose path is missing or has no images,
    or none of whose images has a box, or whose boxes are axis-aligned for an OBB `task` (rotated ones for a detect
    `task` are a warning: Ultralytics trains their enclosing boxes).

    Ultralytics checks only the val split when it reads the yaml; a train split without images fails only once the
    teacher has been validated, after the run directory has been filled.
    """
    for split in dict.fromkeys(splits):
        entries = data.get(split)
        if not entries:
            raise DataError(f"data={name} has no '{split}:' images.")
        for entry in entries if isinstance(entries, list) else [entries]:
            path = Path(entry)
            if not path.exists():
                raise DataError(f"data={name}: the {split} path '{path}' does not exist.")
            if not split_images({"path": data.get("path"), split: str(path)}, split):
                what = "folder" if path.is_dir() else "list"
                raise DataError(f"data={name}: the {split} {what} '{path}' has no images.")
        if (box := first_box(data, split)) is None:
            raise DataError(
                f"data={name}: no image of the {split} split has a box (its label files are empty or missing), so "
                "nothing can be learned or scored on it; check the labels/ folders beside images/."
            )
        rotated = len(box) == 9  # class + 4 corners
    if task == "obb" and not rotated:
        raise DataError(
            f"data={name} holds axis-aligned boxes ('class xc yc w h'), and the student is an OBB model: train a "
            "detect model, or convert rotated labels ('yolo-ld convert dota')."
        )
    if task == "detect" and rotated:
        LOGGER.warning(
            f"ultrald: data={name} holds rotated boxes (4 corners); a detect model learns their axis-aligned "
            "enclosing boxes. For rotated boxes train an -obb model."
        )


def first_box(data: Mapping, split: str) -> list[str] | None:
    """Return the fields of the first label line of a split (images in order), None when no image has a box."""
    for label in map(Path, img2label_paths([str(f) for f in split_images(data, split)])):
        lines = label.read_text().splitlines() if label.is_file() else []
        if box := next((x.split() for x in lines if x.strip()), None):
            return box
    return None


def check_data(data: Any, splits: tuple[str, ...], task: str | None = None) -> dict:
    """Return Ultralytics' checked data dict of `data=` (an embedded dataset's name resolved), each of `splits` having
    images; raise a one-line DataError naming the problem (ultrald's own errors, e.g. a missing extra, as they are)."""
    try:
        checked = check_det_dataset(str(resolve_data(data)))
    except UltraldError:
        raise
    except Exception as e:
        raise data_error(data, e) from e
    check_splits(checked, data, splits, task)
    return checked


def process_started(pid: int) -> float | None:
    """Return when the live process `pid` started (0.0 when hidden from us), None when it is gone or a zombie."""
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process.create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:  # another user's process: alive, its start time unknown
        return 0.0


def run_holder(save_dir: Path) -> int | None:
    """Return the pid of another live process that holds `save_dir`'s lock; None when there is no lock, or it is
    this process's or stale (its process is gone, or its pid now belongs to a process started later)."""
    try:
        lock = json.loads((Path(save_dir) / RUN_LOCK).read_text())
        pid, started = int(lock["pid"]), float(lock.get("started") or 0)
    except (OSError, ValueError, KeyError, TypeError):  # no lock, or an unreadable one: nobody to wait for
        return None
    if pid <= 0 or pid == os.getpid() or (live := process_started(pid)) is None:
        return None
    return None if live and started and abs(live - started) > 1 else pid  # a pid reused by a later process: stale


def refuse_held_run(save_dir: Path) -> None:
    """Raise RunInUseError when another live run holds `save_dir`: two runs there would overwrite each other's
    weights."""
    if (pid := run_holder(save_dir)) is not None:
        raise RunInUseError(
            f"{save_dir} is in use by another live run (pid {pid}): wait for it to end, or train into another "
            f"directory (another name=, or exist_ok=False); if no run uses it, delete {Path(save_dir) / RUN_LOCK}."
        )


def hold_run(save_dir: Path) -> Path:
    """Write `save_dir`'s lock with this process's pid (taking over a stale one) and return it; raise RunInUseError
    when another live run holds it."""
    lock = Path(save_dir) / RUN_LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"pid": os.getpid(), "started": process_started(os.getpid())}).encode()
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # exclusive: two runs starting at once
        except FileExistsError:
            refuse_held_run(save_dir)
            lock.unlink(missing_ok=True)  # stale: its run is gone
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(record)
        return lock
    refuse_held_run(save_dir)
    raise RunInUseError(f"{save_dir} is being taken by another run starting at the same time: start this one again.")


def release_run(lock: Path | None) -> None:
    """Remove a lock written by `hold_run`, if it still holds this process's pid."""
    try:
        if lock is not None and int(json.loads(lock.read_text())["pid"]) == os.getpid():
            lock.unlink()
    except (OSError, ValueError, KeyError, TypeError):
        pass
