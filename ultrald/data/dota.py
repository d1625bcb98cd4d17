"""DOTA v1.0/v1.5 (images + labelTxt) -> Ultralytics OBB dataset of overlapping patches that remember their origin.

    yolo-ld convert dota /data/DOTA datasets/DOTAv1 --version 1.0 --size 1024 --gap 200 --rates 0.5 1.0 1.5
    yolo-ld convert dota my-rotated datasets/mine --size 0 --classes roof,solar-panel     # DOTA format, own classes

Reads <root>/<split>/{images,labelTxt} (as distributed) or <root>/{images,labelTxt}/<split>; writes images/<split>/
<patch>.png, labels/<split>/<patch>.txt ('cls x1 y1 ... x4 y4', normalised), patches.json (split -> patch -> [image,
rate, x, y]) and data.yaml, which names the original annotations `metric=dota` evaluates on. Splitting follows the
devkit's ImgSplit (windows `gap` apart, the last flush with the border, patches `<image>__<rate>__<x>___<y>`); a cut
object keeps the minimum-area rectangle of its part inside when at least `iof` of it is inside; several `--rates`
split at several scales. Layouts, options and the deliberate differences from ImgSplit: datasets/dota.md."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import shapely
from ultralytics.data.utils import IMG_FORMATS
from ultralytics.utils import LOGGER, TQDM

from .common import (
    Problems,
    check_dir,
    image_size,
    load_names,
    make_cli,
    names_arg,
    place_image,
    reset_split,
    write_data_yaml,
    write_label,
)

DOTA_CLASSES = {
    "1.0": tuple(
        "plane ship storage-tank baseball-diamond tennis-court basketball-court ground-track-field harbor bridge "  # noqa: SIM905
        "large-vehicle small-vehicle helicopter roundabout soccer-ball-field swimming-pool".split()
    )
}
DOTA_CLASSES["1.5"] = (*DOTA_CLASSES["1.0"], "container-crane")
NAME_STYLES = ("dota", "ultralytics")  # 'storage-tank' (DOTA's files) or 'storage tank' (Ultralytics' DOTA yamls)
MIN_AREA = 1.0  # px^2: a polygon with less area is degenerate
PATCHES = "patches.json"
PROBLEMS = "problems.txt"
PATCH_NAME = re.compile(r"^(?P<image>.+)__(?P<rate>\d+(?:\.\d+)?)__(?P<x>\d+)___(?P<y>\d+)(?:\.\w+)?$")  # .ext optional
SPLITS = ("train", "val", "test")
LINE_PROBLEMS = ("wrong count", "non-numeric", "unknown class", "degenerate")  # what parse_dota_txt skips
YAML_HEADER = """\
# Written by 'yolo-ld convert dota'. Ultralytics reads path/train/val/test/names; ultrald's DOTA evaluation
# ('yolo-ld val ... metric=dota', and the trainer's fitness with metric=dota) also reads:
#   annotations:  split -> the folder of the original full-image labelTxt files (difficult flags included)
#   patches:      the json of split -> patch name -> [image, rate, x, y] (absent when the images were not split)
#   dota_version, dota_root, split (the settings), summary (what the conversion wrote, cut and skipped)
"""


class DOTAObject(NamedTuple):
    """One DOTA object: 8 polygon coordinates x1 y1 ... x4 y4 in pixels, class name, difficult flag."""

    poly: tuple[float, ...]
    name: str
    difficult: bool


class Patch(NamedTuple):
    """Where a patch comes from: the image stem, the scale rate and the patch's x, y offset in the scaled image."""

    image: str
    rate: float
    x: int
    y: int


def patch_name(image: str, rate: float, x: int, y: int) -> str:
    """Return the patch name '<image>__<rate>__<x>___<y>' (rate 1.0 is written '1', 0.5 '0.5')."""
    return f"{image}__{rate:g}__{int(x)}___{int(y)}"


def parse_patch_name(name: str) -> Patch | None:
    """Return the Patch of a name '<image>__<a>__<x>___<y>[.ext]', or None. `a` <= 10 is the devkit's scale rate; a
    larger `a` is the window size of Ultralytics' split_dota, which cuts from the unscaled image: rate 1."""
    if (m := PATCH_NAME.match(Path(name).name)) is None:
        return None
    rate = float(m["rate"])
    return Patch(m["image"], rate if 0 < rate <= 10 else 1.0, int(m["x"]), int(m["y"]))


def canonical_name(name: str) -> str:
    """Return a class name in DOTA's spelling: lower case, hyphens for spaces and underscores ('Storage tank')."""
    return "-".join(name.strip().lower().replace("_", " ").split())


def class_names(version: str = "1.0", style: str = "dota") -> tuple[str, ...]:
    """Return the classes of a DOTA version in their official order, hyphenated ('dota') or spaced ('ultralytics')."""
    if version not in DOTA_CLASSES or style not in NAME_STYLES:
        raise ValueError(
            f"DOTA version '{version}' / name style '{style}' is not one of {list(DOTA_CLASSES)} / {NAME_STYLES}."
        )
    names = DOTA_CLASSES[version]
    return names if style == "dota" else tuple(n.replace("-", " ") for n in names)


def polygons(coords) -> np.ndarray:
    """Return shapely polygons (N,) of quadrilaterals (N, 8), a self-intersecting one as its convex hull."""
    geoms = shapely.polygons(np.asarray(coords, dtype=np.float64).reshape(-1, 4, 2))
    invalid = ~shapely.is_valid(geoms)
    geoms[invalid] = shapely.convex_hull(geoms[invalid])
    return geoms


def parse_dota_txt(file: str | Path, classes: tuple[str, ...] | None = None) -> tuple[list[DOTAObject], dict, list]:
    """Parse a labelTxt file ('x1 y1 ... x4 y4 class [difficult]' lines after 'imagesource:', 'gsd:' header lines);
    return (objects, header, problems). Malformed lines are skipped as (kind in LINE_PROBLEMS, 'file:line: reason'): not
    9 or 10 fields, a non-finite number, a class not in `classes` (compared in DOTA's spelling, named as there; None:
    any class), or under MIN_AREA px^2 of area."""
    known = {canonical_name(c): c for c in classes} if classes else None
    objects, header, problems = [], {}, []
    text = Path(file).read_text(encoding="utf-8-sig", errors="replace")
    for n, line in enumerate(text.splitlines(), 1):
        line, fields = line.strip(), line.split()
        key, sep, value = line.partition(":")
        if not line or (sep and key.strip().lower() in {"imagesource", "gsd"}):
            header.update({key.strip().lower(): value.strip()} if line else {})
            continue
        try:  # 8 coordinates and the difficult flag (0 when absent, as in the devkit)
            values = np.array([*fields[:8], fields[9] if len(fields) == 10 else 0], dtype=np.float64)
        except ValueError:
            values = np.array([np.nan])
        name = fields[8] if len(fields) > 8 else ""
        if len(fields) not in {9, 10}:
            kind, reason = "wrong count", f"{len(fields)} fields, not 8 coordinates + class [+ difficult]"
        elif not np.isfinite(values).all():
            kind, reason = "non-numeric", "a coordinate or the difficult flag is not a finite number"
        elif known is not None and canonical_name(name) not in known:
            kind, reason = "unknown class", f"class '{name}' is not one of the {len(known)} classes"
        elif (area := polygons(values[:8])[0].area) < MIN_AREA:
            kind, reason = "degenerate", f"the polygon has {area:.3g} px^2 of area: '{line[:100]}'"
        else:
            name = known[canonical_name(name)] if known else name
            objects.append(DOTAObject(tuple(values[:8].tolist()), name, bool(values[8])))
            continue
        problems.append((kind, f"{file}:{n}: {reason}"))
    return objects, header, problems


def windows(width: int, height: int, size: int, gap: int) -> list[tuple[int, int, int, int]]:
    """Return the devkit's patch windows (x0, y0, x1, y1) over a width x height image, x-major: every size - gap
    pixels, the last flush with the border; a side shorter than `size` gets one window of its length (no padding)."""
    if not 0 <= gap < size:
        raise ValueError(f"the gap ({gap}) must be at least 0 and less than the patch size ({size}).")
    xs, ys = ([0] if n <= size else [*range(0, n - size, size - gap), n - size] for n in (width, height))
    return [(x, y, min(x + size, width), min(y + size, height)) for x in xs for y in ys]


def clip_object(points: np.ndarray, window: tuple[float, ...], iof: float = 0.7) -> tuple[np.ndarray | None, str]:
    """Return an object's 4 points (4, 2) in the window's coordinates and how it fits: inside, clipped, cut or outside.
    inside: all points in the window, as they are. clipped: at least `iof` of its area is inside; the points are the
    minimum-area rectangle of the part inside (shapely), corners beyond the window moved onto its border, ordered like
    the original. cut (less than `iof` inside) and outside give None."""
    x0, y0, x1, y1 = window
    offset = np.array((x0, y0), dtype=np.float64)
    if ((points >= offset) & (points <= (x1, y1))).all():
        return points - offset, "inside"
    geometry = polygons(points)[0]
    inside = geometry.intersection(shapely.box(x0, y0, x1, y1))
    fraction = inside.area / geometry.area if geometry.area > 0 else 0.0
    if fraction <= 0:
        return None, "outside"
    rect = shapely.minimum_rotated_rectangle(inside) if fraction >= iof else None
    if not isinstance(rect, shapely.Polygon) or rect.area <= 0:
        return None, "cut"
    rect = np.clip(shapely.get_coordinates(rect)[:4], offset, (x1, y1))
    if shapely.is_ccw(shapely.LinearRing(rect)) != shapely.is_ccw(shapely.LinearRing(points)):
        rect = rect[::-1]  # the original's winding, then its start (least squares): DOTA's first point is the head
    costs = [((np.roll(rect, -k, 0) - points) ** 2).sum() for k in range(4)]
    return np.roll(rect, -int(np.argmin(costs)), 0) - offset, "clipped"


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


def convert_image(task: tuple) -> dict:
    """Split one image into patches (with size 0: link it whole) labelled with its objects, in a worker process; return
    its record: image, size, patches (name -> [image, rate, x, y]), counts, problems; skipped when unreadable."""
    image, label, out_images, classes, s = task
    objects, _, problems = parse_dota_txt(label, classes) if label else ([], {}, [])
    counts = Counter(objects=len(objects), difficult=sum(o.difficult for o in objects))
    objects = [o for o in objects if not (s.drop_difficult and o.difficult)]
    record = {"image": image.name, "patches": {}, "counts": counts, "problems": problems}
    im = cv2.imread(str(image), cv2.IMREAD_COLOR) if s.size else None
    size = im.shape[1::-1] if im is not None else None if s.size else image_size(image)
    if size is None:
        problems.append(("unreadable image", f"'{image}' cannot be read as an image, skipped"))
        return {**record, "skipped": True}
    record["size"], (w, h) = size, size
    if not s.size:
        place_image(image, out_images / image.name, s.copy)
    cls_of, placed = {c: i for i, c in enumerate(classes)}, np.zeros(len(objects), bool)
    for rate in s.rates if s.size else (1.0,):
        pts = np.array([o.poly for o in objects], dtype=np.float64).reshape(-1, 4, 2) * rate
        bounds = np.concatenate((pts.min(1), pts.max(1)), 1)
        scaled = im if rate == 1 else cv2.resize(im, (round(w * rate), round(h * rate)), interpolation=cv2.INTER_CUBIC)
        for x0, y0, x1, y1 in windows(*scaled.shape[1::-1], s.size, s.gap) if s.size else [(0, 0, w, h)]:
            near = (bounds[:, 2] > x0) & (bounds[:, 0] < x1) & (bounds[:, 3] > y0) & (bounds[:, 1] < y1)
            lines = []
            for i in np.flatnonzero(near):
                points, fit = clip_object(pts[i], (x0, y0, x1, y1), s.iof)
                counts[fit] += fit in {"clipped", "cut"}
                if points is not None:
                    placed[i] = True
                    xy = np.clip(points / (x1 - x0, y1 - y0), 0.0, 1.0).ravel()  # the OBB label 'cls x1 y1 ... x4 y4'
                    lines.append(f"{cls_of[objects[i].name]} " + " ".join(f"{v:.6f}" for v in xy))
            if s.drop_empty and not lines:
                counts["empty patches dropped"] += 1
                continue
            name = patch_name(image.stem, rate, x0, y0)
            file = out_images / (f"{name}.{s.ext}" if s.size else image.name)
            if s.size:
                params = [cv2.IMWRITE_JPEG_QUALITY, 95] if s.ext == "jpg" else []
                if not cv2.imwrite(str(file), scaled[y0:y1, x0:x1], params):
                    raise OSError(f"cannot write '{file}'")
                record["patches"][name] = [image.stem, rate, x0, y0]
            if label:
                write_label(file, lines)
            counts.update(patches=1, labels=len(lines))
        counts["objects in no patch"] += int((~placed).sum())
        placed[:] = False
    return record


def find_split(root: Path, split: str, version: str, labels: str | None) -> tuple[Path, Path | None] | None:
    """Return (images folder, labelTxt folder or None) of `split` under a DOTA root, or None when it has no images."""
    for images, base in (root / split / "images", root / split), (root / "images" / split, root):
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
    split: str, images_dir: Path, labels_dir: Path | None, out_dir: Path, classes, s: SplitSettings, problems, workers
) -> tuple[dict, dict, dict]:
    """Convert (split) the images of one split, the test split without labels; log a summary; return (patch -> [image,
    rate, x, y], image -> [file, w, h], counts)."""
    labels_dir = labels_dir if split != "test" else None
    reset_split(out_dir, split)
    stems = {}
    for f in sorted(p for p in images_dir.iterdir() if p.suffix[1:].lower() in IMG_FORMATS):
        if (first := stems.setdefault(f.stem, f)) != f:
            problems("duplicate image", f"'{f}' has the stem of '{first}', skipped")
    for txt in sorted(labels_dir.glob("*.txt")) if labels_dir else []:
        if txt.stem not in stems:
            problems("label without image", f"'{txt}' has no image in '{images_dir}', not used")
    tasks, s = [], replace(s, drop_empty=s.drop_empty and split == "train")
    for f in stems.values():
        label = labels_dir / f"{f.stem}.txt" if labels_dir else None
        if label is not None and not label.is_file():
            problems("missing label", f"'{f}' has no annotation file '{label}', skipped")
        else:
            tasks.append((f, label, out_dir / "images" / split, classes, s))
    patches, sizes, c = {}, {}, Counter()
    with ProcessPoolExecutor(workers) if workers > 1 and len(tasks) > 1 else nullcontext() as pool:
        for r in TQDM((pool.map if pool else map)(convert_image, tasks), total=len(tasks), desc=f"DOTA {split}"):
            for kind, message in r["problems"]:
                problems(kind, message)
            c.update(r["counts"], **{"skipped lines": sum(kind in LINE_PROBLEMS for kind, _ in r["problems"])})
            c["skipped images" if r.get("skipped") else "images"] += 1
            if not r.get("skipped"):
                patches.update(r["patches"])
                sizes[Path(r["image"]).stem] = [r["image"], *r["size"]]
    if not c["images"]:
        raise ValueError(f"none of the {len(stems)} images in '{images_dir}' could be converted.")
    done = {"images", "patches", "objects", "difficult", "labels"}
    LOGGER.info(
        f"ultrald: DOTA {split}: {c['images']} images -> {c['patches']} {'patches' if s.size else 'images'}, "
        f"{c['objects']} objects ({c['difficult']} difficult, {'dropped' if s.drop_difficult else 'kept'}) -> "
        f"{c['labels']} labels; {', '.join(f'{v} {k}' for k, v in c.items() if k not in done)} ('clipped' at a "
        f"patch border; 'cut': left out of a patch holding less than {s.iof} of one)"
    )
    return patches, sizes, dict(c)


def find_splits(root: Path, splits: tuple[str, ...] | None, version: str, labels: str | None) -> dict:
    """Return {split: (images folder, labels folder or None)} of the DOTA splits under `root` (all of them when
    `splits` is None); raise FileNotFoundError naming what is missing."""
    found = {s: find_split(root, s, version, labels) for s in (splits or SPLITS)}
    if splits and (missing := [s for s, f in found.items() if f is None]):
        raise FileNotFoundError(f"no images of {missing} under '{root}' (<split>/images or images/<split>).")
    if not (found := {s: f for s, f in found.items() if f is not None}):
        raise FileNotFoundError(f"no DOTA split under '{root}': expected train/images, val/images ... or images/train")
    for s, (images, labels_dir) in found.items():
        if s != "test" and labels_dir is None:
            raise FileNotFoundError(f"'{images}' has no labelTxt folder beside it; name it with --labels.")
        LOGGER.info(f"ultrald: DOTA {s}: images '{images}', labels '{labels_dir or '-'}'")
    return found


def check_classes(found: dict, classes: tuple[str, ...]) -> None:
    """Raise ValueError, before anything is written, when no object of the labelled splits is of `classes`: a dataset
    of its own classes converted as DOTA's would become background images only."""
    seen = Counter()
    for _, labels_dir in found.values():
        for file in sorted(labels_dir.glob("*.txt")) if labels_dir else ():
            seen.update(canonical_name(o.name) for o in parse_dota_txt(file)[0])
            if seen.keys() & set(map(canonical_name, classes)):
                return
    if seen:
        raise ValueError(
            f"no object is of the {len(classes)} classes ({', '.join(classes[:4])}, ...); the labels name "
            f"{sorted(seen)[:8]}: pass your classes in order with --classes a,b,c (or a names file)."
        )


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
    classes: Sequence[str] | str | Path | None = None,
) -> Path:
    """Convert raw DOTA folders into a (split) Ultralytics OBB dataset; return its data.yaml. The arguments are the
    options of `yolo-ld convert dota` (`cli` below has their help). `out_dir` must be new, empty or a previous output of
    this converter (its split folders are replaced); `size=0` converts without splitting (images linked, labels clipped
    to the image); `workers` <= 1 converts in this process; `classes` (a sequence or a names file) replaces DOTA's
    classes with a dataset's own, in their order."""
    root, out = Path(dota_root).resolve(), Path(out_dir).resolve()
    check_dir(root, out, "DOTA root")
    previous = (out / "data.yaml").is_file() and "dota_root:" in (out / "data.yaml").read_text()
    if out.is_dir() and any(out.iterdir()) and not previous:
        raise ValueError(f"out_dir '{out}' is not empty and holds no previous 'yolo-ld convert dota' output.")
    classes = tuple(load_names(classes) or class_names(version, names))
    if size:
        windows(size, size, size, gap)  # checks size and gap
    if ext not in {"png", "jpg"} or not rates or min(rates) <= 0 or not 0 <= iof <= 1:
        raise ValueError(f"ext '{ext}' must be png or jpg, rates {[*rates]} positive numbers and iof {iof} in [0, 1].")
    settings = SplitSettings(size, gap, tuple(float(r) for r in rates), iof, ext, drop_difficult, drop_empty, copy)
    found = find_splits(root, splits, version, labels)
    check_classes(found, classes)
    out.mkdir(parents=True, exist_ok=True)
    problems = Problems()
    converted = {s: convert_split(s, *found[s], out, classes, settings, problems, workers) for s in found}
    mapping, image_sizes, summary = ({s: c[k] for s, c in converted.items()} for k in range(3))
    (report := out / PROBLEMS).unlink(missing_ok=True)
    if problems.messages:
        report.write_text("\n".join(problems.messages) + "\n")
        LOGGER.warning(f"ultrald: skipped {dict(problems.counts)}; every skipped line and file is in '{report}'")
    (out / PATCHES).unlink(missing_ok=True)
    if size:
        payload = {"size": size, "gap": gap, "rates": list(settings.rates), "splits": mapping, "images": image_sizes}
        (out / PATCHES).write_text(json.dumps(payload, separators=(",", ":")))
    if "train" not in found or "val" not in found:
        LOGGER.warning(f"ultrald: converted only {list(found)}; train and val point at the same split.")
    first = f"images/{next(s for s in SPLITS if s in found)}"  # what a missing train or val points at
    folders = {s: f"images/{s}" if s in found else first for s in ("train", "val")}
    folders["test"] = "images/test" if "test" in found else None
    split = {"size": size, "gap": gap, "rates": list(settings.rates), "iof": iof, "ext": ext if size else "original"}
    split["difficult"] = "dropped" if drop_difficult else "kept"
    extra = {"annotations": {s: str(f[1]) for s, f in found.items() if s != "test" and f[1] is not None}}
    extra |= {"dota_version": version, "dota_root": str(root), "patches": PATCHES if size else None, "split": split}
    return write_data_yaml(out, classes, folders, YAML_HEADER, "DOTA dataset", **extra, summary=summary)


cli = make_cli(
    "dota",
    lambda a: convert_dota(
        **{**vars(a), "rates": tuple(a.rates), "splits": a.splits and tuple(a.splits), "classes": names_arg(a.classes)}
    ),
    {
        "dota_root": "the DOTA folder holding train/, val/, test/",
        "out_dir": "output folder (images/, labels/, patches.json, data.yaml)",
        "--version": {"default": "1.0", "choices": list(DOTA_CLASSES), "help": "DOTA version (default 1.0)"},
        "--size": {"type": int, "default": 1024, "help": "patch size in pixels; 0: do not split (default 1024)"},
        "--gap": {"type": int, "default": 200, "help": "overlap of neighbouring patches (default 200)"},
        "--rates": {"type": float, "nargs": "+", "default": [1.0], "help": "scale rates (default 1.0)"},
        "--iof": {"type": float, "default": 0.7, "help": "area fraction a cut object keeps (default 0.7)"},
        "--splits": {"nargs": "+", "choices": SPLITS, "help": "splits to convert (default: all found)"},
        "--ext": {"default": "png", "choices": ("png", "jpg"), "help": "patch format (default png, lossless)"},
        "--drop-difficult": {"action": "store_true", "help": "leave difficult objects out of the labels"},
        "--drop-empty": {"action": "store_true", "help": "write no train patch without objects"},
        "--names": {"default": "dota", "choices": NAME_STYLES, "help": "'storage-tank' or 'storage tank'"},
        "--classes": "your own classes in order, a,b,c or a file of one per line (default: DOTA's of --version)",
        "--labels": "labelTxt folder relative to each split folder, e.g. labelTxt-v1.5/{split}",
        "--copy": {"action": "store_true", "help": "--size 0: copy the images instead of symlinking them"},
        "--workers": {"type": int, "default": min(4, os.cpu_count() or 1), "help": "parallel processes"},
    },
    __doc__,
)
