"""PASCAL VOC protocol, for `metric=voc`: per-class AP at IoU 0.5, difficult objects ignored.

VOC2007's 11-point AP (the fitness) and the VOC2010+ area AP, by py-faster-rcnn's `voc_eval` rules as ultrald.eval.ap
states them (shared with DOTA). Beside them, COCO-style AP@[.5:.95] by pycocotools with difficult boxes as crowd
(ignore) regions, as mmdetection's VOC-to-COCO conversion marks them and the LD paper reports VOC. A dataset written by
`yolo-ld convert voc` is evaluated against its original XMLs (under its `voc_root`); other datasets against their YOLO
labels (no difficult objects), or the original json of a `yolo-ld convert coco` dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou as _box_iou
from ultralytics.utils import LOGGER, ops

from ..data.voc import parse_voc_xml
from . import Benchmark
from .ap import average_precision, class_table, means
from .coco import COCO_KEYS, coco_detections, coco_evaluate, instances, load_ground_truth, relative_path
from .coco import Validator as COCOValidator


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the IoU (N, M) of xyxy boxes a (N, 4) and b (M, 4) in continuous pixels (torchvision, in float64)."""
    a, b = (torch.as_tensor(np.asarray(x, float).reshape(-1, 4)) for x in (a, b))
    return _box_iou(a, b).numpy()


def voc_evaluate(gt: dict, detections: list[dict], iou_thr: float = 0.5, image_ids=None) -> dict[int, dict]:
    """Return {category id: {AP07, AP, gt, difficult, dets}} (nan APs without ground truth) of COCO result dicts
    against an instances dict whose crowd annotations are the difficult objects, on `image_ids` (default: all)."""
    rows = {i: ([], []) for i in ([img["id"] for img in gt["images"]] if image_ids is None else image_ids)}
    for k, items in enumerate((gt["annotations"], detections)):
        for x in items:
            rows.get(x["image_id"], ([], []))[k].append(x)  # images outside `rows` are not evaluated

    def arrays(items, *keys):  # COCO dicts -> their xywh bboxes as xyxy (K, 4), then each of `keys` (K,)
        boxes = ops.ltwh2xyxy(np.array([x["bbox"] for x in items], float).reshape(-1, 4))
        return boxes, *(np.array([x.get(k, 0) for x in items]) for k in keys)

    gts = {i: arrays(r[0], "category_id", "iscrowd") for i, r in rows.items()}  # difficult objects are crowd
    dets = {i: arrays(r[1], "score", "category_id") for i, r in rows.items()}
    per_class = average_precision(dets, gts, box_iou, [c["id"] for c in gt["categories"]], (iou_thr,))
    return {c: {**r, "AP07": float(r["AP07"][0]), "AP": float(r["AP"][0])} for c, r in per_class.items()}


def voc_ground_truth(im_files: list[str], root: str | list, voc_root: Path, names: dict[int, str]) -> dict:
    """Return an instances dict (image ids = positions, difficult as iscrowd) of the original XMLs of images
    `root/VOC<year>/<id>.<ext>`, as `yolo-ld convert voc` writes them: `voc_root/VOC<year>/Annotations/<id>.xml`."""
    cls_of, images, objects = {v: k for k, v in names.items()}, [], []
    for i, f in enumerate(im_files):
        rel = relative_path(f, root)
        xml = voc_root / Path(rel).parts[0] / "Annotations" / f"{Path(f).stem}.xml" if rel else None
        if xml is None or not xml.is_file():
            raise FileNotFoundError(f"the VOC annotation of '{f}' ('{xml}') does not exist; is voc_root right?")
        wh, found = parse_voc_xml(xml)
        images.append((f, *(wh or (0, 0))))
        for o in found:
            if o.name not in cls_of:
                raise ValueError(f"'{xml}': class '{o.name}' is not in the dataset's names.")
            objects.append((i, cls_of[o.name], o.box, o.difficult))
    return instances(images, objects, names)


class Validator(COCOValidator):
    """DetectionValidator whose stats add VOC mAP@0.5 (`metrics/mAP50_07(voc)`: 11-point, the fitness; `mAP50`: area)
    and COCO-style numbers with difficult boxes ignored (`metrics/AP(voc)` ...); `results["classes"]` holds each
    class's {AP07, AP, gt, difficult, dets}."""

    benchmark, keys, fitness_key, max_det = Benchmark.VOC, ("mAP50_07", "mAP50", *COCO_KEYS), "mAP50_07", None

    def ground_truth(self):
        """Return (ground truth, im_file -> image id, class -> category id): the original XMLs of a `yolo-ld convert
        voc` dataset (loaded once per validator), else as the COCO validator has them."""
        voc_root, split, names = self.data.get("voc_root"), self.args.split or "val", self.data["names"]
        if not voc_root:
            return super().ground_truth()
        im_files = self.dataloader.dataset.im_files

        def load():
            gt = load_ground_truth(voc_ground_truth(im_files, self.data[split], Path(voc_root), names))
            return gt, {f: i for i, f in enumerate(im_files)}, {i: i + 1 for i in names}

        return self.cached((split, voc_root, len(im_files)), load)

    def evaluate(self) -> dict[str, Any]:
        """Evaluate the records: VOC APs per class and their means, COCO-style numbers; log a table."""
        gt, image_ids, category_ids = self.ground_truth()
        self.detections = coco_detections(self.records, image_ids, category_ids)
        coco, _ = coco_evaluate(gt, self.detections, list(image_ids.values()))
        per_class = voc_evaluate(gt.dataset, self.detections, image_ids=image_ids.values())
        classes = {c.get("name", str(c["id"])): per_class[c["id"]] for c in gt.dataset["categories"]}
        mean = means(classes, ("AP07", "AP"))
        results = {"mAP50_07": mean["AP07"], "mAP50": mean["AP"], **coco, "classes": classes}
        line = f"VOC: mAP50 {mean['AP07']:.4f} (11-point), {mean['AP']:.4f} (area); COCO-style AP {coco['AP']:.4f}"
        title = f"\nVOC protocol ({len(image_ids)} images, IoU 0.5, difficult ignored):"
        table = class_table(title, classes, {"AP50(07)": "AP07", "AP50": "AP"}, mean)
        coco_line = ", ".join(f"{k} {coco[k]:.4f}" for k in COCO_KEYS[:6])
        LOGGER.info(line if self.training else f"{table}\nCOCO-style (pycocotools, difficult as ignore): {coco_line}")
        return results


val = Validator.val  # val(yolo, **overrides) -> mAP50_07, mAP50, the 12 COCO-style numbers, classes
