"""DOTA v1.0/v1.5 (images + labelTxt) -> Ultralytics OBB dataset, split into overlapping patches that remember where
they came from.

    yolo-ld convert dota /data/DOTA datasets/DOTAv1 --version 1.0 --size 1024 --gap 200 --rates 1.0

Input layouts (per split train, val, test; test has no labels), detected in this order:
    <root>/<split>/images/*.png  + <root>/<split>/labelTxt/*.txt     as DOTA is distributed, and the DOTA devkit's
    <root>/images/<split>/*.png  + <root>/labelTxt/<split>/*.txt     (or labels/<split>_original, Ultralytics' layout)
For v1.5 the folders labelTxt-v1.5/DOTA-v1.5_<split> (as its zips extract) are tried before labelTxt; --labels names
another folder (relative to the split folder, '{split}' is replaced). Images may be png, jpg or tif.

Output: images/<split>/<patch>.png, labels/<split>/<patch>.txt ('cls x1 y1 ... x4 y4', normalised), patches.json and
data.yaml, which also records where the original annotations are (what `metric=dota` evaluates against).

Splitting follows the DOTA devkit's ImgSplit: each image is resized by each rate, then cut into size x size windows
`gap` pixels apart, the last one of each row and column flush with the border. A patch is named
`<image>__<rate>__<x>___<y>` (x, y: its offset in the resized image), as the devkit names them, and patches.json
records the same (split -> patch -> [image, rate, x, y]). An object is written into a patch when at least `iof` of its
area lies in the patch; when it is cut, its label is the minimum-area rectangle of the part inside (the rectangle
Ultralytics fits to any label polygon), with corners beyond the border moved onto it, and its points ordered like
the original's. Cut objects below `iof` are left out of that patch (a sliver is no training target). `--size 0`
converts without splitting (images linked, labels clipped to the image, no patches.json).

Where this differs from the devkit's ImgSplit, on purpose: labels keep float coordinates (it truncates them to
integers and clamps them to [1, size]); an object cut below `iof` is left out (it writes it with difficult '2', which
YOLO labels cannot carry); a 5-point cut polygon is not collapsed into a quadrilateral, and 3- or 6+-point ones are
not dropped (every cut is refitted as above); border patches are not padded to `size` (labels are normalised to the
patch's own size); objects are clipped to the whole patch (its clipping box stops one pixel short of the image's
last column and row); `iof` is inclusive (it keeps IoF > 0.7, Ultralytics' split_dota IoF >= 0.7).

Why not Ultralytics' own tools: `convert_dota_to_yolo_obb` takes png only, a fixed 18-class map (any other name
raises), reads every image with cv2 for its size and keeps difficult objects without a choice; `split_dota` re-encodes
patches as JPEG, keeps cut objects unclipped, crops multi-scale windows without resizing, and nothing merges or
evaluates on full images. Here names follow the version, difficult objects are an option (kept by default, as
Ultralytics and mmrotate train), patches stay png, and the evaluation side lives in ultrald.eval.dota.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import shapely
from ultralytics.utils import LOGGER, TQDM, YAML

DOTA_CLASSES = {
    "1.0": (
        "plane",
        "ship",
        "storage-tank",
        "baseball-diamond",
        "tennis-court",
        "basketball-court",
        "ground-track-field",
        "harbor",
        "bridge",
        "large-vehicle",
        "small-vehicle",
        "helicopter",
        "roundabout",
        "soccer-ball-field",
        "swimming-pool",
    ),
}
DOTA_CLASSES["1.5"] = (*DOTA_CLASSES["1.0"], "container-crane")
NAME_STYLES = ("dota", "ultralytics")  # 'storage-tank' (DOTA's files) or 'storage tank' (Ultralytics' DOTA yamls)
HEADER_KEYS = ("imagesource", "gsd")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MIN_AREA = 1.0  # px^2: a polygon with less area is degenerate
PATCHES = "patches.json"
PROBLEMS = "problems.txt"
PATCH_NAME = re.compile(r"^(?P<image>.+)__(?P<rate>\d+(?:\.\d+)?)__(?P<x>\d+)___(?P<y>\d+)$")
SPLITS = ("train", "val", "test")
LINE_PROBLEMS = ("wrong count", "non-numeric", "unknown class", "degenerate")  # what parse_dota_txt skips
YAML_HEADER = """\
# Written by 'yolo-ld convert dota'. Ultralytics reads path/train/val/test/names; ultrald's DOTA evaluation
# ('yolo-ld val ... metric=dota', and the trainer's fitness with metric=dota) also reads:
#   annotations:  split -> the folder of the original full-image labelTxt files (difficult flags included)
#   patches:      the json of split -> patch name -> [image, rate, x, y] (absent when the images were not split)
#   dota_version, dota_root, split (the settings), summary (what the conversion wrote, cut and skipped)
"""


@dataclass(frozen=True)
class DOTAObject:
    """One DOTA object: 8 polygon coordinates x1 y1 ... x4 y4 in pixels, class name, difficult flag."""

    poly: tuple[float, ...]
    name: str
    difficult: bool

    @property
    def points(self) -> np.ndarray:
        """The polygon as a (4, 2) float64 array."""
        return np.asarray(self.poly, dtype=np.float64).reshape(4, 2)


@dataclass(frozen=True)
class Patch:
    """Where a patch comes from: the image stem, the scale rate and the patch's x, y offset in the scaled image."""

    image: str
    rate: float
    x: int
    y: int

    @property
    def name(self) -> str:
        """The devkit-style patch name '<image>__<rate>__<x>___<y>'."""
        return patch_name(self.image, self.rate, self.x, self.y)


def patch_name(image: str, rate: float, x: int, y: int) -> str:
    """Return the patch name '<image>__<rate>__<x>___<y>' (rate 1.0 is written '1', 0.5 '0.5')."""
    return f"{image}__{rate:g}__{int(x)}___{int(y)}"


def parse_patch_name(name: str) -> Patch | None:
    """Return the Patch that a name '<image>__<a>__<x>___<y>' describes, or None when it is not one.

    `a` <= 10 is the DOTA devkit's scale rate. A larger `a` is the window size of Ultralytics' split_dota, which cuts
    its windows from the unscaled image: rate 1.
    """
    name = Path(name).name
    m = PATCH_NAME.match(name) or PATCH_NAME.match(Path(name).stem)  # with or without the file extension
    if m is None:
        return None
    rate = float(m["rate"])
    return Patch(m["image"], rate if 0 < rate <= 10 else 1.0, int(m["x"]), int(m["y"]))


def canonical_name(name: str) -> str:
    """Return a class name in DOTA's spelling: lower case, hyphens for spaces and underscores ('Storage tank')."""
    return "-".join(name.strip().lower().replace("_", " ").split())


def class_names(version: str = "1.0", style: str = "dota") -> tuple[str, ...]:
    """Return the classes of a DOTA version in their official order, hyphenated ('dota') or spaced ('ultralytics')."""
    if version not in DOTA_CLASSES:
        raise ValueError(f"DOTA version '{version}' is not one of {list(DOTA_CLASSES)}.")
    if style not in NAME_STYLES:
        raise ValueError(f"class name style '{style}' is not one of {list(NAME_STYLES)}.")
    names = DOTA_CLASSES[version]
    return names if style == "dota" else tuple(n.replace("-", " ") for n in names)


def polygon(coords) -> shapely.Polygon:
    """Return the shapely polygon of 8 coordinates; a self-intersecting one (points out of order) as its convex hull."""
    p = shapely.Polygon(np.asarray(coords, dtype=np.float64).reshape(-1, 2))
    return p if p.is_valid else p.convex_hull


def parse_dota_txt(
    file: str | Path, classes: tuple[str, ...] | None = None
) -> tuple[list[DOTAObject], dict[str, str], list[tuple[str, str]]]:
    """Parse a DOTA annotation file: 'x1 y1 x2 y2 x3 y3 x4 y4 class difficult' lines after optional header lines.

    Header lines 'imagesource:...' and 'gsd:...' are returned as a dict. A line without `difficult` (9 fields) is not
    difficult, as in the devkit. Malformed lines are skipped and returned as problems (kind, 'file:line: reason'):
    'wrong count' (not 9 or 10 fields), 'non-numeric' (a coordinate or the flag is not a finite number), 'unknown
    class' (not in `classes`, compared in DOTA's spelling) and 'degenerate' (less than MIN_AREA px^2 of area).

    Args:
        file (str | Path): The labelTxt file.
        classes (tuple[str, ...], optional): Known class names; objects get the name as spelled here. None: any.

    Returns:
        (tuple): objects (list[DOTAObject]), header (dict[str, str]), problems (list[tuple[str, str]]).
    """
    known = {canonical_name(c): c for c in classes} if classes else None
    objects, header, problems = [], {}, []
    text = Path(file).read_text(encoding="utf-8-sig", errors="replace")
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in HEADER_KEYS:
            header[key.strip().lower()] = value.strip()
            continue
        where, shown = f"{file}:{n}", line if len(line) <= 100 else line[:97] + "..."
        fields = line.split()
        if len(fields) not in {9, 10}:
            problems.append(
                ("wrong count", f"{where}: {len(fields)} fields, not 8 coordinates + class [+ difficult]: '{shown}'")
            )
            continue
        try:
            coords = [float(v) for v in fields[:8]]
            difficult = float(fields[9]) if len(fields) == 10 else 0.0
        except ValueError:
            problems.append(("non-numeric", f"{where}: a coordinate or the difficult flag is not a number: '{shown}'"))
            continue
        if not np.isfinite([*coords, difficult]).all():
            problems.append(("non-numeric", f"{where}: a coordinate or the difficult flag is not finite: '{shown}'"))
            continue
        name = fields[8]
        if known is not None:
            if canonical_name(name) not in known:
                problems.append(("unknown class", f"{where}: class '{name}' is not one of the {len(known)} classes"))
                continue
            name = known[canonical_name(name)]
        area = polygon(coords).area
        if area < MIN_AREA:
            problems.append(("degenerate", f"{where}: the polygon has {area:.3g} px^2 of area: '{shown}'"))
            continue
        objects.append(DOTAObject(tuple(coords), name, difficult != 0))
    return objects, header, problems


def windows(width: int, height: int, size: int, gap: int) -> list[tuple[int, int, int, int]]:
    """Return the devkit's patch windows (x0, y0, x1, y1) over a width x height image, x-major.

    Windows start every size - gap pixels; the last of each row and column is flush with the border; a side shorter
    than `size` gets one window of its length (patches are not padded).
    """
    if not 0 <= gap < size:
        raise ValueError(f"the gap ({gap}) must be at least 0 and less than the patch size ({size}).")

    def starts(n: int) -> list[int]:
        return [0] if n <= size else [*range(0, n - size, size - gap), n - size]

    return [(x, y, min(x + size, width), min(y + size, height)) for x in starts(width) for y in starts(height)]


def min_area_rect(points: np.ndarray) -> np.ndarray | None:
    """Return the 4 corners (4, 2) of the minimum-area rectangle around `points` (K, 2), or None when they are flat.

    Float64 and exact: the best rectangle has a side on an edge of the convex hull, so every hull edge is tried (the
    first of equal areas wins). cv2.minAreaRect does the same in float32.
    """
    hull = shapely.MultiPoint(np.asarray(points, dtype=np.float64)).convex_hull
    if not isinstance(hull, shapely.Polygon) or hull.area <= 0:
        return None
    h = np.asarray(hull.exterior.coords)[:-1]
    edges = np.roll(h, -1, 0) - h
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    c, s = np.cos(angles), np.sin(angles)
    rot = np.stack((np.stack((c, s), -1), np.stack((-s, c), -1)), 1)  # (E, 2, 2): rotate each edge onto the x axis
    q = np.einsum("eij,kj->eki", rot, h)  # hull in each edge's frame
    lo, hi = q.min(1), q.max(1)
    best = int(np.argmin(np.prod(hi - lo, 1)))
    (x0, y0), (x1, y1) = lo[best], hi[best]
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)]) @ rot[best]  # back to image axes


def signed_area(points: np.ndarray) -> float:
    """Return the shoelace area of a (K, 2) polygon: positive when clockwise in image coordinates (y down)."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def order_like(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Return the 4 `points` in the winding of `reference`, starting at the point that best fits its first point.

    DOTA's first point marks the object's head; of the 4 cyclic starts, the one with the smallest sum of squared
    distances to the reference points is kept.
    """
    if signed_area(points) * signed_area(reference) < 0:
        points = points[::-1]
    costs = [((np.roll(points, -k, 0) - reference) ** 2).sum() for k in range(4)]
    return np.roll(points, -int(np.argmin(costs)), 0)


def clip_object(
    points: np.ndarray, window: tuple[float, float, float, float], iof: float = 0.7
) -> tuple[np.ndarray | None, str]:
    """Return an object's 4 points (4, 2) in the window's coordinates and how it fits: inside, clipped, cut or outside.

    inside: all points lie in the window, written as they are. clipped: at least `iof` of its area (intersection
    over its own area) is inside; the points are the minimum-area rectangle of the part inside, corners beyond the
    window moved onto its border, ordered like the original. cut (less than `iof` inside) and outside give None.
    """
    x0, y0, x1, y1 = window
    offset = np.array((x0, y0), dtype=np.float64)
    if ((points >= offset) & (points <= (x1, y1))).all():
        return points - offset, "inside"
    geometry = polygon(points)
    inside = geometry.intersection(shapely.box(x0, y0, x1, y1))
    fraction = inside.area / geometry.area if geometry.area > 0 else 0.0
    if fraction <= 0:
        return None, "outside"
    rect = min_area_rect(shapely.get_coordinates(inside)) if fraction >= iof else None
    if rect is None:
        return None, "cut"
    rect = np.clip(rect, offset, (x1, y1))
    return order_like(rect, points) - offset, "clipped"


def label_line(cls: int, points: np.ndarray, width: float, height: float) -> str:
    """Return the Ultralytics OBB label line 'cls x1 y1 ... x4 y4' of (4, 2) pixel points in a width x height image."""
    xy = np.clip(np.asarray(points, dtype=np.float64) / (width, height), 0.0, 1.0)
    return f"{cls} " + " ".join(f"{v:.6f}" for v in xy.ravel())


def image_size(file: Path) -> tuple[int, int] | None:
    """Return an image's (width, height) from its header (PIL, no decoding), or None when it cannot be read."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # DOTA images reach 20000 x 20000
            try:
                with Image.open(file) as im:
                    return im.size
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except OSError:
        return None


@dataclass(frozen=True)
class SplitSettings:
    """How images are split: patch size (0: not split), gap, scale rates, IoF to keep a cut object, image format."""

    size: int = 1024
    gap: int = 200
    rates: tuple[float, ...] = (1.0,)
    iof: float = 0.7
    ext: str = "png"
    drop_difficult: bool = False
    drop_empty: bool = False  # train only: write no patch without objects
    copy: bool = False  # not split: copy the images instead of symlinking them


class Problems:
    """Count skipped lines and files by kind, log the first few of each kind, and keep every message for a report."""

    def __init__(self, limit: int = 5):
        """Log at most `limit` messages of each kind; all are counted and kept."""
        self.counts: Counter = Counter()
        self.messages: list[str] = []
        self.limit = limit

    def __call__(self, kind: str, message: str) -> None:
        """Count one problem of `kind`; log `message` for the first `limit` of them."""
        self.counts[kind] += 1
        self.messages.append(f"[{kind}] {message}")
        if self.counts[kind] <= self.limit:
            LOGGER.warning(f"ultrald: {message}")
        elif self.counts[kind] == self.limit + 1:
            LOGGER.warning(f"ultrald: further '{kind}' problems are counted in the summary, not shown")


def _objects_to_labels(
    objects: list[DOTAObject],
    cls_of: dict[str, int],
    window: tuple[int, int, int, int],
    iof: float,
    scale: float,
    counts: Counter,
    bounds: np.ndarray,
    placed: np.ndarray,
) -> list[str]:
    """Return the label lines of the objects in one window (objects scaled by `scale`), counting how each fits."""
    x0, y0, x1, y1 = window
    near = np.flatnonzero((bounds[:, 2] > x0) & (bounds[:, 0] < x1) & (bounds[:, 3] > y0) & (bounds[:, 1] < y1))
    lines = []
    for i in near:
        points, fit = clip_object(objects[i].points * scale, window, iof)
        counts[fit] += fit in {"clipped", "cut"}
        if points is not None:
            placed[i] = True
            lines.append(label_line(cls_of[objects[i].name], points, x1 - x0, y1 - y0))
    return lines


def split_image(task: tuple) -> dict:
    """Split one image (and its objects) into patches; return its record, counts and problems. Runs in a worker."""
    image, label, out_images, out_labels, classes, settings = task
    s: SplitSettings = settings
    problems, counts, patches = [], Counter(), {}
    objects = []
    if label is not None:
        objects, _, problems = parse_dota_txt(label, classes)
        counts["objects"] += len(objects)
        counts["difficult"] += sum(o.difficult for o in objects)
        if s.drop_difficult:
            objects = [o for o in objects if not o.difficult]
    cls_of = {c: i for i, c in enumerate(classes)}
    record = {"image": image.name, "patches": patches, "counts": counts, "problems": problems}
    im = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if im is None:
        problems.append(("unreadable image", f"'{image}' cannot be read as an image, skipped"))
        record["skipped"] = True
        return record
    h, w = im.shape[:2]
    record["size"] = (w, h)
    for rate in s.rates:
        scaled = im if rate == 1 else cv2.resize(im, (round(w * rate), round(h * rate)), interpolation=cv2.INTER_CUBIC)
        sh, sw = scaled.shape[:2]
        pts = np.array([o.points * rate for o in objects]).reshape(-1, 4, 2)
        bounds = np.concatenate((pts.min(1), pts.max(1)), 1) if len(objects) else np.zeros((0, 4))
        placed = np.zeros(len(objects), bool)
        for window in windows(sw, sh, s.size, s.gap):
            lines = _objects_to_labels(objects, cls_of, window, s.iof, rate, counts, bounds, placed)
            if s.drop_empty and not lines:
                counts["empty patches dropped"] += 1
                continue
            x0, y0, x1, y1 = window
            name = patch_name(image.stem, rate, x0, y0)
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if s.ext == "jpg" else []
            if not cv2.imwrite(str(out_images / f"{name}.{s.ext}"), scaled[y0:y1, x0:x1], params):
                raise OSError(f"cannot write '{out_images / name}.{s.ext}'")
            if out_labels is not None:
                (out_labels / f"{name}.txt").write_text("".join(f"{line}\n" for line in lines))
            patches[name] = [image.stem, rate, x0, y0]
            counts["patches"] += 1
            counts["labels"] += len(lines)
        counts["objects in no patch"] += int((~placed).sum())
    return record


def place_image(task: tuple) -> dict:
    """Convert one image without splitting: link (or copy) it and write its labels clipped to the image."""
    image, label, out_images, out_labels, classes, settings = task
    problems, counts = [], Counter()
    record = {"image": image.name, "patches": {}, "counts": counts, "problems": problems}
    size = image_size(image)
    if size is None:
        problems.append(("unreadable image", f"'{image}' cannot be read as an image, skipped"))
        record["skipped"] = True
        return record
    record["size"] = size
    dst = out_images / image.name
    dst.unlink(missing_ok=True)
    shutil.copy2(image, dst) if settings.copy else os.symlink(image.resolve(), dst)
    counts["patches"] += 1
    if label is not None:
        objects, _, found = parse_dota_txt(label, classes)
        problems.extend(found)
        counts["objects"] += len(objects)
        counts["difficult"] += sum(o.difficult for o in objects)
        if settings.drop_difficult:
            objects = [o for o in objects if not o.difficult]
        pts = np.array([o.points for o in objects]).reshape(-1, 4, 2)
        bounds = np.concatenate((pts.min(1), pts.max(1)), 1) if len(objects) else np.zeros((0, 4))
        placed = np.zeros(len(objects), bool)
        cls_of = {c: i for i, c in enumerate(classes)}
        window = (0, 0, *size)
        lines = _objects_to_labels(objects, cls_of, window, settings.iof, 1.0, counts, bounds, placed)
        (out_labels / f"{image.stem}.txt").write_text("".join(f"{line}\n" for line in lines))
        counts["labels"] += len(lines)
        counts["objects in no patch"] += int((~placed).sum())
    return record


def find_split(root: Path, split: str, version: str, labels: str | None) -> tuple[Path, Path | None] | None:
    """Return (images folder, labelTxt folder or None) of `split` under a DOTA root, or None when it has no images."""
    layouts = [(root / split / "images", root / split), (root / "images" / split, root)]
    for images, base in layouts:
        if not images.is_dir():
            continue
        if labels:
            candidates = [base / labels.format(split=split)]
        elif base == root:
            candidates = [root / "labelTxt" / split, root / "labels" / f"{split}_original"]
        else:
            v15 = [f"labelTxt-v1.5/DOTA-v1.5_{split}", "labelTxt-v1.5"] if version == "1.5" else []
            candidates = [base / c for c in (*v15, "labelTxt", "labelTxt-v1.0/labelTxt", "labelTxt-v1.0")]
        found = next((c for c in candidates if c.is_dir() and any(c.glob("*.txt"))), None)
        if found is None and labels:
            raise FileNotFoundError(f"label folder '{candidates[0]}' (--labels {labels}) does not exist or is empty.")
        return images, found
    return None


def convert_split(
    split: str,
    images_dir: Path,
    labels_dir: Path | None,
    out_dir: Path,
    classes: tuple[str, ...],
    settings: SplitSettings,
    problems: Problems,
    workers: int = 0,
) -> tuple[dict, dict, Counter]:
    """Convert (split) the images of one split; return (patch -> [image, rate, x, y], image -> [file, w, h], counts)."""
    out_images, out_labels = out_dir / "images" / split, out_dir / "labels" / split if labels_dir else None
    for d in (out_images, out_labels):
        if d is not None:
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
    (out_dir / "labels" / f"{split}.cache").unlink(missing_ok=True)
    images, stems = [], {}
    for f in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        if f.stem in stems:
            problems("duplicate image", f"'{f}' has the stem of '{stems[f.stem]}', skipped")
            continue
        stems[f.stem] = f
        images.append(f)
    if labels_dir is not None:
        for txt in sorted(labels_dir.glob("*.txt")):
            if txt.stem not in stems:
                problems("label without image", f"'{txt}' has no image in '{images_dir}', not used")
    tasks = []
    for f in images:
        label = labels_dir / f"{f.stem}.txt" if labels_dir else None
        if label is not None and not label.is_file():
            problems("missing label", f"'{f}' has no annotation file '{label}', skipped")
            continue
        s = replace(settings, drop_empty=settings.drop_empty and split == "train")
        tasks.append((f, label, out_images, out_labels, classes, s))
    fn = split_image if settings.size else place_image
    patches, sizes, counts = {}, {}, Counter()
    pool = ProcessPoolExecutor(workers) if workers > 1 and len(tasks) > 1 else None
    try:
        results = pool.map(fn, tasks) if pool else map(fn, tasks)
        for r in TQDM(results, total=len(tasks), desc=f"DOTA {split}"):
            for kind, message in r["problems"]:
                problems(kind, message)
            counts["skipped lines"] += sum(kind in LINE_PROBLEMS for kind, _ in r["problems"])
            counts.update(r["counts"])
            if r.get("skipped"):
                counts["skipped images"] += 1
                continue
            counts["images"] += 1
            patches.update(r["patches"])
            sizes[Path(r["image"]).stem] = [r["image"], *r["size"]]
    finally:
        if pool:
            pool.shutdown()
    if not counts["images"]:
        raise ValueError(f"none of the {len(images)} images in '{images_dir}' could be converted.")
    return patches, sizes, counts


def summary_line(split: str, counts: Counter, settings: SplitSettings) -> str:
    """Return a one-line summary of a split's conversion counts."""
    c = counts
    line = f"ultrald: DOTA {split}: {c['images']} images -> {c['patches']} {'patches' if settings.size else 'images'}"
    if c["objects"]:
        difficult = "dropped" if settings.drop_difficult else "kept"
        line += (
            f"; {c['objects']} objects ({c['difficult']} difficult, {difficult}) -> {c['labels']} labels "
            f"({c['clipped']} clipped at a patch border; {c['cut']} times left out of a patch holding less than "
            f"{settings.iof} of one), {c['objects in no patch']} objects in no patch"
        )
    if c["empty patches dropped"]:
        line += f"; {c['empty patches dropped']} empty patches not written"
    if c["skipped lines"] or c["skipped images"]:
        line += f"; skipped {c['skipped lines']} annotation lines, {c['skipped images']} images"
    return line


def convert_dota(
    dota_root: str | Path,
    out_dir: str | Path,
    version: str = "1.0",
    size: int = 1024,
    gap: int = 200,
    rates: tuple[float, ...] = (1.0,),
    iof: float = 0.7,
    splits: tuple[str, ...] | None = None,
    ext: str = "png",
    drop_difficult: bool = False,
    drop_empty: bool = False,
    names: str = "dota",
    labels: str | None = None,
    copy: bool = False,
    workers: int = 0,
) -> Path:
    """Convert raw DOTA folders into a (split) Ultralytics OBB dataset; return its data.yaml.

    Args:
        dota_root (str | Path): The DOTA folder holding train/, val/, test/ (see the module docstring for layouts).
        out_dir (str | Path): Output folder: images/, labels/, patches.json, problems.txt, data.yaml. It must be new,
            empty or a previous output of this converter (its split folders are replaced).
        version (str): '1.0' (15 classes) or '1.5' (16, adds container-crane).
        size (int): Patch size in pixels; 0 converts without splitting (images linked, labels clipped to the image).
        gap (int): Overlap of neighbouring patches in pixels.
        rates (tuple[float, ...]): Scale rates; each image is resized by each rate before it is cut (multi-scale).
        iof (float): Fraction of a cut object's area that must lie in a patch for it to be labelled there.
        splits (tuple[str, ...], optional): Splits to convert; default: those of train, val, test that exist.
        ext (str): Patch format, 'png' (lossless) or 'jpg' (quality 95).
        drop_difficult (bool): Leave difficult objects out of the labels (default: kept, as Ultralytics and mmrotate
            train). Evaluation reads them from the original files either way and ignores them.
        drop_empty (bool): Write no train patch without objects (val and test keep every patch).
        names (str): 'dota' ('storage-tank', as DOTA's files and evaluation server) or 'ultralytics' ('storage tank',
            as Ultralytics' DOTAv1.yaml: its DOTA checkpoints then pass as teachers). Evaluation accepts both.
        labels (str, optional): The labelTxt folder relative to each split folder ('{split}' is replaced).
        copy (bool): Not split: copy the images instead of symlinking them.
        workers (int): Processes that split images in parallel (0 or 1: this process).

    Returns:
        (Path): The data yaml.

    Examples:
        >>> convert_dota("/data/DOTA", "datasets/DOTAv1", version="1.0", size=1024, gap=200, rates=(1.0,))
    """
    root, out = Path(dota_root).resolve(), Path(out_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"DOTA root '{root}' does not exist.")
    if out == root or root in out.parents:
        raise ValueError(f"out_dir '{out}' lies inside the DOTA root '{root}'; choose another folder.")
    previous = (out / "data.yaml").is_file() and "dota_root:" in (out / "data.yaml").read_text()
    if out.is_dir() and any(out.iterdir()) and not previous:
        raise ValueError(f"out_dir '{out}' is not empty and holds no previous 'yolo-ld convert dota' output.")
    classes = class_names(version, names)
    if ext not in {"png", "jpg"}:
        raise ValueError(f"ext '{ext}' is not 'png' or 'jpg'.")
    if size:
        windows(size, size, size, gap)  # checks size and gap
    if not rates or any(r <= 0 for r in rates):
        raise ValueError(f"rates {list(rates)} must be positive numbers, e.g. 1.0 or 0.5 1.0 1.5")
    if not 0 <= iof <= 1:
        raise ValueError(f"iof {iof} is not in [0, 1].")
    settings = SplitSettings(size, gap, tuple(float(r) for r in rates), iof, ext, drop_difficult, drop_empty, copy)
    found = {s: find_split(root, s, version, labels) for s in (splits or SPLITS)}
    missing = [s for s, f in found.items() if f is None]
    if splits and missing:
        raise FileNotFoundError(f"no images of {missing} under '{root}' (<split>/images or images/<split>).")
    found = {s: f for s, f in found.items() if f is not None}
    if not found:
        raise FileNotFoundError(f"no DOTA split under '{root}': expected train/images, val/images ... or images/train")
    for s, (images, labels_dir) in found.items():
        if s != "test" and labels_dir is None:
            raise FileNotFoundError(f"'{images}' has no labelTxt folder beside it; name it with --labels.")
        LOGGER.info(f"ultrald: DOTA {s}: images '{images}', labels '{labels_dir or '-'}'")
    out.mkdir(parents=True, exist_ok=True)
    problems, mapping, image_sizes, summary = Problems(), {}, {}, {}
    for s, (images, labels_dir) in found.items():
        mapping[s], image_sizes[s], counts = convert_split(
            s, images, labels_dir if s != "test" else None, out, classes, settings, problems, workers
        )
        summary[s] = dict(counts)
        LOGGER.info(summary_line(s, counts, settings))
    if problems.messages:
        (out / PROBLEMS).write_text("\n".join(problems.messages) + "\n")
        LOGGER.warning(
            f"ultrald: skipped {dict(problems.counts)}; every skipped line and file is listed in '{out / PROBLEMS}'"
        )
    else:
        (out / PROBLEMS).unlink(missing_ok=True)
    if size:
        payload = {"size": size, "gap": gap, "rates": list(settings.rates), "splits": mapping, "images": image_sizes}
        (out / PATCHES).write_text(json.dumps(payload, separators=(",", ":")))
    else:
        (out / PATCHES).unlink(missing_ok=True)
    train = "images/train" if "train" in found else "images/val"
    val = "images/val" if "val" in found else "images/train" if "train" in found else None
    if "train" not in found or "val" not in found:
        LOGGER.warning(f"ultrald: converted only {list(found)}; train and val point at the same split.")
    labelled = {s: str(f[1]) for s, f in found.items() if s != "test" and f[1] is not None}
    data = {
        "path": str(out),
        "train": train,
        "val": val or "images/test",
        "test": "images/test" if "test" in found else None,
        "names": dict(enumerate(classes)),
        "dota_version": version,
        "dota_root": str(root),
        "annotations": labelled,
        "patches": PATCHES if size else None,
        "split": {
            "size": size,
            "gap": gap,
            "rates": list(settings.rates),
            "iof": iof,
            "difficult": "dropped" if drop_difficult else "kept",
            "ext": ext if size else "original",
        },
        "summary": summary,
    }
    yaml_file = out / "data.yaml"
    YAML.save(yaml_file, {k: v for k, v in data.items() if v is not None}, header=YAML_HEADER)
    LOGGER.info(f"ultrald: DOTA dataset written to {yaml_file}")
    return yaml_file


def cli(argv: list[str]) -> int:
    """`yolo-ld convert dota`: parse `argv`, convert, print the data yaml path; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="yolo-ld convert dota",
        description="Convert raw DOTA v1.0/v1.5 folders (images + labelTxt) into an Ultralytics OBB dataset split "
        "into overlapping patches, with the patch mapping and the original annotations that metric=dota evaluates on.",
        epilog="layouts: ROOT/{train,val,test}/images + ROOT/{train,val}/labelTxt (as distributed), or ROOT/images/"
        "{split} + ROOT/labelTxt/{split}. Example: yolo-ld convert dota /data/DOTA datasets/DOTAv1 --version 1.0 "
        "(multi-scale: --rates 0.5 1.0 1.5)",
    )
    parser.add_argument("dota_root", help="the DOTA folder holding train/, val/, test/")
    parser.add_argument("out", help="output folder (images/, labels/, patches.json, data.yaml)")
    parser.add_argument("--version", default="1.0", choices=list(DOTA_CLASSES), help="DOTA version (default 1.0)")
    parser.add_argument("--size", type=int, default=1024, help="patch size in pixels; 0: do not split (default 1024)")
    parser.add_argument("--gap", type=int, default=200, help="overlap of neighbouring patches (default 200)")
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0], help="scale rates (default 1.0)")
    parser.add_argument("--iof", type=float, default=0.7, help="area fraction a cut object keeps (default 0.7)")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, help="splits to convert (default: all found)")
    parser.add_argument("--ext", default="png", choices=("png", "jpg"), help="patch format (default png, lossless)")
    parser.add_argument("--drop-difficult", action="store_true", help="leave difficult objects out of the labels")
    parser.add_argument("--drop-empty", action="store_true", help="write no train patch without objects")
    parser.add_argument("--names", default="dota", choices=NAME_STYLES, help="'storage-tank' or 'storage tank'")
    parser.add_argument("--labels", help="labelTxt folder relative to each split folder, e.g. labelTxt-v1.5/{split}")
    parser.add_argument("--copy", action="store_true", help="--size 0: copy the images instead of symlinking them")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="parallel processes")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # -h, or a usage error already printed
        return int(e.code or 0)
    try:
        yaml_file = convert_dota(
            args.dota_root,
            args.out,
            version=args.version,
            size=args.size,
            gap=args.gap,
            rates=tuple(args.rates),
            iof=args.iof,
            splits=tuple(args.splits) if args.splits else None,
            ext=args.ext,
            drop_difficult=args.drop_difficult,
            drop_empty=args.drop_empty,
            names=args.names,
            labels=args.labels,
            copy=args.copy,
            workers=args.workers,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"yolo-ld convert dota: error: {e}", file=sys.stderr)
        return 2
    print(yaml_file)
    return 0
