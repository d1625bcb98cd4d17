"""DOTA protocol (the devkit's Task1, oriented boxes), for `metric=dota`: merge patches, evaluate, write Task1 files.

Merging: patch detections go back to their image ((patch xy + offset) / rate), merged per image and class by greedy NMS
on exact polygon IoU suppressing IoU > 0.1, as the devkit's ResultMerge_multi_process.py (ResultMerge.py has 0.3).
Evaluation: dota_evaluation_task1.py, which is voc_eval on exact polygon IoU (shapely); its rules: ultrald.eval.ap.
mAP50 is DOTA's headline number; mAP50-95 averages VOC07 AP over IoU .50:.05:.95, as mmrotate (which Rotated-LD
reports). Unlike the devkit, a self-intersecting polygon counts as its convex hull. Ground truth: a `yolo-ld convert
dota` dataset names its original labelTxt folders (`annotations`) and its patch mapping (`patches`): merged detections
are evaluated against the originals. Without annotations each image is evaluated against its YOLO labels; with neither
(the test split) only Task1 files are written. Without a mapping json, patch names of the devkit (`P0003__1__0___824`)
or of Ultralytics' split_dota (`P0003__1024__0___824`) give it."""

from __future__ import annotations

import json
from collections import defaultdict, namedtuple
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from ultralytics.models.yolo.obb import OBBValidator
from ultralytics.utils import LOGGER

from ..data.dota import Patch, canonical_name, parse_dota_txt, parse_patch_name, polygons
from . import Benchmark
from .ap import average_precision, class_table, means
from .protocol import ProtocolValidator

MERGE_IOU = 0.1  # the devkit's ResultMerge_multi_process.py nms_thresh
IOU_THRS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # .50:.05:.95
KEYS = ("mAP50", "mAP75", "mAP50-95")


class Detections(namedtuple("Detections", "polys scores classes")):
    """Oriented detections of one image: polygons (N, 8) in pixels, scores (N,), class indices (N,), as arrays."""

    def __new__(cls, polys, scores, classes):
        """Coerce the fields to float64 (N, 8), float64 (N,) and int64 (N,) arrays."""
        shaped = np.asarray(polys, np.float64).reshape(-1, 8), np.asarray(scores, np.float64), np.asarray(classes, int)
        return super().__new__(cls, shaped[0], shaped[1].reshape(-1), shaped[2].reshape(-1))


class GroundTruth(namedtuple("GroundTruth", "polys classes difficult")):
    """Ground-truth objects of one image: polygons (M, 8) in pixels, class indices (M,), difficult flags (M,)."""

    def __new__(cls, polys, classes, difficult):
        """Coerce the fields to float64 (M, 8), int64 (M,) and bool (M,) arrays."""
        shaped = np.asarray(polys, np.float64).reshape(-1, 8), np.asarray(classes, int), np.asarray(difficult, bool)
        return super().__new__(cls, shaped[0], shaped[1].reshape(-1), shaped[2].reshape(-1))


def overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (i, j, IoU) of the shapely polygons a[i], b[j] whose bounding boxes meet (the others have IoU 0)."""
    i, j = shapely.STRtree(b).query(a)
    inter = shapely.area(shapely.intersection(a[i], b[j]))
    return i, j, inter / np.maximum(shapely.area(a[i]) + shapely.area(b[j]) - inter, np.finfo(float).eps)


def poly_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the exact IoU matrix (N, M) of polygons a (N, 8) and b (M, 8)."""
    out = np.zeros((len(a), len(b)))
    i, j, iou = overlaps(polygons(a), polygons(b))
    out[i, j] = iou
    return out


def poly_nms(polys: np.ndarray, scores: np.ndarray, iou: float = MERGE_IOU) -> np.ndarray:
    """Greedy NMS on exact polygon IoU; return the kept indices in descending score order (stable). A detection is
    suppressed by a kept one of higher rank when their IoU is above `iou` (the devkit keeps IoU <=)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    geoms = polygons(np.asarray(polys)[order])
    i, j, v = overlaps(geoms, geoms)
    over = (i < j) & (v > iou)  # pairs (higher rank, lower rank) over the threshold
    s = np.argsort(i[over], kind="stable")
    i, j = i[over][s], j[over][s]
    starts = np.searchsorted(i, np.arange(len(order) + 1))  # pairs of rank k: j[starts[k]:starts[k + 1]]
    suppressed, keep = np.zeros(len(order), bool), []
    for k in range(len(order)):
        if not suppressed[k]:
            keep.append(k)
            suppressed[j[starts[k] : starts[k + 1]]] = True
    return order[np.asarray(keep, dtype=int)]


def merge_patches(
    detections: dict[str, Detections], patches: dict | None = None, iou: float | None = MERGE_IOU
) -> dict:
    """Return image -> its detections in image pixels, descending scores, of patch name -> detections in patch pixels,
    merged per image and class by `poly_nms` at `iou` (None: shifted only). A patch missing from `patches` (name ->
    Patch) is parsed from its name, or else is an image of its own."""
    grouped = defaultdict(list)
    for name, d in detections.items():
        p = (patches or {}).get(name) or parse_patch_name(name) or Patch(name, 1.0, 0, 0)
        grouped[p.image].append(((d.polys.reshape(-1, 4, 2) + (p.x, p.y)) / p.rate, d.scores, d.classes))
    merged = {}
    for image, parts in grouped.items():
        d = Detections(*(np.concatenate(x) for x in zip(*parts)))
        keep = np.arange(len(d.scores))
        if iou is not None:
            by_class = [np.flatnonzero(d.classes == c) for c in np.unique(d.classes)]
            keep = np.concatenate([np.zeros(0, int)] + [i[poly_nms(d.polys[i], d.scores[i], iou)] for i in by_class])
        keep = keep[np.argsort(-d.scores[keep], kind="stable")]
        merged[image] = Detections(*(x[keep] for x in d))
    return merged


def _names(names: dict[int, str] | list[str] | tuple[str, ...]) -> dict[int, str]:
    """Return class index -> name from a dict or a sequence."""
    return dict(names) if isinstance(names, dict) else dict(enumerate(names))


def write_task1(detections: dict[str, Detections], names, out_dir: str | Path) -> list[Path]:
    """Write (replace) the server's Task1 files, `Task1_<class>.txt` per class (DOTA's spelling, empty when it has no
    detection), lines 'image score x1 y1 ... x4 y4'; return them."""
    out, files = Path(out_dir), {c: f"Task1_{canonical_name(n)}.txt" for c, n in _names(names).items()}
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("Task1_*.txt"):
        f.unlink()
    lines: dict[int, list[str]] = {c: [] for c in files}
    for image, d in sorted(detections.items()):
        for k in np.argsort(-d.scores, kind="stable"):
            if (c := int(d.classes[k])) in lines:
                lines[c].append(f"{image} {d.scores[k]:.6f} " + " ".join(f"{v:.2f}" for v in d.polys[k]) + "\n")
    for c, name in files.items():
        (out / name).write_text("".join(lines[c]))
    return [out / name for name in files.values()]


def dota_evaluate(
    detections: dict[str, Detections], ground_truth: dict[str, GroundTruth], names, iou_thrs=IOU_THRS
) -> dict[str, Any]:
    """Evaluate image -> Detections against image -> GroundTruth (the evaluated images) by the devkit's Task1 rules;
    return mAP50, mAP75, mAP50-95 (means over the classes with ground truth), images, ignored (detections on images
    outside the ground truth) and classes: {name: {AP50, AP75, AP50-95, gt, difficult, dets}}."""
    names, thrs = _names(names), np.asarray(iou_thrs, float)
    at = lambda aps, t: float(aps[np.isclose(thrs, t)][0]) if np.isclose(thrs, t).any() else float("nan")
    classes = {}
    for c, r in average_precision(detections, ground_truth, poly_iou, names, thrs).items():
        aps = {"AP50": at(r["AP07"], 0.5), "AP75": at(r["AP07"], 0.75), "AP50-95": float(r["AP07"].mean())}
        classes[names[c]] = {**aps, "gt": r["gt"], "difficult": r["difficult"], "dets": r["dets"]}
    results = {f"m{k}": v for k, v in means(classes, ("AP50", "AP75", "AP50-95")).items()}
    ignored = sum(len(d.scores) for image, d in detections.items() if image not in ground_truth)
    return {**results, "images": len(ground_truth), "ignored": ignored, "classes": classes}


def load_ground_truth(folder: str | Path | dict, images, names) -> dict[str, GroundTruth]:
    """Return image -> GroundTruth of the labelTxt files `folder/<image>.txt` (malformed lines skipped and logged);
    `folder` may also map each image to its folder (full images from several converted splits)."""
    names, out, skipped = _names(names), {}, []
    index = {n: c for c, n in names.items()}  # parse_dota_txt names the objects as `names` does
    for image in images:
        if not (file := Path(folder[image] if isinstance(folder, dict) else folder) / f"{image}.txt").is_file():
            raise FileNotFoundError(f"the annotation of '{image}' ('{file}') does not exist; is 'annotations' right?")
        objects, _, problems = parse_dota_txt(file, tuple(names.values()))
        skipped += problems
        classes = [index[o.name] for o in objects]
        out[image] = GroundTruth([o.poly for o in objects], classes, [o.difficult for o in objects])
    if skipped:
        shown = "\n".join(m for _, m in skipped[:5])
        LOGGER.warning(f"ultrald: {len(skipped)} ground-truth lines skipped (not evaluated), e.g.:\n{shown}")
    return out


def patch_mapping(data: dict, split: str, im_files: list[str]) -> tuple[dict[str, Patch] | None, dict[str, str]]:
    """Return (patch name -> Patch, or None when the images are not patches; full image -> its converted split). The
    mapping comes from the dataset's patches json, else from the file names. A file's converted split is its folder's
    name (images/<split>/...) when the dataset knows it, else `split`: a yaml whose val points at another folder, or
    lists several, still finds each image's annotations."""
    file, records, known = data.get("patches"), {}, set(data.get("annotations") or {})
    if file:
        if not (file := Path(data["path"]) / file).is_file():  # an absolute `file` stays as it is
            raise FileNotFoundError(f"the patch mapping '{file}' named by the data yaml does not exist.")
        splits = json.loads(file.read_text())["splits"]
        known |= set(splits)
        records = {name: (s, Patch(*r)) for s, patches in splits.items() for name, r in patches.items()}
    source, mapping = {}, {}  # image file stem -> (full image, converted split); patch name -> Patch
    for f in im_files:
        stem, folder = Path(f).stem, Path(f).parent.name
        origin = folder if folder in known else split
        if file:
            if stem not in records:
                raise ValueError(f"'{f}' is not in the patch mapping '{file}'; re-run the converter.")
            origin, mapping[stem] = records[stem]
        elif (patch := parse_patch_name(stem)) is not None:
            mapping[stem] = patch
        source[stem] = (mapping[stem].image if stem in mapping else stem, origin)
    if mapping and len(mapping) < len(source):  # some names are patch names, some not: not a split dataset
        mapping, source = {}, {stem: (stem, origin) for stem, (_, origin) in source.items()}
    return mapping or None, dict(sorted(source.values()))


class Validator(ProtocolValidator, OBBValidator):
    """OBBValidator whose stats add the DOTA protocol (merged patches, polygon IoU, VOC07 AP), fitness its mAP50. The
    stats hold `metrics/mAP50(dota)`, `metrics/mAP75(dota)`, `metrics/mAP50-95(dota)`. `detections` are the merged
    detections (image -> Detections); `val` also writes them as Task1 files, and accepts merge_iou (default 0.1)."""

    benchmark, keys, fitness_key, options = Benchmark.DOTA, KEYS, "mAP50", ("merge_iou",)
    max_det, merge_iou = 1000, MERGE_IOU  # per patch: a DOTA patch can hold more than 300 small vehicles

    def evaluate(self) -> dict[str, Any]:
        """Merge (when the images are patches) and evaluate the records as the dataset allows; log; return the results
        of dota_evaluate and `mode`, what was evaluated (only images and mode without ground truth)."""
        split, im_files, names = self.args.split or "val", list(self.dataloader.dataset.im_files), self.data["names"]
        predictions = {Path(r["im_file"]).stem: Detections(r["polys"], r["scores"], r["classes"]) for r in self.records}
        mapping, images = patch_mapping(self.data, split, im_files)
        annotations = self.data.get("annotations") or {}
        self.detections = merge_patches(predictions, mapping, self.merge_iou) if mapping else predictions
        if all(annotations.get(origin) for origin in images.values()):  # each image from its converted split's folder
            mode = "full images (original annotations)" if mapping else "images (annotations)"
            folders, evaluated = {image: annotations[origin] for image, origin in images.items()}, self.detections
            key = split, str(annotations), len(im_files)
            gt = self.cached(key, lambda: load_ground_truth(folders, folders, names))
        elif any(len(r["gt_classes"]) for r in self.records):  # each image against its labels as Ultralytics reads them
            mode, evaluated = "images (YOLO labels, no difficult objects)", predictions
            labels = ((Path(r["im_file"]).stem, r["gt_polys"], r["gt_classes"]) for r in self.records)
            gt = {image: GroundTruth(polys, classes, np.zeros(len(classes))) for image, polys, classes in labels}
        else:
            LOGGER.warning(f"ultrald: DOTA: the {split} split has no ground truth; no DOTA mAP, only the Task1 files.")
            return {"mode": "no ground truth", "images": len(images)}
        results = {**dota_evaluate(evaluated, gt, names), "mode": mode}
        columns = {k: k for k in ("AP50", "AP75", "AP50-95")}
        title = f"\nDOTA protocol ({results['images']} {mode}, VOC07 11-point AP, difficult ignored):"
        table = class_table(title, results["classes"], columns, {k: results[f"m{k}"] for k in columns})
        line = f"DOTA: {', '.join(f'{k} {results[k]:.4f}' for k in KEYS)} ({results['images']} {mode})"
        LOGGER.info(line if self.training else table)
        return results

    def save(self) -> dict[str, Any]:
        """Write the merged detections as Task1 files and the results as dota_results.json in the run folder."""
        out = Path(self.save_dir)
        extra = {"task1": str(out / "Task1"), "save_dir": str(out)}
        write_task1(self.detections, self.data["names"], extra["task1"])
        (out / "dota_results.json").write_text(json.dumps({**self.results, **extra}, indent=1))
        LOGGER.info(f"ultrald: DOTA Task1 files ({len(self.detections)} images) in {out / 'Task1'}, results in {out}")
        return extra


val = Validator.val  # val(yolo, merge_iou=0.1, **overrides) -> mAP50, mAP75, mAP50-95, images, mode, classes, task1
