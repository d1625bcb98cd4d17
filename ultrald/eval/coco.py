"""COCO protocol: pycocotools' 12 numbers against the original annotations, for `metric=coco`.

A dataset written by `yolo-ld convert coco` is evaluated against its original instances json (crowd regions, areas
and image ids as published), predictions mapped back to original image ids, category ids and pixel coordinates. Any
other Ultralytics detection dataset is evaluated against a ground truth built in memory from its YOLO labels."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils import LOGGER

from ..data.coco import IMAGE_IDS, is_numbers, load_instances
from . import Benchmark
from .protocol import ProtocolValidator

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def load_ground_truth(source: str | Path | dict) -> COCO:
    """Return pycocotools' COCO for an instances json (path) or dict, completing what real files may omit. A missing
    `iscrowd` becomes 0, a missing `area` the box area, missing or repeated annotation ids are renumbered; annotations
    without a 4-number bbox of positive size (nothing can match it), or of unknown images or categories, are left out,
    as the converter leaves them out."""
    data = load_instances(source) if isinstance(source, (str, Path)) else source
    images = {img["id"] for img in data["images"] if isinstance(img, dict) and "id" in img}
    cats = {c["id"] for c in data["categories"] if isinstance(c, dict) and "id" in c}
    anns = []
    for a in data["annotations"]:
        box = a.get("bbox") if isinstance(a, dict) else None
        if is_numbers(box, 4) and min(box[2:]) > 0 and a.get("image_id") in images and a.get("category_id") in cats:
            anns.append({**a, "iscrowd": int(a.get("iscrowd", 0) or 0), "area": a.get("area", box[2] * box[3])})
    if len({a.get("id") for a in anns}) != len(anns) or any(not isinstance(a.get("id"), int) for a in anns):
        anns = [{**a, "id": i} for i, a in enumerate(anns, 1)]
    gt = COCO()
    gt.dataset = {**data, "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt.createIndex()
    return gt


def coco_evaluate(gt: COCO, detections: list[dict], image_ids: list[int] | None = None) -> tuple[dict, str]:
    """Run pycocotools' bbox COCOeval of `detections` (COCO result dicts) on `image_ids` (default: all of gt's);
    return the 12 numbers by COCO_KEYS (-1 where no ground truth) and their summary text."""
    out, nothing = io.StringIO(), {**gt.dataset, "annotations": []}  # loadRes cannot take an empty list
    with contextlib.redirect_stdout(out):
        dt = gt.loadRes([dict(d) for d in detections]) if detections else load_ground_truth(nothing)  # copies: loadRes
        e = COCOeval(gt, dt, "bbox")  # adds keys to the dicts it gets
        if image_ids is not None:
            e.params.imgIds = sorted(set(image_ids))
        e.evaluate()
        e.accumulate()
        start = out.tell()
        e.summarize()
    return dict(zip(COCO_KEYS, (float(x) for x in e.stats))), out.getvalue()[start:].rstrip()


def coco_detections(records: list[dict], image_ids: dict[str, int], category_ids: dict[int, int]) -> list[dict]:
    """Return COCO result dicts (xywh pixels) of per-image records {im_file, boxes (N, 4) xyxy pixels, scores, classes},
    leaving out images missing from `image_ids` and classes missing from `category_ids`; nothing is rounded."""
    out = []
    for r in (r for r in records if r["im_file"] in image_ids):
        for (x0, y0, x1, y1), s, c in zip(np.asarray(r["boxes"], float).tolist(), r["scores"], r["classes"]):
            if int(c) in category_ids:
                box, image_id = [x0, y0, x1 - x0, y1 - y0], image_ids[r["im_file"]]
                out.append({"image_id": image_id, "category_id": category_ids[int(c)], "bbox": box, "score": float(s)})
    return out


def instances(images: Sequence[tuple], objects: Sequence[tuple], names: dict[int, str]) -> dict:
    """Return an instances dict of `images` (file, width, height) and `objects` (image, class, xyxy box, crowd); image
    ids are the positions in `images`, category ids the class indices + 1."""
    data = {"images": [{"id": i, "file_name": f, "width": w, "height": h} for i, (f, w, h) in enumerate(images)]}
    data["categories"], data["annotations"] = [{"id": k + 1, "name": v} for k, v in names.items()], []
    for k, (i, c, (x0, y0, x1, y1), crowd) in enumerate(objects, 1):
        ann = {"id": k, "image_id": i, "category_id": int(c) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0]}
        data["annotations"].append({**ann, "area": (x1 - x0) * (y1 - y0), "iscrowd": int(crowd)})
    return data


def relative_path(file: str, roots: str | Path | list) -> str | None:
    """Return `file` relative to the first of the folders `roots` it lies in, as a posix path; None when in none."""
    roots = [Path(r) for r in (roots if isinstance(roots, list) else [roots])]
    return next((Path(file).relative_to(r).as_posix() for r in roots if Path(file).is_relative_to(r)), None)


class Validator(ProtocolValidator, DetectionValidator):
    """DetectionValidator whose stats add COCO's 12 numbers (`metrics/AP(coco)` ...), fitness COCO AP@[.5:.95];
    `detections` are COCO result dicts."""

    benchmark, keys, fitness_key, max_det = Benchmark.COCO, COCO_KEYS, "AP", 100  # COCO counts at most 100 per image

    def init_metrics(self, model) -> None:
        """Initialise the metrics; load the ground truth, so that unreadable annotations fail before inference."""
        super().init_metrics(model)
        self.ground_truth()

    def ground_truth(self) -> tuple[COCO, dict[str, int], dict[int, int]]:
        """Return (ground truth, im_file -> image id, class -> category id): the original json of a `yolo-ld convert
        coco` split (loaded once per validator), else the labels recorded during this validation."""
        split = self.args.split or "val"
        annotations = (self.data.get("annotations") or {}).get(split)
        if not annotations:  # image ids: positions in the records
            names, records = self.data["names"], enumerate(self.records)
            objects = [(i, c, b, 0) for i, r in records for b, c in zip(r["gt_boxes"].tolist(), r["gt_classes"])]
            gt = instances([(r["im_file"], r["shape"][1], r["shape"][0]) for r in self.records], objects, names)
            image_ids = {r["im_file"]: i for i, r in enumerate(self.records)}
            return load_ground_truth(gt), image_ids, {i: i + 1 for i in names}
        im_files = self.dataloader.dataset.im_files
        return self.cached((split, annotations, len(im_files)), lambda: self.converted(split, annotations, im_files))

    def converted(self, split: str, annotations: str, im_files: list[str]) -> tuple[COCO, dict, dict]:
        """Return the ground_truth() of a `yolo-ld convert coco` split: its json, image ids and category ids."""
        file = Path(self.data["path"]) / self.data.get("image_ids", IMAGE_IDS)
        if not file.is_file():
            raise FileNotFoundError(f"'{file}' (image path -> COCO image id) is missing; re-run the converter.")
        by_path = json.loads(file.read_text()).get(split, {})
        image_ids = {f: by_path[r] for f in im_files if (r := relative_path(f, self.data[split])) in by_path}
        if missing := len(im_files) - len(image_ids):
            LOGGER.warning(f"ultrald: {missing} {split} images are not in '{file}', left out of the COCO evaluation.")
        category_ids = {int(k): int(v) for k, v in self.data["category_ids"].items()}
        return load_ground_truth(annotations), image_ids, category_ids

    def evaluate(self) -> dict[str, Any]:
        """Evaluate the records with pycocotools; log the summary; return the 12 numbers."""
        gt, image_ids, category_ids = self.ground_truth()
        self.detections = coco_detections(self.records, image_ids, category_ids)
        results, text = coco_evaluate(gt, self.detections, list(image_ids.values()))
        line = "pycocotools: " + ", ".join(f"{k} {results[k]:.4f}" for k in ("AP", "AP50", "AP75"))
        LOGGER.info(line if self.training else f"\nCOCO protocol (pycocotools, {len(image_ids)} images):\n{text}")
        return results


val = Validator.val  # val(yolo, **overrides) -> the 12 numbers; writes predictions-coco.json in the run folder
