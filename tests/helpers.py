"""Helpers shared by the test modules (import as `from helpers import ...`, like `from conftest import IMGSZ`)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import torch


def read_results(save_dir: Path) -> list[dict[str, float]]:
    """Rows of a run's results.csv as dicts of floats, keys stripped of Ultralytics' padding."""
    with open(Path(save_dir) / "results.csv") as f:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def sha256(path: Path) -> str:
    """The sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digest(root: Path) -> str:
    """Hash of every image (png) and label (txt) file's relative name and content under root."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(root).rglob("*") if p.suffix in {".png", ".txt"}):
        h.update(str(f.relative_to(root)).encode() + f.read_bytes())
    return h.hexdigest()


def save_checkpoint(model: torch.nn.Module, path: Path, train_args: dict | None = None) -> Path:
    """Save a model, trained or not, as an Ultralytics checkpoint (half precision, as Ultralytics saves) that a
    trainer or `load_teacher` can read, recording `train_args`; `model` itself is left in float32."""
    torch.save({"model": model.half(), "train_args": train_args or {}, "epoch": -1}, path)
    model.float()
    return Path(path)
