"""PASCAL VOC protocol, for `yolo-ld val ... metric=voc`: per-class AP at IoU 0.5, difficult objects ignored.

Two AP definitions, both on the same matches: VOC2007's 11-point interpolated AP and the VOC2010+ area under the
monotone precision envelope. Matching follows the VOC devkit: detections of a class in descending score order, each
to the ground truth box of its image with the highest IoU; IoU >= 0.5 with a box not yet taken is a true positive,
with a difficult box nothing (neither true nor false positive), otherwise a false positive. Classes without ground
truth are left out of the means. Beside them, COCO-style AP@[.5:.95] by pycocotools with difficult boxes as crowd
(ignore) regions, as mmdetection's VOC-to-COCO conversion marks them and the LD paper reports VOC.

A dataset written by `yolo-ld convert voc` is evaluated against its original XMLs (under its `voc_root`); other
datasets against their YOLO labels (no difficult objects), or the original json of a `yolo-ld convert coco` dataset.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from ultralytics.utils import LOGGER

from ..data.voc import parse_voc_xml
from .coco import Validator as COCOValidator
from .coco import coco_detections, coco_evaluate, load_ground_truth, relative_path, run_validator

PREDICTIONS = "predictions-voc.json"  # written next to the run by val()


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Return the IoU of one xyxy box (4,) with xyxy boxes (M, 4), in continuous pixel coordinates."""
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, np.finfo(float).eps)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """Return the AP of a precision-recall curve (points in detection order, recall non-decreasing).

    Args:
        recall (np.ndarray): Recall after each detection.
        precision (np.ndarray): Precision after each detection.
        use_07_metric (bool): VOC2007's 11-point AP: the mean over t = 0, 0.1, ..., 1 of the highest precision at
            recall >= t (0 where none). Otherwise VOC2010+'s area under the precision envelope (precision made
            non-increasing in recall), summed over the recall steps.
    """
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    if use_07_metric:
        return float(sum(precision[recall >= t].max(initial=0.0) for t in (i / 10 for i in range(11))) / 11)
    r = np.concatenate(([0.0], recall, [1.0]))
    p = np.concatenate(([0.0], precision, [0.0]))
    p = np.maximum.accumulate(p[::-1])[::-1]  # envelope: the highest precision at any larger recall
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(((r[steps + 1] - r[steps]) * p[steps + 1]).sum())


def match_detections(
    detections: list[tuple[Any, float, np.ndarray]], gts: dict[Any, tuple[np.ndarray, np.ndarray]], iou_thr: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Match one class's detections to its ground truth by the VOC devkit's rules.

    Args:
        detections (list[tuple]): (image id, score, xyxy box) of each detection of the class.
        gts (dict): image id -> (xyxy boxes (M, 4), difficult flags (M,)) of the class.
        iou_thr (float): Lowest IoU of a match.

    Returns:
        (tuple[np.ndarray, np.ndarray]): Boolean tp and fp of each detection in descending score order (stable);
            a detection on a difficult box is neither.
    """
    order = np.argsort([-d[1] for d in detections], kind="stable")
    tp, fp = np.zeros(len(detections), bool), np.zeros(len(detections), bool)
    taken = {k: np.zeros(len(v[0]), bool) for k, v in gts.items()}
    for i, d in enumerate(order):
        image_id, _, box = detections[d]
        boxes, difficult = gts.get(image_id, (np.zeros((0, 4)), np.zeros(0, bool)))
        iou = box_iou(np.asarray(box, float), np.asarray(boxes, float).reshape(-1, 4))
        j = int(iou.argmax()) if len(iou) else -1
        if j < 0 or iou[j] < iou_thr:
            fp[i] = True
        elif not difficult[j]:
            tp[i], fp[i] = not taken[image_id][j], taken[image_id][j]  # a second detection of a box is false
            taken[image_id][j] = True
    return tp, fp


def precision_recall(tp: np.ndarray, fp: np.ndarray, npos: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (recall, precision) after each counted detection (those on difficult boxes left out)."""
    keep = tp | fp
    tps, fps = np.cumsum(tp[keep]), np.cumsum(fp[keep])
    return tps / max(npos, 1), tps / np.maximum(tps + fps, 1)


def class_ap(detections: list[tuple], gts: dict[Any, tuple[np.ndarray, np.ndarray]], iou_thr: float = 0.5) -> dict:
    """Return one class's {'AP07', 'AP', 'gt', 'difficult', 'dets'}; the APs are nan without ground truth."""
    npos = int(sum((~np.asarray(d, bool)).sum() for _, d in gts.values()))
    ndiff = int(sum(np.asarray(d, bool).sum() for _, d in gts.values()))
    tp, fp = match_detections(detections, gts, iou_thr)
    recall, precision = precision_recall(tp, fp, npos)
    aps = (voc_ap(recall, precision, True), voc_ap(recall, precision)) if npos else (float("nan"),) * 2
    return {"AP07": aps[0], "AP": aps[1], "gt": npos, "difficult": ndiff, "dets": len(detections)}


def voc_evaluate(gt: dict, detections: list[dict], iou_thr: float = 0.5) -> dict[int, dict]:
    """Return {category id: class_ap(...)} for an instances dict (iscrowd = difficult) and COCO result dicts."""
    gts: dict[int, dict] = defaultdict(dict)
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        boxes, difficult = gts[a["category_id"]].setdefault(a["image_id"], ([], []))
        boxes.append((x, y, x + w, y + h))
        difficult.append(bool(a.get("iscrowd", 0)))
    dets: dict[int, list] = defaultdict(list)
    for d in detections:
        x, y, w, h = d["bbox"]
        dets[d["category_id"]].append((d["image_id"], d["score"], np.array((x, y, x + w, y + h))))
    results = {}
    for c in (c["id"] for c in gt["categories"]):
        per_image = {k: (np.array(b, float).reshape(-1, 4), np.array(f, bool)) for k, (b, f) in gts[c].items()}
        results[c] = class_ap(dets[c], per_image, iou_thr)
    return results


def voc_ground_truth(im_files: list[str], root: str | list, voc_root: Path, names: dict[int, str]) -> dict:
    """Return an instances dict of the images' original VOC XMLs (difficult as iscrowd), image ids = positions.

    Each image `root/VOC<year>/<id>.<ext>` (as `yolo-ld convert voc` writes them) has its XML at
    `voc_root/VOC<year>/Annotations/<id>.xml`.
    """
    cat_of = {v: k + 1 for k, v in names.items()}
    images, anns = [], []
    for i, f in enumerate(im_files):
        rel = relative_path(f, root)
        xml = voc_root / Path(rel).parts[0] / "Annotations" / f"{Path(f).stem}.xml" if rel else None
        if xml is None or not xml.is_file():
            raise FileNotFoundError(f"the VOC annotation of '{f}' ('{xml}') does not exist; is voc_root right?")
        wh, objects = parse_voc_xml(xml)
        images.append({"id": i, "file_name": f, "width": (wh or (0, 0))[0], "height": (wh or (0, 0))[1]})
        for o in objects:
            if o.name not in cat_of:
                raise ValueError(f"'{xml}': class '{o.name}' is not in the dataset's names.")
            x0, y0, x1, y1 = o.box
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cat_of[o.name],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": int(o.difficult),
                }
            )
    return {"images": images, "annotations": anns, "categories": [{"id": k + 1, "name": v} for k, v in names.items()]}


class Validator(COCOValidator):
    """DetectionValidator whose stats add VOC mAP@0.5 (11-point and area) and COCO-style AP, with fitness VOC07 mAP.

    The returned stats hold `metrics/mAP50_07(voc)`, `metrics/mAP50(voc)`, `metrics/AP(voc)` ... (COCO-style numbers
    with difficult boxes ignored) and `fitness` = `metrics/mAP50_07(voc)`.

    Examples:
        >>> from ultrald.eval.voc import Validator
        >>> stats = Validator(args=dict(model="best.pt", data="voc/data.yaml"))()
        >>> stats["fitness"] == stats["metrics/mAP50_07(voc)"]
    """

    protocol = "voc"
    fitness_key = "mAP50_07"
    max_det = None  # VOC sets no limit: keep Ultralytics' max_det

    def ground_truth(self):
        """Return (ground truth, im_file -> image id, class -> category id), loaded once per validator.

        A `yolo-ld convert voc` dataset gives its original XMLs; other datasets as the COCO validator has them.
        """
        voc_root = self.data.get("voc_root")
        if not voc_root:
            return super().ground_truth()
        split, dataset = self.args.split or "val", self.dataloader.dataset
        key = (split, voc_root, len(dataset.im_files))
        if self._gt_cache and self._gt_cache[0] == key:
            return self._gt_cache[1]
        names = self.data["names"]
        gt = load_ground_truth(voc_ground_truth(dataset.im_files, self.data[split], Path(voc_root), names))
        result = gt, {f: i for i, f in enumerate(dataset.im_files)}, {i: i + 1 for i in names}
        self._gt_cache = key, result
        return result

    def evaluate(self) -> dict[str, Any]:
        """Evaluate the recorded predictions: VOC APs per class and their means, COCO-style numbers; log a table."""
        gt, image_ids, category_ids = self.ground_truth()
        self.detections = coco_detections(self.records, image_ids, category_ids)
        coco, _ = coco_evaluate(gt, self.detections, list(image_ids.values()))
        ids = set(image_ids.values())
        evaluated = {**gt.dataset, "annotations": [a for a in gt.dataset["annotations"] if a["image_id"] in ids]}
        per_class = voc_evaluate(evaluated, [d for d in self.detections if d["image_id"] in ids])
        names = {c["id"]: c.get("name", str(c["id"])) for c in gt.dataset["categories"]}
        classes = {names[c]: r for c, r in per_class.items()}
        scored = [r for r in classes.values() if r["gt"]]
        mean = lambda k: float(np.mean([r[k] for r in scored])) if scored else 0.0  # noqa: E731
        results = {"mAP50_07": mean("AP07"), "mAP50": mean("AP"), **coco, "classes": classes}
        if self.training:
            LOGGER.info(
                f"VOC: mAP50 {results['mAP50_07']:.4f} (11-point), {results['mAP50']:.4f} (area); "
                f"COCO-style AP {coco['AP']:.4f}"
            )
        else:
            LOGGER.info(voc_table(results, len(image_ids)))
        return results


def voc_table(results: dict, n_images: int) -> str:
    """Return the per-class table of VOC results (and the COCO-style line) as text."""
    rows = [
        f"\nVOC protocol ({n_images} images, IoU 0.5, difficult ignored):",
        f"{'class':>16} {'gt':>7} {'difficult':>9} {'dets':>8} {'AP50(07)':>9} {'AP50':>9}",
    ]
    fmt = lambda v: f"{v:9.4f}" if v == v else f"{'-':>9}"  # noqa: E731  (nan: no ground truth)
    for name, r in results["classes"].items():
        rows.append(f"{name:>16} {r['gt']:>7} {r['difficult']:>9} {r['dets']:>8} {fmt(r['AP07'])} {fmt(r['AP'])}")
    total = lambda k: sum(r[k] for r in results["classes"].values())  # noqa: E731
    rows.append(
        f"{'mean':>16} {total('gt'):>7} {total('difficult'):>9} {total('dets'):>8} "
        f"{fmt(results['mAP50_07'])} {fmt(results['mAP50'])}"
    )
    rows.append(
        "COCO-style (pycocotools, difficult as ignore): "
        + ", ".join(f"{k} {results[k]:.4f}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl"))
    )
    return "\n".join(rows)


def val(yolo, **overrides) -> dict[str, Any]:
    """Validate a YOLO detection model with the VOC protocol; save its predictions json; return the results.

    Args:
        yolo (ultralytics.YOLO): The model.
        **overrides (Any): Ultralytics val keys (data, imgsz, batch, device, conf, project, name, ...); conf=0.001.

    Returns:
        (dict[str, Any]): mAP50_07 (11-point), mAP50 (area), the 12 COCO-style numbers (AP, AP50, ..., ARl) and
            classes: {name: {AP07, AP, gt, difficult, dets}}.

    Examples:
        >>> from ultralytics import YOLO
        >>> from ultrald.eval import voc
        >>> voc.val(YOLO("best.pt"), data="voc/data.yaml")["mAP50_07"]
    """
    validator = run_validator(Validator, yolo, overrides)
    file = Path(validator.save_dir) / PREDICTIONS
    file.write_text(json.dumps(validator.detections))
    LOGGER.info(f"ultrald: VOC predictions (COCO result format, image ids = dataset positions) saved to {file}")
    return dict(validator.results)
