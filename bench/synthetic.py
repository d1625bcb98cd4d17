"""The benchmark's synthetic datasets, drawn offline and deterministically, generated once: `bench.py --data <name>`.

Each set is a frozen config, a `draw(cfg, rng, split) -> (image (H, W, 3) uint8 BGR, label lines)` and a `Spec` in
`SYNTHETIC`, so `--data <name>` resolves to a cached dataset (`python bench/synthetic.py NAME` prints its yaml):

- `shapes`, `shapes-obb`: ultrald's own embedded set (`ultrald/data/shapes.py`, `data=shapes`), drawn by its generator.

- `digits` (detect): ten classes of small handwritten digits (scikit-learn's bundled 8x8 digits, different writing
  samples in train and val) among strokes and letters that belong to no class.
- `crowd` (detect): crowds of five textured classes with heavy occlusion and sizes from 4 to 60 % of the side.
- `photo` (detect): five icon classes on crops of the photos bundled in scikit-learn and scikit-image, then whole-image
  albumentations (affine, perspective, blur, noise, JPEG, colour) that move the labels with the pixels.
- `crowd-obb` (obb): dense rows of elongated rotated vehicles and boats, DOTA-like, with lane lines as distractors.

scikit-learn, scikit-image and albumentations are optional (`pip install -e '.[bench]'`) and imported lazily. These
sets live here, not in the package: they exist for the benchmark.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ultrald.data.common import generate_synthetic
from ultrald.data.shapes import CLASSES as SHAPES
from ultrald.data.shapes import SetSize, ShapesConfig, background, generate, label_lines, overlap
from ultrald.errors import UltraldError


class MissingDependency(UltraldError, ImportError):
    """A synthetic dataset needs an optional package that is not installed."""


def _require(name: str, needs: tuple[tuple[str, str], ...]) -> None:
    """Import each (module, pip name) of `needs`, or raise a one-line MissingDependency naming the dataset."""
    for module, pip_name in needs:
        try:
            found = find_spec(module) is not None  # not imported: albumentations may import only once its env is set
        except (ImportError, ValueError):  # a module blocked with sys.modules[name] = None
            found = False
        if not found:
            raise MissingDependency(f"data={name} needs {pip_name}: pip install 'ultrald[bench]'")


# ---------------------------------------------------------------------------------------------------- shared helpers


def _finish(img: np.ndarray, rng: np.random.Generator, noise: tuple[float, float]) -> np.ndarray:
    """Add Gaussian pixel noise of a random std in `noise` and return the image as uint8."""
    img = img + rng.normal(0, rng.uniform(*noise), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _colour_apart(rng: np.random.Generator, ref: np.ndarray, contrast: float, tries: int = 20) -> np.ndarray:
    """Return a random colour at least `contrast` (RMS over channels) away from `ref`, so objects stay visible."""
    for _ in range(tries):
        c = rng.uniform(0, 255, 3)
        if np.sqrt(np.mean((c - ref) ** 2)) >= contrast:
            return c
    return 255 - np.asarray(ref, float)  # the far corner of the colour cube


def _frame(centre: np.ndarray, theta: float, half: np.ndarray, s: int | None = None):
    """Return the pixel window (x0, y0, x1, y1) around a rotated box and its pixel centres in box units (u, v).

    u runs along the box's first axis (rotated by `theta`), v along the second; both are -1..1 on the box's edges.
    With `s` the window is clipped to the s x s image; without, it may reach outside it.
    """
    c, sn = np.cos(theta), np.sin(theta)
    ext = np.array([abs(c) * half[0] + abs(sn) * half[1], abs(sn) * half[0] + abs(c) * half[1]])
    x0, y0 = np.floor(centre - ext).astype(int)
    x1, y1 = np.ceil(centre + ext).astype(int) + 1
    if s is not None:
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, s), min(y1, s)
    dx, dy = np.meshgrid(np.arange(x0, x1) + 0.5 - centre[0], np.arange(y0, y1) + 0.5 - centre[1])
    return (x0, y0, x1, y1), (dx * c + dy * sn) / half[0], (-dx * sn + dy * c) / half[1]


def _rect(centre: np.ndarray, theta: float, half: np.ndarray) -> np.ndarray:
    """Return the 4 corners (4, 2) of the rotated rectangle of half sides `half`."""
    c, sn = np.cos(theta), np.sin(theta)
    local = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)]) * half
    return local @ np.array([[c, sn], [-sn, c]]) + centre


# ------------------------------------------------------------------------------------------------------------ digits

DIGITS = tuple(str(d) for d in range(10))
LETTERS = "AEFHKMNRVWXYkmnwxy+#%"  # distractors that look least like any digit


@dataclass(frozen=True)
class DigitsConfig(SetSize):
    """Many small handwritten digits on clutter; the same config and seed always give the same files."""

    imgsz: int = 160
    objects: tuple[int, int] = (4, 20)  # digits per image (min, max)
    size: tuple[float, float] = (12.0, 40.0)  # digit height in pixels
    aspect: tuple[float, float] = (0.75, 1.2)  # width / height of the 8x8 cell
    rotate: float = 15.0  # largest rotation, degrees
    max_overlap: float = 0.05  # largest IoU between two digits' boxes
    contrast: tuple[float, float] = (45.0, 150.0)  # RMS colour distance of a digit from the background under it
    strokes: tuple[int, int] = (4, 16)  # distractor strokes per image
    letters: tuple[int, int] = (0, 6)  # distractor letters per image
    noise: tuple[float, float] = (2.0, 12.0)
    val_fraction: float = 0.25  # the last samples of each digit, kept for val


@lru_cache(maxsize=4)
def digit_bank(split: str, val_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the digit samples of a split: (images (N, 8, 8) 0..1, classes (N,), indices into `load_digits()`).

    Val takes the last `val_fraction` of each digit's samples in the bundled order, train the rest, so the two splits
    never share a written sample.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = []
    for c in range(10):
        idx = np.flatnonzero(d.target == c)
        cut = len(idx) - int(round(len(idx) * val_fraction))
        keep.append(idx[cut:] if split == "val" else idx[:cut])
    keep = np.sort(np.concatenate(keep))
    return d.images[keep] / 16.0, d.target[keep].astype(int), keep


def _digit_sprite(cell: np.ndarray, h: float, aspect: float, angle: float, gamma: float):
    """Warp an 8x8 digit to height `h` px, rotated `angle` degrees; return (alpha 0..1, ink box in the sprite)."""
    w = h * aspect
    side = int(np.ceil(np.hypot(w, h))) + 2
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.diag([w / 8, h / 8])
    m = np.hstack((rot, (side / 2 - 0.5 - rot @ np.array([3.5, 3.5]))[:, None]))  # cell centre -> sprite centre
    alpha = cv2.warpAffine(cell.astype(np.float32), m, (side, side), flags=cv2.INTER_CUBIC).clip(0, 1) ** gamma
    ys, xs = np.nonzero(alpha > 0.3)  # the visible ink, not the 8x8 cell
    if not len(xs):
        return alpha, None
    return alpha, np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def _clutter_strokes(img: np.ndarray, rng: np.random.Generator, n: int, reach: tuple[float, float]) -> None:
    """Draw `n` short random polylines (stroke-like distractors of no class) onto `img` in place."""
    s = img.shape[0]
    for _ in range(n):
        start = rng.uniform(0, s, 2)
        pts = start + np.cumsum(rng.normal(0, rng.uniform(*reach) / 2, (int(rng.integers(2, 5)), 2)), 0)
        pts = np.round(np.vstack((start, pts)) * 16).astype(np.int32)
        colour = rng.uniform(0, 255, 3).tolist()
        cv2.polylines(img, [pts], False, colour, int(rng.integers(1, 3)), cv2.LINE_AA, shift=4)


def draw_digits(cfg: DigitsConfig, rng: np.random.Generator, split: str = "train") -> tuple[np.ndarray, list[str]]:
    """Draw one digits image; labels are the boxes of the visible ink of each digit, all wholly inside the image."""
    cells, classes, _ = digit_bank(split, cfg.val_fraction)
    s = cfg.imgsz
    img = np.ascontiguousarray(background(rng, s, blotch=30))
    _clutter_strokes(img, rng, int(rng.integers(cfg.strokes[0], cfg.strokes[1] + 1)), (6, 40))
    for _ in range(rng.integers(cfg.letters[0], cfg.letters[1] + 1)):
        org = tuple(int(v) for v in rng.uniform(0, s - 8, 2))
        font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX]))
        ink = np.zeros((s, s), np.uint8)  # putText draws only on uint8: draw the letter as a mask and blend it
        cv2.putText(ink, LETTERS[rng.integers(len(LETTERS))], org, font, rng.uniform(0.3, 0.8), 255, 1, cv2.LINE_AA)
        a = ink[..., None] / 255
        img = img * (1 - a) + rng.uniform(0, 255, 3) * a
    objects, boxes = [], np.zeros((0, 4))
    target = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    for _try in range(30 * target):
        if len(objects) == target:
            break
        k = int(rng.integers(len(cells)))
        h, aspect, angle = rng.uniform(*cfg.size), rng.uniform(*cfg.aspect), rng.uniform(-1, 1) * cfg.rotate
        alpha, ink = _digit_sprite(cells[k], h, aspect, angle, rng.uniform(0.6, 1.5))  # gamma: thinner or bolder
        side = alpha.shape[0]
        if ink is None or side >= s:
            continue
        x0, y0 = rng.integers(-int(ink[0]), s - int(ink[2]) + 1), rng.integers(-int(ink[1]), s - int(ink[3]) + 1)
        box = ink + [x0, y0, x0, y0]
        if (box[2:] - box[:2]).min() < 3 or overlap(box, boxes) > cfg.max_overlap:
            continue
        # the sprite may hang over the edge where it has no ink: paste only its part inside the image
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, s), min(y0 + side, s)
        a = alpha[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0, None] * rng.uniform(0.8, 1.0)
        patch = img[sy0:sy1, sx0:sx1]
        colour = _colour_apart(rng, patch.mean((0, 1)), rng.uniform(*cfg.contrast))
        img[sy0:sy1, sx0:sx1] = patch * (1 - a) + colour * a
        objects.append((int(classes[k]), box))
        boxes = np.vstack((boxes, box))
    _clutter_strokes(img, rng, int(rng.integers(0, 3)), (10, 60))  # a few strokes cross digits, as pen marks do
    return _finish(img, rng, cfg.noise), label_lines([(c, b.reshape(2, 2)) for c, b in objects], "detect", s)


# ------------------------------------------------------------------------------------------------------------- crowd

CROWD = ("ball", "ring", "stripes", "checker", "blob")


@dataclass(frozen=True)
class CrowdConfig(SetSize):
    """Crowded, occluded scenes with a wide range of object scale; the same config and seed give the same files."""

    imgsz: int = 256
    objects: tuple[int, int] = (1, 40)  # objects per image that stay labelled (min, max); fewer are kept than drawn
    size: tuple[float, float] = (0.04, 0.6)  # longer side as a fraction of the image side, log-uniform
    aspect: tuple[float, float] = (0.5, 2.0)  # width / height before rotation (balls and rings: 0.8..1.25)
    cluster: float = 0.7  # probability that an object sits in one of the image's 1-3 crowds rather than anywhere
    min_visible: float = 0.3  # objects less visible than this (unoccluded in-image share) are not drawn at all
    min_inside: float = 0.5  # objects with less of their area inside the image are not drawn at all
    noise: tuple[float, float] = (2.0, 10.0)


def _crowd_paint(cls: int, u: np.ndarray, v: np.ndarray, rng: np.random.Generator, c1: np.ndarray, c2: np.ndarray):
    """Return (mask, colours (H, W, 3)) of a crowd object in its box frame (u, v in -1..1 on the box's edges)."""
    rho2 = u**2 + v**2
    one = np.ones_like(u)[..., None]
    if cls == 0:  # ball: shaded disc with a highlight
        shade = 0.55 + 0.45 * (1 - rho2)
        glint = np.exp(-((u + 0.35) ** 2 + (v + 0.35) ** 2) / 0.05)[..., None]
        return rho2 <= 1, (c1 * shade[..., None]) * (1 - 0.7 * glint) + 255 * 0.7 * glint
    if cls == 1:  # ring: an annulus; what lies under the hole stays visible
        inner = rng.uniform(0.45, 0.7)
        return (rho2 <= 1) & (rho2 >= inner**2), c1 * one
    if cls == 2:  # stripes across the box
        n = rng.uniform(3, 7)
        return (np.abs(u) <= 1) & (np.abs(v) <= 1), np.where((np.floor((u + 1) * n / 2) % 2)[..., None] > 0, c1, c2)
    if cls == 3:  # checker
        n = rng.uniform(3, 6)
        odd = (np.floor((u + 1) * n / 2) + np.floor((v + 1) * n / 2)) % 2
        return (np.abs(u) <= 1) & (np.abs(v) <= 1), np.where(odd[..., None] > 0, c1, c2)
    # blob: a wobbly outline with dots
    k = np.arange(2, 5)
    amp, phase = rng.uniform(0, 0.15, 3), rng.uniform(0, 2 * np.pi, 3)
    radius = lambda phi: 1 + (amp * np.cos(k * phi[..., None] + phase)).sum(-1)  # noqa: E731
    top = radius(np.linspace(0, 2 * np.pi, 256)).max()
    f = np.pi * rng.uniform(3, 6)
    dots = (np.sin(u * f) * np.sin(v * f) > 0.5)[..., None]
    return np.sqrt(rho2) <= radius(np.arctan2(v, u)) / top, np.where(dots, c2, c1)


def _crowd_object(cfg: CrowdConfig, rng: np.random.Generator, crowds: np.ndarray) -> dict | None:
    """Draw one crowd object candidate: class, window in the image, mask and colours there, and its depth.

    None when too little of it lies inside the image (`min_inside`).
    """
    s = cfg.imgsz
    cls = int(rng.integers(len(CROWD)))
    side = np.exp(rng.uniform(*np.log(cfg.size))) * s  # log-uniform: as many small objects as large ones
    aspect = rng.uniform(0.8, 1.25) if cls < 2 else rng.uniform(*cfg.aspect)
    half = np.array([side / 2, side / 2 / aspect]) if aspect > 1 else np.array([side / 2 * aspect, side / 2])
    if rng.random() < cfg.cluster:
        centre = crowds[rng.integers(len(crowds))] + rng.normal(0, 0.12 * s, 2)
    else:
        centre = rng.uniform(0, s, 2)
    (x0, y0, x1, y1), u, v = _frame(centre, rng.uniform(0, np.pi), half)
    c1 = rng.uniform(0, 255, 3)
    mask, rgb = _crowd_paint(cls, u, v, rng, c1, _colour_apart(rng, c1, 60))
    if rng.random() < 0.5:  # a dark rim, so two touching objects of one colour still part
        rim = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        rgb = np.where(rim[..., None], rgb * 0.35, rgb)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, s), min(y1, s)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    crop = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    m = mask[crop]
    if m.sum() < max(cfg.min_inside * mask.sum(), 4):
        return None
    depth = np.log(side) + rng.normal(0, 0.7)  # big ones mostly behind, so crowds of small ones stay in sight
    return dict(cls=cls, win=(cx0, cy0, cx1, cy1), mask=m, rgb=rgb[crop], depth=depth)


def draw_crowd(cfg: CrowdConfig, rng: np.random.Generator, split: str = "train") -> tuple[np.ndarray, list[str]]:
    """Draw one crowd image back to front.

    Labels are the full (amodal) extent of each object, clipped to the image, even where nearer objects hide it, as
    CrowdHuman's full-body boxes are (COCO's boxes are visible-extent). Every labelled object shows at least
    `min_visible` of its in-image area and has at least `min_inside` of its area inside the image; objects that would
    not are left out of the image as well as the labels, so nothing visible goes unlabelled.
    """
    s = cfg.imgsz
    img = background(rng, s)
    crowds = rng.uniform(0.15 * s, 0.85 * s, (int(rng.integers(1, 4)), 2))
    drawn = []
    for _ in range(rng.integers(cfg.objects[0], cfg.objects[1] + 1)):
        for _try in range(10):  # until one lies inside enough
            o = _crowd_object(cfg, rng, crowds)
            if o is not None:
                drawn.append(o)
                break
    drawn.sort(key=lambda o: -o["depth"])
    # who owns each pixel once everything is drawn; leaving an object out only uncovers the others
    owner = np.full((s, s), -1, np.int32)
    for i, o in enumerate(drawn):
        x0, y0, x1, y1 = o["win"]
        owner[y0:y1, x0:x1][o["mask"]] = i
    visible = np.bincount(owner[owner >= 0], minlength=len(drawn))
    objects = []
    for i, o in enumerate(drawn):
        x0, y0, x1, y1 = o["win"]
        ys, xs = np.nonzero(o["mask"])
        box = np.array([xs.min() + x0, ys.min() + y0, xs.max() + x0 + 1, ys.max() + y0 + 1], float)
        if visible[i] < cfg.min_visible * len(xs) or (box[2:] - box[:2]).min() < 2:
            continue
        img[y0:y1, x0:x1][o["mask"]] = o["rgb"][o["mask"]]
        objects.append((o["cls"], box))
    img = cv2.GaussianBlur(img, (0, 0), 0.6)  # soften the binary edges a little
    return _finish(img, rng, cfg.noise), label_lines([(c, b.reshape(2, 2)) for c, b in objects], "detect", s)


# ---------------------------------------------------------------------------------------------------------- crowd-obb

VEHICLES = ("car", "truck", "boat", "container")


@dataclass(frozen=True)
class CrowdObbConfig(SetSize):
    """Dense rows of elongated rotated objects (parking lots, harbours); the same config and seed, the same files."""

    imgsz: int = 256
    objects: tuple[int, int] = (4, 60)  # objects per image (min, max)
    length: tuple[float, float] = (0.08, 0.3)  # long side as a fraction of the image side
    aspect: tuple[float, float] = (1.8, 4.0)  # long / short side
    groups: tuple[int, int] = (1, 4)  # rows of aligned, mostly same-class objects per image
    gap: tuple[float, float] = (1.5, 5.0)  # pixels between neighbours in a row
    lines: tuple[int, int] = (0, 6)  # lane lines per image (long thin distractors of no class)
    noise: tuple[float, float] = (2.0, 8.0)


def _vehicle_paint(cls: int, u: np.ndarray, v: np.ndarray, half: np.ndarray, rng: np.random.Generator):
    """Return (mask, colours) of a top-down object heading along +u in its box frame (u, v in -1..1)."""
    inside = (np.abs(u) <= 1) & (np.abs(v) <= 1)
    body = rng.uniform(20, 235, 3)
    dark = rng.uniform(15, 60) * np.ones(3)
    rgb = np.broadcast_to(body, u.shape + (3,)).copy()
    if cls == 0:  # car: rounded corners, windscreen and rear window
        r = 0.35 * half[1]
        du, dv = (np.abs(u) - 1) * half[0] + r, (np.abs(v) - 1) * half[1] + r
        mask = inside & ~((du > 0) & (dv > 0) & (du**2 + dv**2 > r**2))
        rgb[((u > 0.25) & (u < 0.5) | (u > -0.75) & (u < -0.6)) & (np.abs(v) < 0.8)] = dark
        rgb[(u >= -0.6) & (u <= 0.25) & (np.abs(v) < 0.7)] = body * 0.8 + 40
        return mask, rgb
    if cls == 1:  # truck: a cab, a gap, and a lined trailer of another colour
        mask = inside & ~((u > 0.5) & (u < 0.6))
        trailer = u <= 0.5
        rgb[trailer] = _colour_apart(rng, body, 50)
        rgb[trailer & (np.abs(np.abs(v) - 0.5) < 0.08)] *= 0.6
        rgb[(u > 0.75) & (u < 0.88) & (np.abs(v) < 0.85)] = dark
        return mask, rgb
    if cls == 2:  # boat: a pointed bow and a cabin
        mask = inside & ((u <= 0.45) | (np.abs(v) <= (1 - u) / 0.55))
        rgb[:] = rng.uniform(180, 250) * np.ones(3) * rng.uniform(0.85, 1, 3)
        rgb[(u > -0.6) & (u < 0.05) & (np.abs(v) < 0.55)] = body
        rim = inside & ((np.abs(v) > 0.85) | (u < -0.9))
        rgb[rim] *= 0.6
        return mask, rgb
    # container: ribbed box
    n = rng.uniform(8, 14)
    ribs = (np.floor((u + 1) * n) % 2) > 0
    rgb[ribs] *= 0.8
    return inside, rgb


def draw_crowd_obb(cfg: CrowdObbConfig, rng: np.random.Generator, split: str = "train") -> tuple[np.ndarray, list[str]]:
    """Draw one crowd-obb image; labels are the objects' rotated rectangles, wholly inside the image, none overlap."""
    s = cfg.imgsz
    tone = rng.uniform(60, 150) + rng.normal(0, 15, 3)  # asphalt, concrete or water
    img = np.ascontiguousarray(background(rng, s, blotch=15, lo=0, hi=1) * 0.4 + tone)
    img += cv2.GaussianBlur(rng.normal(0, 12, (s, s)), (0, 0), 1.0)[..., None]
    for _ in range(rng.integers(cfg.lines[0], cfg.lines[1] + 1)):  # lane lines under the objects
        p, a = rng.uniform(0, s, 2), rng.uniform(0, np.pi)
        d = np.array([np.cos(a), np.sin(a)]) * 2 * s
        colour = [rng.uniform(200, 250)] * 3 if rng.random() < 0.6 else [40, 200, 230]  # white or yellow (BGR)
        q0, q1 = np.round((p - d) * 16).astype(int), np.round((p + d) * 16).astype(int)
        cv2.line(img, tuple(q0), tuple(q1), colour, int(rng.integers(1, 3)), cv2.LINE_AA, shift=4)
    occupied = np.zeros((s, s), np.uint8)
    objects = []

    def place(cls: int, centre: np.ndarray, theta: float, half: np.ndarray) -> bool:
        """Draw one object where it is wholly inside and overlaps nothing; return whether it was placed."""
        corners = _rect(centre, theta, half)
        if corners.min() < 1 or corners.max() > s - 1 or half[1] < 1.5:
            return False
        footprint = np.zeros((s, s), np.uint8)
        cv2.fillConvexPoly(footprint, np.round(corners).astype(np.int32), 1)
        if (footprint & occupied).any():
            return False
        occupied[:] |= footprint
        (x0, y0, x1, y1), u, v = _frame(centre, theta, half, s)
        mask, rgb = _vehicle_paint(cls, u, v, half, rng)
        img[y0:y1, x0:x1][mask] = rgb[mask]
        objects.append((cls, corners))
        return True

    target = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    for _ in range(rng.integers(cfg.groups[0], cfg.groups[1] + 1)):  # rows: aligned neighbours, like parked cars
        cls, theta = int(rng.integers(len(VEHICLES))), rng.uniform(0, np.pi)
        length = rng.uniform(*cfg.length) * s
        width = length / rng.uniform(*cfg.aspect)
        axis, across = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])
        start, step = rng.uniform(0.1 * s, 0.9 * s, 2), width + rng.uniform(*cfg.gap)
        for row in range(1 + (rng.random() < 0.4)):
            for j in range(int(rng.integers(2, 13))):
                if len(objects) >= target:
                    break
                half = np.array([length, width]) * rng.uniform(0.92, 1.08, 2) / 2
                centre = start + across * j * step + axis * (row * (length + 2 * step) + rng.normal(0, 0.04 * length))
                c = cls if rng.random() < 0.8 else int(rng.integers(len(VEHICLES)))
                place(c, centre, theta + rng.normal(0, 0.03), half)
    for _try in range(20 * target):  # the rest scattered
        if len(objects) >= target:
            break
        length = rng.uniform(*cfg.length) * s
        half = np.array([length, length / rng.uniform(*cfg.aspect)]) / 2
        place(int(rng.integers(len(VEHICLES))), rng.uniform(0, s, 2), rng.uniform(0, np.pi), half)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    return _finish(img, rng, cfg.noise), label_lines(objects, "obb", s)


# ------------------------------------------------------------------------------------------------------------- photo

ICONS = ("star", "heart", "ring", "sticker", "bolt")
# photos in the scikit-learn and scikit-image wheels that load without pooch; coins, colorwheel, logo and the like are
# left out, their discs and shapes would be unlabelled look-alikes of the icons
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
SKIMAGE_GREY = ("camera", "brick", "grass", "gravel", "moon")


@dataclass(frozen=True)
class PhotoConfig(SetSize):
    """Icons on photographic backgrounds with whole-image augmentation; the same config and seed give the same files."""

    imgsz: int = 320
    objects: tuple[int, int] = (1, 12)  # icons per image (min, max)
    size: tuple[float, float] = (0.06, 0.35)  # icon side as a fraction of the image side
    aspect: tuple[float, float] = (0.7, 1.4)  # width / height before rotation
    max_overlap: float = 0.15  # largest IoU between two icons' boxes (before the whole-image transform)
    opacity: tuple[float, float] = (0.7, 1.0)
    geometric: float = 0.5  # probability of each whole-image affine and perspective transform


@lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    """Return the bundled photos as BGR uint8 arrays (colour ones, then grey ones as 3 channels)."""
    from skimage import data
    from sklearn.datasets import load_sample_image

    out = [cv2.cvtColor(load_sample_image(f), cv2.COLOR_RGB2BGR) for f in SKLEARN_PHOTOS]
    out += [cv2.cvtColor(getattr(data, n)()[..., :3], cv2.COLOR_RGB2BGR) for n in SKIMAGE_PHOTOS]
    out += [cv2.cvtColor(getattr(data, n)(), cv2.COLOR_GRAY2BGR) for n in SKIMAGE_GREY]
    return tuple(np.ascontiguousarray(p) for p in out)


def _photo_crop(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Return a random crop of a random bundled photo, resized to w x h, randomly flipped (float)."""
    pool = photos()
    p = pool[rng.integers(len(pool))]
    side = min(p.shape[:2]) * rng.uniform(0.3, 1.0)
    cw, ch = side * np.sqrt(w / h), side * np.sqrt(h / w)
    cw, ch = min(cw, p.shape[1]), min(ch, p.shape[0])
    x0, y0 = rng.uniform(0, p.shape[1] - cw), rng.uniform(0, p.shape[0] - ch)
    crop = p[int(y0) : int(y0 + ch), int(x0) : int(x0 + cw)]
    crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.3:
        crop = crop[::-1]
    return crop.astype(float)


def _icon_outline(cls: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Return an icon's outline (K, 2) in [-1, 1]^2 and its hole radius (0 for none)."""
    if cls == 0:  # star
        a = -np.pi / 2 + 2 * np.pi * np.arange(10) / 10
        r = np.where(np.arange(10) % 2, rng.uniform(0.4, 0.55), 1.0)
        poly = np.stack((np.cos(a) * r, np.sin(a) * r), 1)
    elif cls == 1:  # heart
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        poly = np.stack((16 * np.sin(t) ** 3, -y), 1)
    elif cls in (2, 3):  # ring, sticker: circles
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        poly = np.stack((np.cos(t), np.sin(t)), 1)
    else:  # bolt
        poly = np.array([(0.15, -1), (-0.55, 0.15), (-0.05, 0.15), (-0.3, 1), (0.55, -0.25), (0.05, -0.25), (0.45, -1)])
    poly = poly - (poly.min(0) + poly.max(0)) / 2
    return poly / np.abs(poly).max(), rng.uniform(0.45, 0.7) if cls == 2 else 0.0


@lru_cache(maxsize=4)
def _photo_pipeline(cfg: PhotoConfig):
    """Return the albumentations pipeline of whole-image transforms; keypoints carry the icons' outlines."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network
    import albumentations as A

    s, g = cfg.imgsz, cfg.geometric
    blurs = [A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7)), A.Defocus(radius=(1, 3))]
    # fit_output keeps every pixel in frame (nothing labelled is cut off); replicated edges are background, as icons
    # keep a margin from the border
    return A.Compose(
        [
            A.Affine(rotate=(-12, 12), shear=(-6, 6), fit_output=True, border_mode=cv2.BORDER_REPLICATE, p=g),
            A.Perspective(scale=(0.02, 0.07), fit_output=True, border_mode=cv2.BORDER_REPLICATE, p=g),
            A.Resize(s, s),
            A.OneOf(blurs, p=0.4),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.4, hue=0.05, p=0.8),
            A.RandomGamma(p=0.3),
            A.GaussNoise(std_range=(0.02, 0.08), p=0.5),
            A.ISONoise(p=0.2),
            A.ImageCompression(quality_range=(30, 90), p=0.6),
        ],
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
        seed=0,
    )


def _icon_fill(cls: int, rng: np.random.Generator, under: np.ndarray, shape: np.ndarray, centre, corner, s: int):
    """Return the colours (h, w, 3) of an icon over the image window `under`: a sticker (class 3) is a photo disc in
    a light rim (`shape`, the icon's outline around its centre, scaled in), the others flat or a linear gradient
    clear of the photo beneath."""
    (h, w), (x0, y0) = under.shape[:2], corner
    fill = np.empty((h, w, 3))
    if cls == 3:
        fill[:] = rng.uniform(200, 255, 3)
        disc = np.zeros((s, s), np.uint8)
        inner = np.round((shape * rng.uniform(0.75, 0.9) + centre) * 16).astype(np.int32)
        cv2.fillPoly(disc, [inner], 255, cv2.LINE_AA, shift=4)
        d = disc[y0 : y0 + h, x0 : x0 + w, None] / 255
        return fill * (1 - d) + _photo_crop(rng, w, h) * d
    c0 = _colour_apart(rng, under.mean((0, 1)), 60)
    c1 = c0 if rng.random() < 0.5 else rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    fill[:] = c0 * (1 - t) + c1 * t
    return fill


def draw_photo(cfg: PhotoConfig, rng: np.random.Generator, split: str = "train") -> tuple[np.ndarray, list[str]]:
    """Draw one photo image; labels are the boxes of each icon's outline after the whole-image transform.

    The outline's vertices travel through albumentations as keypoints, so a box stays the extent of the warped icon
    under rotation and perspective (warping a box's corners, as bbox targets do, would loosen it). Drop shadows are
    not part of a box.
    """
    s = cfg.imgsz
    img = _photo_crop(rng, s, s)
    outlines, boxes, classes = [], np.zeros((0, 4)), []
    target = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    for _try in range(30 * target):
        if len(classes) == target:
            break
        cls = int(rng.integers(len(ICONS)))
        poly, hole = _icon_outline(cls, rng)
        side, aspect, theta = rng.uniform(*cfg.size) * s, rng.uniform(*cfg.aspect), rng.uniform(-0.6, 0.6)
        half = np.array([np.sqrt(aspect), 1 / np.sqrt(aspect)]) * side / 2
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        centre = rng.uniform(0, s, 2)
        outline = poly * half @ rot.T + centre
        box = np.concatenate((outline.min(0), outline.max(0)))
        if box.min() < 3 or box.max() > s - 3 or overlap(box, boxes) > cfg.max_overlap:
            continue
        alpha = np.zeros((s, s), np.uint8)
        cv2.fillPoly(alpha, [np.round(outline * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        if hole:
            inner = np.round((poly * hole * half @ rot.T + centre) * 16).astype(np.int32)
            cv2.fillPoly(alpha, [inner], 0, cv2.LINE_AA, shift=4)
        a = alpha.astype(float)[..., None] / 255
        if rng.random() < 0.6:  # drop shadow
            shift = np.float32([[1, 0, rng.uniform(-6, 6)], [0, 1, rng.uniform(1, 6)]])
            shadow = cv2.GaussianBlur(cv2.warpAffine(alpha, shift, (s, s)), (0, 0), rng.uniform(1, 3))
            img *= 1 - shadow.astype(float)[..., None] / 255 * rng.uniform(0.3, 0.6)
        x0, y0, x1, y1 = int(box[0]), int(box[1]), int(np.ceil(box[2])), int(np.ceil(box[3]))
        fill = _icon_fill(cls, rng, img[y0:y1, x0:x1], poly * half @ rot.T, centre, (x0, y0), s)
        a = a[y0:y1, x0:x1] * rng.uniform(*cfg.opacity)
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + fill * a
        outlines.append(outline)
        boxes = np.vstack((boxes, box))
        classes.append(cls)
    pipe = _photo_pipeline(cfg)
    pipe.set_random_seed(int(rng.integers(2**31)))
    points = np.concatenate(outlines) if outlines else np.zeros((0, 2))
    out = pipe(image=np.clip(img, 0, 255).astype(np.uint8), keypoints=points)
    warped, ends = np.asarray(out["keypoints"])[:, :2], np.cumsum([len(o) for o in outlines])
    objects = []
    for cls, pts in zip(classes, np.split(warped, ends[:-1]) if outlines else []):
        box = np.concatenate((pts.min(0), pts.max(0))).clip(0, s)
        if (box[2:] - box[:2]).min() >= 2:
            objects.append((cls, box))
    return np.ascontiguousarray(out["image"]), label_lines([(c, b.reshape(2, 2)) for c, b in objects], "detect", s)


# ---------------------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Spec:
    """A registered synthetic dataset: its task, default config, class names, draw function and optional needs."""

    task: str  # 'detect' or 'obb'
    config: Any  # a frozen config dataclass with n_train, n_val, imgsz, objects and seed
    names: tuple[str, ...]
    draw: Callable[[Any, np.random.Generator, str], tuple[np.ndarray, list[str]]] | None  # None: ultrald's shapes
    needs: tuple[tuple[str, str], ...] = ()  # (module, pip name) of optional packages
    version: int = 1  # bump when the drawing changes, so cached datasets are regenerated


SKLEARN, SKIMAGE, ALBUMENTATIONS = ("sklearn", "scikit-learn"), ("skimage", "scikit-image"), ("albumentations",) * 2
# --data <name> -> the dataset; shapes and shapes-obb are ultrald's own (its generator and cache, draw=None here)
SYNTHETIC: dict[str, Spec] = {
    "shapes": Spec("detect", ShapesConfig(task="detect"), SHAPES, None),
    "shapes-obb": Spec("obb", ShapesConfig(task="obb"), SHAPES, None),
    "digits": Spec("detect", DigitsConfig(), DIGITS, draw_digits, (SKLEARN,)),
    "crowd": Spec("detect", CrowdConfig(), CROWD, draw_crowd),
    "photo": Spec("detect", PhotoConfig(), ICONS, draw_photo, (SKLEARN, SKIMAGE, ALBUMENTATIONS)),
    "crowd-obb": Spec("obb", CrowdObbConfig(), VEHICLES, draw_crowd_obb),
}


def config_of(name: str, **overrides) -> Any:
    """Return the config of the registered set `name` with `overrides` replacing its fields (lists become tuples)."""
    if name not in SYNTHETIC:
        raise ValueError(f"unknown synthetic dataset {name!r}; known: {', '.join(SYNTHETIC)}")
    return replace(SYNTHETIC[name].config, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})


def generate_named(name: str, root: str | Path, **overrides) -> Path:
    """Write the registered set `name` under `root` (reused when already there) and return its data.yaml.

    `overrides` replace config fields, e.g. `n_train=6`. Raises MissingDependency when an optional package is missing.
    """
    cfg, spec = config_of(name, **overrides), SYNTHETIC[name]
    if spec.draw is None:
        return generate(root, cfg)
    _require(name, spec.needs)

    def draw(rng: np.random.Generator, split: str) -> tuple[np.ndarray, list[str]]:
        return spec.draw(cfg, rng, split)

    meta = {"name": name, "task": spec.task, "version": spec.version, **asdict(cfg)}
    names = spec.names[: getattr(cfg, "classes", None)]  # shapes can draw only its first classes
    return generate_synthetic(root, meta, {"train": cfg.n_train, "val": cfg.n_val}, draw, names, cfg.seed)


def resolve_data(data: str | Path | None) -> str | Path | None:
    """Return the data.yaml of the set `data` (generated once under Ultralytics' datasets dir), else `data` as is."""
    if str(data) not in SYNTHETIC:
        return data
    from ultralytics.utils import DATASETS_DIR

    return str(generate_named(str(data), DATASETS_DIR / f"ultrald-{data}"))


if __name__ == "__main__":
    import sys

    print(resolve_data(sys.argv[1] if len(sys.argv) > 1 else "shapes"))
