"""DOTA protocol (the DOTA devkit's Task1, oriented boxes), for `yolo-ld val ... metric=dota` and a trainer's fitness.

Merging: detections on patches are shifted back to their image ((patch xy + offset) / rate) and merged per image and
class by greedy NMS on exact polygon IoU, suppressing IoU > 0.1, as the devkit's ResultMerge_multi_process.py
(`nms_thresh = 0.1`; its single-process ResultMerge.py has 0.3). Ultralytics' OBBValidator merges with ProbIoU at 0.3.

Evaluation, as the devkit's dota_evaluation_task1.py: per class, detections in descending score order, each matched
to the ground-truth polygon of its image with the highest IoU (exact polygon IoU, shapely). IoU > threshold with an
object not yet taken is a true positive; with a taken one a false positive; with a difficult one nothing (ignored);
below it a false positive. AP is VOC07's 11-point AP at the devkit's recall points np.arange(0, 1.1, 0.1) (so the
0.3, 0.6 and 0.7 points are 0.30000000000000004, ...: a recall of exactly 0.3 does not reach the fourth one).
mAP50 (IoU 0.5) is DOTA's headline number; mAP50-95 averages the same at IoU .50:.05:.95 (VOC07 AP at each, as
mmrotate's DOTA metric, which Rotated-LD reports). Classes without ground truth are nan and left out of the means
(the devkit would divide by zero). Self-intersecting polygons are taken as their convex hull.

Ground truth: a dataset written by `yolo-ld convert dota` names its original full-image labelTxt folders
(`annotations`) and its patch mapping (`patches`): patch detections are merged and evaluated against the originals,
difficult objects included and ignored. Without annotations, each image is evaluated against its YOLO labels (no
difficult objects); with neither (the test split), only the Task1 files are written. Patch names of the devkit
(`P0003__1__0___824`) or of Ultralytics' split_dota (`P0003__1024__0___824`) give the mapping when no json does.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import shapely
from ultralytics.cfg import DEFAULT_CFG
from ultralytics.models.yolo.obb import OBBValidator
from ultralytics.utils import LOGGER, ops

from ..data.dota import Patch, canonical_name, image_size, parse_dota_txt, parse_patch_name
from . import gather_records

MERGE_IOU = 0.1  # the devkit's ResultMerge_multi_process.py nms_thresh
IOU_THRS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # .50:.05:.95
RECALL_POINTS = np.arange(0.0, 1.1, 0.1)  # the devkit's 11 points, float rounding included
MAX_DET = 1000  # detections per patch (Ultralytics' default is 300; a DOTA patch can hold more small vehicles)
PREDICT_KEYS = ("imgsz", "batch", "conf", "iou", "device", "max_det", "half", "augment", "agnostic_nms", "classes")
RESULTS = "dota_results.json"
TASK1 = "Task1"  # folder of the merged per-class submission files in the run dir


@dataclass
class Detections:
    """Oriented detections of one image: polygons (N, 8) in pixels, scores (N,), class indices (N,)."""

    polys: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __post_init__(self):
        """Coerce the fields to float64 (N, 8), float64 (N,) and int64 (N,) arrays."""
        self.polys = np.asarray(self.polys, dtype=np.float64).reshape(-1, 8)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        if not len(self.polys) == len(self.scores) == len(self.classes):
            raise ValueError(f"{len(self.polys)} polygons, {len(self.scores)} scores, {len(self.classes)} classes")

    @classmethod
    def from_xywhr(cls, xywhr, scores, classes) -> Detections:
        """Build from rotated boxes (N, 5) cx, cy, w, h, angle (radians), as Ultralytics predicts them."""
        xywhr = np.asarray(xywhr, dtype=np.float64).reshape(-1, 5)
        return cls(ops.xywhr2xyxyxyxy(xywhr).reshape(-1, 8), scores, classes)

    @classmethod
    def cat(cls, items: list[Detections]) -> Detections:
        """Concatenate detections."""
        if not items:
            return cls(np.zeros((0, 8)), np.zeros(0), np.zeros(0))
        return cls(*(np.concatenate([getattr(d, k) for d in items]) for k in ("polys", "scores", "classes")))

    def __len__(self) -> int:
        """Number of detections."""
        return len(self.scores)

    def __getitem__(self, index) -> Detections:
        """Return the detections at `index` (mask or indices)."""
        return Detections(self.polys[index], self.scores[index], self.classes[index])


@dataclass
class GroundTruth:
    """Ground-truth objects of one image: polygons (M, 8) in pixels, class indices (M,), difficult flags (M,)."""

    polys: np.ndarray
    classes: np.ndarray
    difficult: np.ndarray

    def __post_init__(self):
        """Coerce the fields to float64 (M, 8), int64 (M,) and bool (M,) arrays."""
        self.polys = np.asarray(self.polys, dtype=np.float64).reshape(-1, 8)
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        self.difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)


def to_polygons(polys: np.ndarray) -> np.ndarray:
    """Return shapely polygons of (N, 8) coordinates; self-intersecting ones as their convex hull."""
    geoms = shapely.polygons(np.asarray(polys, dtype=np.float64).reshape(-1, 4, 2))
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        geoms[invalid] = shapely.convex_hull(geoms[invalid])
    return geoms


def overlaps(a: np.ndarray, b: np.ndarray, above: float | None = None, upper: bool = False) -> tuple[np.ndarray, ...]:
    """Return (i, j, iou) of the pairs of shapely polygons a[i], b[j] whose bounding boxes meet (others have IoU 0).

    Args:
        a (np.ndarray): Shapely polygons (N,).
        b (np.ndarray): Shapely polygons (M,).
        above (float, optional): Leave out the pairs whose IoU cannot exceed this: the IoU of their bounding boxes'
            intersection area with their areas bounds it from above.
        upper (bool): Only pairs i < j (a and b are the same polygons).
    """
    if not len(a) or not len(b):
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    i, j = shapely.STRtree(b).query(a)
    area_a, area_b = shapely.area(a), shapely.area(b)
    if upper:
        i, j = i[i < j], j[i < j]
    if above is not None:
        lo = np.maximum(shapely.bounds(a)[i, :2], shapely.bounds(b)[j, :2])
        hi = np.minimum(shapely.bounds(a)[i, 2:], shapely.bounds(b)[j, 2:])
        box = np.clip(hi - lo, 0, None).prod(1)
        possible = box > above * (area_a[i] + area_b[j] - box)  # box / (union with box) > above
        i, j = i[possible], j[possible]
    inter = shapely.area(shapely.intersection(a[i], b[j]))
    return i, j, inter / np.maximum(area_a[i] + area_b[j] - inter, np.finfo(float).eps)


def poly_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the exact IoU matrix (N, M) of polygons a (N, 8) and b (M, 8)."""
    out = np.zeros((len(a), len(b)))
    i, j, iou = overlaps(to_polygons(a), to_polygons(b))
    out[i, j] = iou
    return out


def poly_nms(polys: np.ndarray, scores: np.ndarray, iou: float = MERGE_IOU) -> np.ndarray:
    """Greedy NMS on exact polygon IoU; return the kept indices in descending score order.

    A detection is suppressed by a kept one of higher score when their IoU is above `iou` (the devkit keeps IoU <=).
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    geoms = to_polygons(np.asarray(polys)[order])
    i, j, v = overlaps(geoms, geoms, above=iou, upper=True)
    m = v > iou  # pairs (higher rank, lower rank) over the threshold
    s = np.argsort(i[m], kind="stable")
    i, j = i[m][s], j[m][s]
    starts = np.searchsorted(i, np.arange(len(order) + 1))  # pairs of rank k: j[starts[k]:starts[k + 1]]
    suppressed, keep = np.zeros(len(order), bool), []
    for k in range(len(order)):
        if not suppressed[k]:
            keep.append(k)
            suppressed[j[starts[k] : starts[k + 1]]] = True
    return order[np.asarray(keep, dtype=int)]


def merge_patches(
    detections: dict[str, Detections], patches: dict[str, Patch] | None = None, iou: float | None = MERGE_IOU
) -> dict[str, Detections]:
    """Shift patch detections back to their full images and merge them per image and class with polygon NMS.

    Args:
        detections (dict[str, Detections]): Patch name (file stem) -> its detections in patch pixels.
        patches (dict[str, Patch], optional): Patch name -> where it comes from; names missing here are parsed
            ('<image>__<rate>__<x>___<y>'), and a name that is not a patch name is an image of its own.
        iou (float, optional): NMS IoU threshold (suppress above it); None: shift only, no NMS.

    Returns:
        (dict[str, Detections]): Image name -> its detections in image pixels, in descending score order.
    """
    grouped = defaultdict(list)
    for name, d in detections.items():
        p = (patches or {}).get(name) or parse_patch_name(name) or Patch(name, 1.0, 0, 0)
        polys = (d.polys.reshape(-1, 4, 2) + (p.x, p.y)) / p.rate
        grouped[p.image].append(Detections(polys.reshape(-1, 8), d.scores, d.classes))
    merged = {}
    for image, parts in grouped.items():
        d = Detections.cat(parts)
        if iou is None:
            keep = np.argsort(-d.scores, kind="stable")
        else:
            kept = [idx[poly_nms(d.polys[idx], d.scores[idx], iou)] for idx in _by_class(d.classes)]
            keep = np.concatenate(kept) if kept else np.zeros(0, int)
            keep = keep[np.argsort(-d.scores[keep], kind="stable")]
        merged[image] = d[keep]
    return merged


def _by_class(classes: np.ndarray) -> list[np.ndarray]:
    """Return the indices of each class present in `classes`."""
    return [np.flatnonzero(classes == c) for c in np.unique(classes)]


def _names(names: dict[int, str] | list[str] | tuple[str, ...]) -> dict[int, str]:
    """Return class index -> name from a dict or a sequence."""
    return dict(names) if isinstance(names, dict) else dict(enumerate(names))


def write_task1(detections: dict[str, Detections], names, out_dir: str | Path) -> list[Path]:
    """Write the DOTA server's Task1 files: one `Task1_<class>.txt` per class, lines 'image score x1 y1 ... x4 y4'.

    Class names are written in DOTA's spelling ('storage-tank'); every class gets a file, empty when it has no
    detection. Previous Task1 files in `out_dir` are replaced. Returns the files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("Task1_*.txt"):
        f.unlink()
    names = _names(names)
    lines: dict[int, list[str]] = {c: [] for c in names}
    for image in sorted(detections):
        d = detections[image]
        for k in np.argsort(-d.scores, kind="stable"):
            c = int(d.classes[k])
            if c in lines:
                coords = " ".join(f"{v:.2f}" for v in d.polys[k])
                lines[c].append(f"{image} {d.scores[k]:.6f} {coords}\n")
    files = []
    for c, name in names.items():
        file = out / f"Task1_{canonical_name(name)}.txt"
        file.write_text("".join(lines[c]))
        files.append(file)
    return files


def read_task1(folder: str | Path, names) -> dict[str, Detections]:
    """Read Task1_<class>.txt files back into image -> Detections (classes by `names`, in DOTA's spelling)."""
    per_image = defaultdict(list)
    for c, name in _names(names).items():
        file = Path(folder) / f"Task1_{canonical_name(name)}.txt"
        if not file.is_file():
            continue
        for n, line in enumerate(file.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 10:
                    raise ValueError
                per_image[fields[0]].append((*map(float, fields[2:]), float(fields[1]), c))
            except ValueError:
                raise ValueError(f"{file}:{n}: not 'image score x1 y1 ... x4 y4': '{line}'") from None
    out = {}
    for image, rows in per_image.items():
        a = np.array(rows, dtype=np.float64)
        out[image] = Detections(a[:, :8], a[:, 8], a[:, 9])
    return out


def voc07_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Return VOC07's 11-point AP: the mean over the devkit's recall points t of the best precision at recall >= t."""
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    return float(sum(precision[recall >= t].max(initial=0.0) for t in RECALL_POINTS) / 11)


def match_image(
    ious: np.ndarray, scores: np.ndarray, difficult: np.ndarray, iou_thrs=IOU_THRS
) -> tuple[np.ndarray, np.ndarray]:
    """Match one image's detections of a class to its ground truth by the devkit's rules, at each IoU threshold.

    Args:
        ious (np.ndarray): IoU (N, M) of the N detections with the M ground-truth objects.
        scores (np.ndarray): Detection scores (N,).
        difficult (np.ndarray): Difficult flags (M,).
        iou_thrs (tuple[float, ...]): IoU thresholds (T,); a match needs IoU above the threshold.

    Returns:
        (tuple[np.ndarray, np.ndarray]): Boolean tp and fp (N, T), in the detections' own order; a detection whose
            best object is difficult is neither.
    """
    thrs = np.asarray(iou_thrs, dtype=np.float64)
    n, m = ious.shape
    tp, fp = np.zeros((n, len(thrs)), bool), np.ones((n, len(thrs)), bool)
    if not m:
        return tp, fp
    best_j, best = ious.argmax(1), ious.max(1)
    taken = np.zeros((len(thrs), m), bool)
    for k in np.argsort(-np.asarray(scores, float), kind="stable"):
        if best[k] <= thrs.min():
            continue  # a false positive at every threshold
        j, hit = best_j[k], best[k] > thrs
        if difficult[j]:
            fp[k] &= ~hit
            continue
        tp[k] = hit & ~taken[:, j]
        fp[k] = ~tp[k]
        taken[:, j] |= hit
    return tp, fp


def dota_evaluate(
    detections: dict[str, Detections], ground_truth: dict[str, GroundTruth], names, iou_thrs=IOU_THRS
) -> dict[str, Any]:
    """Evaluate full-image detections against ground truth with the devkit's Task1 protocol.

    Args:
        detections (dict[str, Detections]): Image name -> detections (pixels); images absent from `ground_truth`
            are not evaluated.
        ground_truth (dict[str, GroundTruth]): Image name -> ground truth: the evaluated image set.
        names (dict[int, str] | list[str]): Class names by index.
        iou_thrs (tuple[float, ...]): IoU thresholds; mAP50, mAP75 read 0.5 and 0.75 from them.

    Returns:
        (dict[str, Any]): mAP50, mAP75, mAP50-95 (means over classes with ground truth), images, ignored (detections
            on images outside the ground truth) and classes: {name: {AP50, AP75, AP50-95, gt, difficult, dets}}.
    """
    names, thrs = _names(names), np.asarray(iou_thrs, dtype=np.float64)
    per_class = {c: {"scores": [], "tp": [], "fp": [], "npos": 0, "ndiff": 0} for c in names}
    for image, gt in ground_truth.items():
        d = detections.get(image)
        for c, acc in per_class.items():
            g = gt.classes == c
            acc["npos"] += int((g & ~gt.difficult).sum())
            acc["ndiff"] += int((g & gt.difficult).sum())
            if d is None:
                continue
            k = d.classes == c
            if not k.any():
                continue
            tp, fp = match_image(poly_iou(d.polys[k], gt.polys[g]), d.scores[k], gt.difficult[g], thrs)
            acc["scores"].append(d.scores[k])
            acc["tp"].append(tp)
            acc["fp"].append(fp)
    classes = {}
    for c, acc in per_class.items():
        scores = np.concatenate(acc["scores"]) if acc["scores"] else np.zeros(0)
        order = np.argsort(-scores, kind="stable")
        tp = np.cumsum(np.concatenate(acc["tp"])[order], 0) if acc["tp"] else np.zeros((0, len(thrs)))
        fp = np.cumsum(np.concatenate(acc["fp"])[order], 0) if acc["fp"] else np.zeros((0, len(thrs)))
        npos = acc["npos"]
        if npos:
            recall, precision = tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
            aps = np.array([voc07_ap(recall[:, t], precision[:, t]) for t in range(len(thrs))])
        else:
            aps = np.full(len(thrs), np.nan)
        classes[names[c]] = {
            "AP50": _at(aps, thrs, 0.5),
            "AP75": _at(aps, thrs, 0.75),
            "AP50-95": float(aps.mean()) if len(aps) else float("nan"),
            "gt": npos,
            "difficult": acc["ndiff"],
            "dets": len(scores),
        }
    scored = [r for r in classes.values() if r["gt"]]
    mean = lambda k: float(np.mean([r[k] for r in scored])) if scored else 0.0
    ignored = sum(len(d) for image, d in detections.items() if image not in ground_truth)
    return {
        "mAP50": mean("AP50"),
        "mAP75": mean("AP75"),
        "mAP50-95": mean("AP50-95"),
        "images": len(ground_truth),
        "ignored": ignored,
        "classes": classes,
    }


def _at(aps: np.ndarray, thrs: np.ndarray, t: float) -> float:
    """Return the AP at IoU threshold t, nan when t is not among the thresholds."""
    hit = np.flatnonzero(np.isclose(thrs, t))
    return float(aps[hit[0]]) if len(hit) else float("nan")


def load_ground_truth(folder: str | Path, images, names) -> dict[str, GroundTruth]:
    """Read the original labelTxt file `folder/<image>.txt` of each image (malformed lines are skipped and logged).

    Raises:
        FileNotFoundError: naming the first image whose annotation file is missing.
    """
    names = _names(names)
    index = {canonical_name(n): c for c, n in names.items()}
    out, skipped = {}, []
    for image in images:
        file = Path(folder) / f"{image}.txt"
        if not file.is_file():
            raise FileNotFoundError(
                f"the annotation of '{image}' ('{file}') does not exist; does 'annotations' in the data yaml point "
                "at the original labelTxt folder?"
            )
        objects, _, problems = parse_dota_txt(file, tuple(names.values()))
        skipped += problems
        out[image] = GroundTruth(
            np.array([o.poly for o in objects]).reshape(-1, 8),
            [index[canonical_name(o.name)] for o in objects],
            [o.difficult for o in objects],
        )
    if skipped:
        shown = "\n".join(m for _, m in skipped[:5])
        LOGGER.warning(f"ultrald: {len(skipped)} ground-truth lines skipped (not evaluated), e.g.:\n{shown}")
    return out


def yolo_ground_truth(im_files: list[str]) -> dict[str, GroundTruth] | None:
    """Return image stem -> ground truth from the Ultralytics OBB labels of the images; None when none has labels."""
    from ultralytics.data.utils import img2label_paths

    out, found = {}, False
    for f, label in zip(im_files, img2label_paths(im_files)):
        rows = np.zeros((0, 9))
        if Path(label).is_file():
            found = True
            text = Path(label).read_text().split()
            rows = np.array(text, dtype=np.float64).reshape(-1, 9) if text else rows
        size = image_size(Path(f)) if len(rows) else (1, 1)
        polys = rows[:, 1:].reshape(-1, 4, 2) * size
        out[Path(f).stem] = GroundTruth(polys.reshape(-1, 8), rows[:, 0], np.zeros(len(rows), bool))
    return out if found else None


def patch_mapping(data: dict, split: str, im_files: list[str]) -> tuple[dict[str, Patch] | None, dict[str, str]]:
    """Return (patch name -> Patch, full image -> the converted split it belongs to) of a split's image files.

    The mapping comes from the dataset's patches json, else from the file names; None when the images are not
    patches (then every image is its own full image). A file's converted split is its folder's name
    (images/<split>/...) when the dataset knows that split, else `split`, so a yaml whose val points at another
    folder, or lists several, still finds each image's annotations.
    """
    file, records, known = data.get("patches"), {}, set(data.get("annotations") or {})
    if file:
        file = Path(file) if Path(file).is_absolute() else Path(data["path"]) / file
        if not file.is_file():
            raise FileNotFoundError(f"the patch mapping '{file}' named by the data yaml does not exist.")
        splits = json.loads(file.read_text())["splits"]
        known |= set(splits)
        records = {name: (s, r) for s, patches in splits.items() for name, r in patches.items()}
    source = {}  # image file stem -> (full image, converted split)
    mapping: dict[str, Patch] = {}
    for f in im_files:
        stem, folder = Path(f).stem, Path(f).parent.name
        origin = folder if folder in known else split
        if file:
            if stem not in records:
                raise ValueError(f"'{f}' is not in the patch mapping '{file}'; re-run the converter.")
            origin, r = records[stem]
            mapping[stem] = Patch(r[0], float(r[1]), int(r[2]), int(r[3]))
        elif (patch := parse_patch_name(stem)) is not None:
            mapping[stem] = patch
        source[stem] = (mapping[stem].image if stem in mapping else stem, origin)
    if mapping and len(mapping) < len(source):  # some names are patch names, some not: not a split dataset
        mapping, source = {}, {stem: (stem, origin) for stem, (_, origin) in source.items()}
    return mapping or None, dict(sorted(source.values()))


def dota_protocol(
    predictions: dict[str, Detections],
    data: dict,
    split: str,
    im_files: list[str],
    merge_iou: float | None = MERGE_IOU,
    ground_truth: dict | None = None,
) -> tuple[dict[str, Any], dict[str, Detections], dict | None]:
    """Merge (when the images are patches) and evaluate one split's predictions as the dataset allows.

    Args:
        predictions (dict[str, Detections]): Image file stem -> detections in that image's pixels.
        data (dict): The checked data yaml (path, names, optionally annotations and patches).
        split (str): The split evaluated.
        im_files (list[str]): The split's image files (those without predictions included).
        merge_iou (float, optional): NMS IoU of the merge.
        ground_truth (dict, optional): A ground truth from a previous call (a cache), else loaded.

    Returns:
        (tuple): results ('mode' says what was evaluated; only images and mode without ground truth), the detections
            submitted (full images when merged), and the ground truth used.
    """
    mapping, images = patch_mapping(data, split, im_files)
    annotations = data.get("annotations") or {}
    submitted = merge_patches(predictions, mapping, merge_iou) if mapping else predictions
    if all(annotations.get(origin) for origin in images.values()):
        evaluated, mode = submitted, "full images (original annotations)" if mapping else "images (annotations)"
        if ground_truth is None:
            ground_truth = {}
            for origin in sorted(set(images.values())):
                names = [image for image, o in images.items() if o == origin]
                ground_truth.update(load_ground_truth(annotations[origin], names, data["names"]))
    else:
        evaluated, mode = predictions, "images (YOLO labels, no difficult objects)"
        if ground_truth is None:
            ground_truth = yolo_ground_truth(im_files)
    if ground_truth is None:
        return {"mode": "no ground truth", "images": len(images)}, submitted, None
    results = dota_evaluate(evaluated, ground_truth, data["names"])
    return {**results, "mode": mode}, submitted, ground_truth


def dota_table(results: dict) -> str:
    """Return the per-class table of DOTA results as text."""
    rows = [
        f"\nDOTA protocol ({results['images']} {results['mode']}, VOC07 11-point AP, difficult ignored):",
        f"{'class':>20} {'gt':>7} {'difficult':>9} {'dets':>8} {'AP50':>8} {'AP75':>8} {'AP50-95':>8}",
    ]
    fmt = lambda v: f"{'-':>8}" if math.isnan(v) else f"{v:8.4f}"  # nan: no ground truth
    for name, r in results["classes"].items():
        rows.append(
            f"{name:>20} {r['gt']:>7} {r['difficult']:>9} {r['dets']:>8} "
            f"{fmt(r['AP50'])} {fmt(r['AP75'])} {fmt(r['AP50-95'])}"
        )
    total = lambda k: sum(r[k] for r in results["classes"].values())
    rows.append(
        f"{'mean':>20} {total('gt'):>7} {total('difficult'):>9} {total('dets'):>8} "
        f"{fmt(results['mAP50'])} {fmt(results['mAP75'])} {fmt(results['mAP50-95'])}"
    )
    return "\n".join(rows)


class Validator(OBBValidator):
    """OBBValidator whose stats add the DOTA protocol (merged patches, polygon IoU, VOC07 AP) and whose fitness is
    its mAP50.

    The returned stats hold `metrics/mAP50(dota)`, `metrics/mAP75(dota)`, `metrics/mAP50-95(dota)` and `fitness` =
    `metrics/mAP50(dota)`, so a trainer validating with it keeps best.pt by DOTA mAP50. Ultralytics' default
    max_det=300 becomes 1000 (per patch). The merged detections of the last validation are in `detections`.

    Examples:
        >>> from ultrald.eval.dota import Validator
        >>> stats = Validator(args=dict(model="best.pt", data="DOTAv1/data.yaml"))()
        >>> stats["fitness"] == stats["metrics/mAP50(dota)"]
    """

    protocol = "dota"
    fitness_key = "mAP50"
    merge_iou = MERGE_IOU

    def __init__(self, dataloader=None, save_dir=None, args=None, _callbacks=None) -> None:
        """Build Ultralytics' OBBValidator, then raise max_det to 1000 unless one was given."""
        super().__init__(dataloader, save_dir, args, _callbacks)
        if self.args.max_det == DEFAULT_CFG.max_det:
            self.args.max_det = MAX_DET
        self.records: list[dict] = []  # per image: im_file, polys (pixels of the image), scores, classes
        self.results: dict[str, Any] = {}
        self.detections: dict[str, Detections] = {}
        self._gt_cache: tuple | None = None

    def init_metrics(self, model) -> None:
        """Initialise Ultralytics' metrics and the per-image prediction records."""
        super().init_metrics(model)
        self.records = []

    def update_metrics(self, preds: list[dict], batch: dict) -> None:
        """Update Ultralytics' metrics, and record each image's predictions as polygons in its original pixels."""
        super().update_metrics(preds, batch)
        for si, pred in enumerate(preds):
            pb = self._prepare_batch(si, batch)
            predn = self.scale_preds(self._prepare_pred(pred), pb)
            self.records.append(
                {
                    "im_file": pb["im_file"],
                    "polys": ops.xywhr2xyxyxyxy(predn["bboxes"].float()).reshape(-1, 8).cpu().numpy(),
                    "scores": predn["conf"].float().cpu().numpy(),
                    "classes": predn["cls"].cpu().numpy(),
                }
            )

    def gather_stats(self) -> None:
        """Gather Ultralytics' stats, and under DDP the prediction records, on rank 0."""
        super().gather_stats()
        self.records = gather_records(self.records)

    def get_stats(self) -> dict[str, Any]:
        """Return Ultralytics' stats plus the DOTA numbers, with fitness set to DOTA mAP50."""
        stats = super().get_stats()
        self.results = self.evaluate()
        keys = ("mAP50", "mAP75", "mAP50-95")
        stats.update({f"metrics/{k}({self.protocol})": float(self.results.get(k, 0.0)) for k in keys})
        stats["fitness"] = float(self.results.get(self.fitness_key, 0.0))
        return stats

    def evaluate(self) -> dict[str, Any]:
        """Merge and evaluate the recorded predictions; log a line (training) or the table; return the results."""
        split = self.args.split or "val"
        im_files = list(self.dataloader.dataset.im_files)
        predictions = {Path(r["im_file"]).stem: Detections(r["polys"], r["scores"], r["classes"]) for r in self.records}
        key = (split, str((self.data.get("annotations") or {}).get(split)), len(im_files))
        cached = self._gt_cache[1] if self._gt_cache and self._gt_cache[0] == key else None
        results, self.detections, gt = dota_protocol(predictions, self.data, split, im_files, self.merge_iou, cached)
        self._gt_cache = key, gt
        if "classes" not in results:
            LOGGER.warning(f"ultrald: DOTA: the {split} split has no ground truth; no DOTA mAP.")
        elif self.training:
            LOGGER.info(
                f"DOTA: mAP50 {results['mAP50']:.4f}, mAP75 {results['mAP75']:.4f}, "
                f"mAP50-95 {results['mAP50-95']:.4f} ({results['images']} {results['mode']})"
            )
        else:
            LOGGER.info(dota_table(results))
        return results


def image_files(source) -> list[str]:
    """Return the image files of a dataset split: a folder (searched recursively), a txt list or a list of either."""
    from ultralytics.data.utils import IMG_FORMATS

    files = []
    for p in source if isinstance(source, (list, tuple)) else [source]:
        p = Path(p)
        if p.is_dir():
            files += [str(f) for f in p.rglob("*.*")]
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text(encoding="utf-8-sig").splitlines():
                line = line.strip()
                files.append(str(p.parent / line[2:]) if line.startswith("./") else line)
        elif p.is_file():
            files.append(str(p))
        else:
            raise FileNotFoundError(f"dataset split '{p}' does not exist.")
    files = sorted(f for f in files if f.rpartition(".")[-1].lower() in IMG_FORMATS)
    if not files:
        raise FileNotFoundError(f"no images in {source}.")
    return files


def val(yolo, **overrides) -> dict[str, Any]:
    """Evaluate a YOLO OBB model with the DOTA protocol: predict, merge patches, write Task1 files, print the table.

    Args:
        yolo (ultralytics.YOLO): The OBB model.
        **overrides (Any): data (required), split (default val), Ultralytics' predict keys imgsz, batch, conf
            (default 0.001), iou, device, max_det (default 1000 per patch), half, ...; project, name, exist_ok for the
            run dir; merge_iou (Python only, default 0.1).

    Returns:
        (dict[str, Any]): mAP50, mAP75, mAP50-95, images, mode, classes: {name: {AP50, AP75, AP50-95, gt, difficult,
            dets}} (only images and mode without ground truth), task1 (the folder of the Task1 files), save_dir.

    Examples:
        >>> from ultralytics import YOLO
        >>> from ultrald.eval import dota
        >>> dota.val(YOLO("best.pt"), data="datasets/DOTAv1/data.yaml", imgsz=1024)["mAP50"]
    """
    from ultralytics.cfg import get_save_dir
    from ultralytics.data.utils import check_det_dataset

    from ..utils import ensure_offline_fonts

    if yolo.task != "obb":
        raise SyntaxError(f"metric=dota evaluates obb models, this model's task is '{yolo.task}'.")
    if overrides.get("data") is None:
        raise SyntaxError("'data' is required for metric=dota, e.g. data=datasets/DOTAv1/data.yaml")
    ensure_offline_fonts()
    data = check_det_dataset(str(overrides["data"]))
    split = overrides.get("split") or "val"
    if not data.get(split):
        raise ValueError(f"the dataset has no '{split}' split.")
    im_files = image_files(data[split])
    unused = set(overrides) - {*PREDICT_KEYS, "data", "split", "project", "name", "exist_ok", "merge_iou", "workers"}
    if unused:
        LOGGER.warning(f"ultrald: metric=dota ignores {sorted(unused)}.")
    args = {"conf": 0.001, "max_det": MAX_DET, "batch": 16, **{k: overrides[k] for k in PREDICT_KEYS if k in overrides}}
    run = SimpleNamespace(
        project=overrides.get("project"), name=overrides.get("name") or "val-dota", task="obb", mode="val"
    )
    run.exist_ok, run.save_dir = overrides.get("exist_ok", False), None
    save_dir = get_save_dir(run)
    save_dir.mkdir(parents=True, exist_ok=True)
    predictions = {}
    for r in yolo.predict(source=im_files, stream=True, verbose=False, save=False, **args):
        obb = r.obb
        predictions[Path(r.path).stem] = Detections(
            obb.xyxyxyxy.reshape(-1, 8).float().cpu().numpy(), obb.conf.float().cpu().numpy(), obb.cls.cpu().numpy()
        )
    merge_iou = overrides.get("merge_iou", MERGE_IOU)
    results, submitted, _ = dota_protocol(predictions, data, split, im_files, merge_iou)
    task1 = save_dir / TASK1
    write_task1(submitted, data["names"], task1)
    results = {**results, "task1": str(task1), "save_dir": str(save_dir)}
    (save_dir / RESULTS).write_text(json.dumps(results, indent=1))
    if "classes" in results:
        LOGGER.info(dota_table(results))
    else:
        LOGGER.info(f"ultrald: the {split} split has no ground truth: no DOTA mAP, only the Task1 files.")
    LOGGER.info(f"ultrald: DOTA Task1 files ({len(submitted)} images) in {task1}, results in {save_dir / RESULTS}")
    return results
