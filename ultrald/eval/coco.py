"""COCO protocol: pycocotools' 12 numbers against the original annotations, for `yolo-ld val ... metric=coco`.

A dataset written by `yolo-ld convert coco` is evaluated against its original instances json (crowd regions, areas
and image ids as published), predictions mapped back to original image ids, category ids and pixel coordinates. Any
other Ultralytics detection dataset is evaluated against a ground truth built in memory from its YOLO labels.

`Validator` is Ultralytics' DetectionValidator whose stats also carry these numbers and whose fitness is COCO
AP@[.5:.95], so a trainer that validates with it keeps best.pt by that metric.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from ultralytics.cfg import DEFAULT_CFG
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils import LOGGER, ops

from ..data.coco import IMAGE_IDS, load_instances
from . import gather_records

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
PREDICTIONS = "predictions-coco.json"  # written next to the run by val()


def load_ground_truth(source: str | Path | dict) -> COCO:
    """Return pycocotools' COCO for an instances json (path) or dict, completing what real files may omit.

    A missing `iscrowd` becomes 0, a missing `area` the box area, missing or repeated annotation ids are renumbered;
    annotations without a 4-number bbox of positive size (nothing can match it), or of unknown images or categories,
    are left out, as the converter leaves them out.
    """
    data = load_instances(source) if isinstance(source, (str, Path)) else source
    images = {img["id"] for img in data["images"] if isinstance(img, dict) and "id" in img}
    cats = {c["id"] for c in data["categories"] if isinstance(c, dict) and "id" in c}
    anns = []
    for a in data["annotations"]:
        box = a.get("bbox") if isinstance(a, dict) else None
        if _box(box) and a.get("image_id") in images and a.get("category_id") in cats:
            anns.append({**a, "iscrowd": int(a.get("iscrowd", 0) or 0), "area": a.get("area", box[2] * box[3])})
    if len({a.get("id") for a in anns}) != len(anns) or any(not isinstance(a.get("id"), int) for a in anns):
        anns = [{**a, "id": i} for i, a in enumerate(anns, 1)]
    gt = COCO()
    gt.dataset = {**data, "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt.createIndex()
    return gt


def coco_evaluate(gt: COCO, detections: list[dict], image_ids: list[int] | None = None) -> tuple[dict, str]:
    """Run pycocotools' bbox COCOeval of `detections` (COCO result dicts) on `image_ids` (default: all of gt's).

    Returns:
        (tuple[dict[str, float], str]): The 12 numbers by COCO_KEYS (-1 where no ground truth), and their summary text.
    """
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if detections:
            dt = gt.loadRes([dict(d) for d in detections])  # loadRes adds keys to the dicts it gets
        else:  # loadRes cannot take an empty list
            dt = COCO()
            dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
            dt.createIndex()
        e = COCOeval(gt, dt, "bbox")
        if image_ids is not None:
            e.params.imgIds = sorted(set(image_ids))
        e.evaluate()
        e.accumulate()
        start = out.tell()
        e.summarize()
    return dict(zip(COCO_KEYS, (float(x) for x in e.stats))), out.getvalue()[start:].rstrip()


def coco_detections(records: list[dict], image_ids: dict[str, int], category_ids: dict[int, int]) -> list[dict]:
    """Return COCO result dicts (xywh pixels) of per-image records {im_file, boxes (N, 4) xyxy pixels, scores, classes}.

    Images missing from `image_ids` and classes missing from `category_ids` are left out.
    """
    out = []
    for r in records:
        image_id = image_ids.get(r["im_file"])
        if image_id is None:
            continue
        for (x0, y0, x1, y1), s, c in zip(np.asarray(r["boxes"], float).tolist(), r["scores"], r["classes"]):
            if int(c) in category_ids:
                box = [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)]
                out.append(
                    {
                        "image_id": image_id,
                        "category_id": category_ids[int(c)],
                        "bbox": box,
                        "score": round(float(s), 5),
                    }
                )
    return out


def yolo_ground_truth(records: list[dict], names: dict[int, str]) -> dict:
    """Return an instances dict of the labels in per-image records {im_file, shape (h, w), gt_boxes xyxy, gt_classes}.

    Image ids are the record positions, category ids the class indices + 1; there is no crowd.
    """
    images, anns = [], []
    for i, r in enumerate(records):
        images.append({"id": i, "file_name": r["im_file"], "width": r["shape"][1], "height": r["shape"][0]})
        for (x0, y0, x1, y1), c in zip(np.asarray(r["gt_boxes"], float).reshape(-1, 4).tolist(), r["gt_classes"]):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(c) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k + 1, "name": v} for k, v in names.items()]
    return {"images": images, "annotations": anns, "categories": categories}


def relative_path(file: str, roots: str | Path | list) -> str | None:
    """Return `file` relative to the first of the folders `roots` it lies in, as a posix path; None when in none."""
    for root in roots if isinstance(roots, list) else [roots]:
        with contextlib.suppress(ValueError):
            return Path(file).relative_to(root).as_posix()
    return None


def _box(box) -> bool:
    """Return whether box is 4 finite numbers x, y, w, h with w, h > 0."""
    numbers = isinstance(box, (list, tuple)) and len(box) == 4
    numbers = numbers and all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)
    return numbers and box[2] > 0 and box[3] > 0


class Validator(DetectionValidator):
    """DetectionValidator whose stats add the COCO protocol's 12 numbers and whose fitness is COCO AP@[.5:.95].

    Predictions are kept per image in original pixels and evaluated by pycocotools after Ultralytics' own metrics, so
    the returned stats hold `metrics/AP(coco)`, ..., `metrics/ARl(coco)` and `fitness` = `metrics/AP(coco)`. As COCO
    counts at most 100 detections per image, Ultralytics' default max_det=300 becomes 100.

    Attributes:
        results (dict[str, float]): The protocol's numbers of the last validation, by COCO_KEYS.
        detections (list[dict]): The last validation's predictions as COCO result dicts.

    Examples:
        >>> from ultrald.eval.coco import Validator
        >>> stats = Validator(args=dict(model="best.pt", data="coco/data.yaml"))()
        >>> stats["fitness"] == stats["metrics/AP(coco)"]
    """

    protocol = "coco"
    fitness_key = "AP"
    max_det = 100  # the protocol's detections per image; None keeps Ultralytics' max_det

    def __init__(self, dataloader=None, save_dir=None, args=None, _callbacks=None) -> None:
        """Build Ultralytics' DetectionValidator, then apply the protocol's max_det unless one was given."""
        super().__init__(dataloader, save_dir, args, _callbacks)
        if self.max_det and self.args.max_det == DEFAULT_CFG.max_det:
            self.args.max_det = self.max_det
        self.records: list[dict] = []  # per image: im_file, shape, boxes, scores, classes, gt_boxes, gt_classes
        self.results: dict[str, Any] = {}
        self.detections: list[dict] = []
        self._gt_cache: tuple | None = None

    def init_metrics(self, model) -> None:
        """Initialise Ultralytics' metrics and the per-image prediction records; load the ground truth once."""
        super().init_metrics(model)
        self.records = []
        self.ground_truth()  # fail before inference, not after, when the annotations cannot be read

    def update_metrics(self, preds: list[dict], batch: dict) -> None:
        """Update Ultralytics' metrics, and record each image's predictions and labels in original pixels."""
        super().update_metrics(preds, batch)
        for si, pred in enumerate(preds):
            pb = self._prepare_batch(si, batch)

            def scale(b, pb=pb):
                return ops.scale_boxes(pb["imgsz"], b.clone(), pb["ori_shape"], ratio_pad=pb["ratio_pad"])

            self.records.append(
                {
                    "im_file": pb["im_file"],
                    "shape": tuple(int(x) for x in pb["ori_shape"]),
                    "boxes": scale(pred["bboxes"]).float().cpu().numpy(),
                    "scores": pred["conf"].float().cpu().numpy(),
                    "classes": pred["cls"].cpu().numpy(),
                    "gt_classes": pb["cls"].cpu().numpy(),
                    "gt_boxes": scale(pb["bboxes"]).float().cpu().numpy() if len(pb["cls"]) else np.zeros((0, 4)),
                }
            )

    def gather_stats(self) -> None:
        """Gather Ultralytics' stats, and under DDP the prediction records, on rank 0."""
        super().gather_stats()
        self.records = gather_records(self.records)

    def get_stats(self) -> dict[str, Any]:
        """Return Ultralytics' stats plus the protocol's numbers, with fitness set to the protocol's AP."""
        stats = super().get_stats()
        self.results = self.evaluate()
        stats.update({f"metrics/{k}({self.protocol})": v for k, v in self.results.items() if isinstance(v, float)})
        stats["fitness"] = self.results[self.fitness_key]
        return stats

    def ground_truth(self) -> tuple[COCO, dict[str, int], dict[int, int]]:
        """Return (ground truth, im_file -> image id, class -> category id).

        A `yolo-ld convert coco` dataset gives its original json of the split (loaded once per validator); other
        datasets the labels recorded during this validation.
        """
        split = self.args.split or "val"
        dataset = self.dataloader.dataset
        annotations = (self.data.get("annotations") or {}).get(split)
        if not annotations:
            names = self.data["names"]
            gt = load_ground_truth(yolo_ground_truth(self.records, names))
            return gt, {r["im_file"]: i for i, r in enumerate(self.records)}, {i: i + 1 for i in names}
        key = (split, annotations, len(dataset.im_files))
        if self._gt_cache and self._gt_cache[0] == key:
            return self._gt_cache[1]
        gt = load_ground_truth(annotations)
        ids_file = Path(self.data["path"]) / self.data.get("image_ids", IMAGE_IDS)
        if not ids_file.is_file():
            raise FileNotFoundError(f"'{ids_file}' (image path -> COCO image id) is missing; re-run the converter.")
        by_path = json.loads(ids_file.read_text()).get(split, {})
        root = self.data[split]
        image_ids = {f: by_path[r] for f in dataset.im_files if (r := relative_path(f, root)) in by_path}
        if len(image_ids) < len(dataset.im_files):
            LOGGER.warning(
                f"ultrald: {len(dataset.im_files) - len(image_ids)} {split} images are not in "
                f"'{ids_file}' and are left out of the COCO evaluation."
            )
        category_ids = {int(k): int(v) for k, v in self.data["category_ids"].items()}
        self._gt_cache = key, (gt, image_ids, category_ids)
        return gt, image_ids, category_ids

    def evaluate(self) -> dict[str, Any]:
        """Evaluate the recorded predictions with pycocotools; log the summary; return the 12 numbers."""
        gt, image_ids, category_ids = self.ground_truth()
        self.detections = coco_detections(self.records, image_ids, category_ids)
        results, text = coco_evaluate(gt, self.detections, list(image_ids.values()))
        if self.training:
            LOGGER.info("pycocotools: " + ", ".join(f"{k} {results[k]:.4f}" for k in ("AP", "AP50", "AP75")))
        else:
            LOGGER.info(f"\nCOCO protocol (pycocotools, {len(image_ids)} images):\n{text}")
        return results


def val(yolo, **overrides) -> dict[str, float]:
    """Validate a YOLO detection model with the COCO protocol; save its predictions json; return the 12 numbers.

    Args:
        yolo (ultralytics.YOLO): The model.
        **overrides (Any): Ultralytics val keys (data, imgsz, batch, device, conf, max_det, project, name, ...).
            COCO defaults: conf=0.001, max_det=100.

    Returns:
        (dict[str, float]): AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl.

    Examples:
        >>> from ultralytics import YOLO
        >>> from ultrald.eval import coco
        >>> coco.val(YOLO("best.pt"), data="coco/data.yaml", imgsz=640)["AP"]
    """
    validator = run_validator(Validator, yolo, overrides)
    file = Path(validator.save_dir) / PREDICTIONS
    file.write_text(json.dumps(validator.detections))
    LOGGER.info(f"ultrald: COCO predictions saved to {file}")
    return dict(validator.results)


def run_validator(cls: type, yolo, overrides: dict) -> DetectionValidator:
    """Run the validator class `cls` on `yolo` as `YOLO.val` would (rect batches, conf=0.001); return it."""
    if yolo.task != "detect":
        raise SyntaxError(f"metric={cls.protocol} evaluates detection models, this model's task is '{yolo.task}'.")
    if overrides.get("data") is None:
        raise SyntaxError(f"'data' is required for metric={cls.protocol}, e.g. data=coco/data.yaml")
    args = {**yolo.overrides, "rect": True, "conf": 0.001, **overrides, "mode": "val"}
    validator = cls(args=args, _callbacks=yolo.callbacks)
    validator(model=yolo.model)
    return validator
