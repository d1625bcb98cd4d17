"""Synthetic shapes: a deterministic detection (and OBB) dataset drawn with OpenCV, generated once and reused.

Each image holds a few filled polygons of `CLASSES` with random size, aspect, rotation, colour and overlap, on a noisy
textured background with clutter that belongs to no class. Labels are the exact extent of what was drawn: the
axis-aligned box of the polygon (detect) or its rotated template rectangle (obb)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from ultralytics.utils import ops
from ultralytics.utils.metrics import bbox_ioa

from .common import generate_synthetic

VERSION = 1  # bump when the drawing changes, so cached datasets are regenerated
CLASSES = ("circle", "triangle", "square", "pentagon", "hexagon", "star", "cross", "arrow")


def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    """Return the n vertices of a regular polygon of radius 1."""
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack((np.cos(a), np.sin(a)), 1)


def _templates() -> dict[str, np.ndarray]:
    """Return each class as a polygon (K, 2) around the origin, inside the unit square [-1, 1]^2."""
    star = _regular(10, -np.pi / 2) * np.where(np.arange(10) % 2, 0.45, 1.0)[:, None]
    b = 0.33
    cross = np.array([-1, -b, -b, -b, -b, -1, b, -1, b, -b, 1, -b, 1, b, b, b, b, 1, -b, 1, -b, b, -1, b], float)
    arrow = np.array([(-1, -0.3), (0.2, -0.3), (0.2, -0.8), (1, 0), (0.2, 0.8), (0.2, 0.3), (-1, 0.3)], dtype=float)
    regular = [_regular(48), _regular(3, -np.pi / 2), _regular(4, np.pi / 4), _regular(5, -np.pi / 2), _regular(6)]
    polys = [*regular, star, cross.reshape(-1, 2), arrow]  # in the order of CLASSES
    return {k: v / np.abs(v).max() for k, v in zip(CLASSES, polys, strict=True)}


TEMPLATES = _templates()


@dataclass(frozen=True)
class SetSize:
    """The fields every synthetic set's config has: split sizes and the seed of its drawing."""

    n_train: int = 1000
    n_val: int = 300
    seed: int = 0


@dataclass(frozen=True)
class ShapesConfig(SetSize):
    """What to generate; the same config and seed always give the same files."""

    task: str = "detect"  # 'detect' or 'obb'
    imgsz: int = 128
    classes: int = len(CLASSES)  # draw the first `classes` of CLASSES
    objects: tuple[int, int] = (2, 8)  # objects per image (min, max)
    size: tuple[float, float] = (0.12, 0.45)  # object side as a fraction of the image side
    aspect: tuple[float, float] = (0.6, 1.6)  # width / height of the template before rotation
    max_overlap: float = 0.3  # largest IoU allowed between two objects' boxes
    noise: float = 8.0  # std of the Gaussian pixel noise
    clutter: int = 2  # distractor strokes per image (lines and arcs of no class)


def background(rng: np.random.Generator, s: int, blotch: float = 25.0, lo: float = 40, hi: float = 215) -> np.ndarray:
    """Return an (s, s, 3) float textured background: a random colour gradient with low-frequency blotches."""
    c0, c1 = rng.uniform(lo, hi, 3), rng.uniform(lo, hi, 3)
    t = np.linspace(0, 1, s)[:, None, None]
    img = np.broadcast_to(c0 * (1 - t) + c1 * t, (s, s, 3))
    img = img if rng.random() < 0.5 else img.transpose(1, 0, 2)
    return img + cv2.resize(rng.normal(0, blotch, (6, 6, 3)), (s, s), interpolation=cv2.INTER_CUBIC)


def overlap(box: np.ndarray, boxes: np.ndarray) -> float:
    """Return the largest IoU of the xyxy `box` with any of `boxes` (N, 4); 0 for none."""
    return float(bbox_ioa(box[None], boxes, iou=True).max()) if len(boxes) else 0.0


def draw_image(cfg: ShapesConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Draw one image; return it (H, W, 3) uint8 and its objects as (class, polygon) with the 4 label corners: for
    detect those of the axis-aligned box of the drawn polygon, clipped to the image; for obb those of the tight
    rectangle of the polygon in its own rotated frame, which lies wholly inside the image."""
    s = cfg.imgsz
    img = background(rng, s)
    objects, boxes = [], np.zeros((0, 4))
    for _ in range(rng.integers(cfg.objects[0], cfg.objects[1] + 1)):
        for _try in range(10):  # find a place that overlaps the others little enough
            cls = int(rng.integers(cfg.classes))
            side = rng.uniform(*cfg.size) * s
            aspect = rng.uniform(*cfg.aspect)
            half = np.array([np.sqrt(aspect), 1 / np.sqrt(aspect)]) * side / 2
            theta = rng.uniform(0, np.pi)
            rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
            centre = rng.uniform(0.05 * s, 0.95 * s, 2)
            template = TEMPLATES[CLASSES[cls]]
            (x0, y0), (x1, y1) = template.min(0), template.max(0)
            poly = template * half @ rot.T + centre
            rect = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)]) * half @ rot.T + centre  # tight, rotated
            if cfg.task == "obb" and not (0 <= rect.min() and rect.max() <= s):
                continue  # rotated labels stay whole: a clipped rectangle is no rectangle
            box = np.concatenate((poly.min(0), poly.max(0))).clip(0, s)
            if (box[2:] - box[:2]).min() < 3 or overlap(box, boxes) > cfg.max_overlap:
                continue
            color = rng.uniform(0, 255, 3)
            cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], color.tolist(), cv2.LINE_AA, shift=4)
            corners = rect if cfg.task == "obb" else box[[0, 1, 2, 1, 2, 3, 0, 3]].reshape(4, 2)
            objects.append((cls, corners))
            boxes = np.vstack((boxes, box))
            break
    for _ in range(cfg.clutter):  # thin strokes of no class
        p = rng.uniform(0, s, (2, 2))
        color, thick = rng.uniform(0, 255, 3).tolist(), int(rng.integers(1, 3))
        if rng.random() < 0.5:
            cv2.line(img, tuple(p[0].astype(int)), tuple(p[1].astype(int)), color, thick, cv2.LINE_AA)
        else:
            axes = tuple(rng.uniform(0.05 * s, 0.3 * s, 2).astype(int))
            cv2.ellipse(img, tuple(p[0].astype(int)), axes, rng.uniform(0, 180), 0, rng.uniform(60, 200), color, thick)
    img = img + rng.normal(0, cfg.noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), objects


def label_lines(objects: list[tuple[int, np.ndarray]], task: str, s: int) -> list[str]:
    """Return YOLO label lines: 'cls xc yc w h' (detect) or 'cls x1 y1 ... x4 y4' (obb), normalised by the side s."""
    lines = []
    for cls, corners in objects:
        c = corners / s
        values = c.reshape(-1) if task == "obb" else ops.xyxy2xywh(np.concatenate((c.min(0), c.max(0))))
        lines.append(f"{cls} " + " ".join(f"{v:.6f}" for v in values))
    return lines


def generate(root: str | Path, cfg: ShapesConfig = ShapesConfig()) -> Path:
    """Write the dataset under `root` (images/{train,val}, labels/{train,val}, data.yaml) and return the yaml path; a
    dataset already at `root` with the same config and generator version is reused as it is."""

    def draw(rng: np.random.Generator, split: str) -> tuple[np.ndarray, list[str]]:
        img, objects = draw_image(cfg, rng)
        return img, label_lines(objects, cfg.task, cfg.imgsz)

    meta, splits = {"version": VERSION, **asdict(cfg)}, {"train": cfg.n_train, "val": cfg.n_val}
    return generate_synthetic(root, meta, splits, draw, CLASSES[: cfg.classes], cfg.seed)


EMBEDDED = {"shapes": "detect", "shapes-obb": "obb"}  # data=<name> -> the task of the embedded set


def resolve_data(data: str | Path | None) -> str | Path | None:
    """Return the data.yaml of the embedded set `data` ('shapes', 'shapes-obb'; drawn once under Ultralytics' datasets
    dir), else `data` as it is."""
    if str(data) not in EMBEDDED:
        return data
    from ultralytics.utils import DATASETS_DIR

    return str(generate(DATASETS_DIR / f"ultrald-{data}", ShapesConfig(task=EMBEDDED[str(data)])))
