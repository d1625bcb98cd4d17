"""The protocol interface: an Ultralytics validator that also evaluates with a benchmark's own rules.

It records each image's predictions and labels in original pixels, evaluates them after Ultralytics' metrics, adds the
numbers to the stats as `metrics/<key>(<benchmark>)` and makes one of them the fitness (so a trainer keeps best.pt by
it). Only public Ultralytics API: the batch's keys and `ultralytics.utils.ops`, scaled as its validators scale them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ultralytics.cfg import DEFAULT_CFG
from ultralytics.utils import LOGGER, RANK, ops

from . import Benchmark


def batch_labels(batch: dict, si: int, obb: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the labels of image `si` of a validation batch in the batch's (letterboxed) pixels: (boxes, classes),
    boxes xyxy (M, 4), or xywhr (M, 5) with `obb`: the format of the predictions in that batch."""
    idx = batch["batch_idx"] == si
    boxes = batch["bboxes"][idx].clone()
    boxes[:, :4] *= boxes.new_tensor(batch["img"].shape[2:])[[1, 0, 1, 0]]
    return (boxes if obb else ops.xywh2xyxy(boxes)), batch["cls"][idx].reshape(-1)


def image_records(preds: list[dict], batch: dict, obb: bool = False) -> list[dict]:
    """Return a record per image of a batch: im_file, shape (h, w) and in original pixels the predictions (`boxes` xyxy
    (N, 4), or `polys` (N, 8) with `obb`), `scores`, `classes`, and labels (`gt_boxes` or `gt_polys`, `gt_classes`)."""
    key, imgsz, records = "polys" if obb else "boxes", batch["img"].shape[2:], []

    def original(boxes: torch.Tensor, si: int) -> np.ndarray:  # batch pixels -> original pixels, as the validators
        shape, pad = batch["ori_shape"][si], batch["ratio_pad"][si]
        boxes = ops.scale_boxes(imgsz, boxes.detach().float().clone(), shape, ratio_pad=pad, xywh=obb)
        return (ops.xywhr2xyxyxyxy(boxes).reshape(-1, 8) if obb else boxes).cpu().numpy()

    for si, pred in enumerate(preds):
        gt, classes = batch_labels(batch, si, obb)
        record = {"im_file": batch["im_file"][si], "shape": tuple(int(x) for x in batch["ori_shape"][si])}
        record.update({key: original(pred["bboxes"], si), "scores": pred["conf"].float().cpu().numpy()})
        record.update({"classes": pred["cls"].cpu().numpy(), f"gt_{key}": original(gt, si)})
        records.append({**record, "gt_classes": classes.cpu().numpy()})
    return records


class ProtocolValidator:
    """Mixin ahead of an Ultralytics validator class, the interface of every protocol in ultrald.eval: a protocol sets
    the attributes below; its `evaluate()` reads `records` (see image_records), sets `detections`, returns `results`."""

    benchmark: Benchmark
    keys: tuple[str, ...] = ()  # its numbers in the stats
    fitness_key: str = ""
    max_det: int | None = None  # its detections per image; None keeps Ultralytics'
    options: tuple[str, ...] = ()  # Python-only keywords of `val` that set attributes

    def __init__(self, dataloader=None, save_dir=None, args=None, _callbacks=None) -> None:
        """Build the Ultralytics validator, then apply the protocol's max_det unless one was given."""
        super().__init__(dataloader, save_dir, args, _callbacks)
        if self.max_det and self.args.max_det == DEFAULT_CFG.max_det:
            self.args.max_det = self.max_det
        self.records, self.results, self.detections, self._cache = [], {}, [], None

    def init_metrics(self, model) -> None:
        """Initialise Ultralytics' metrics and the records."""
        super().init_metrics(model)
        self.records = []

    def update_metrics(self, preds: list[dict], batch: dict) -> None:
        """Update Ultralytics' metrics, then record each image's predictions and labels in original pixels."""
        super().update_metrics(preds, batch)
        self.records += image_records(preds, batch, self.benchmark.task == "obb")

    def gather_stats(self) -> None:
        """Gather Ultralytics' stats, and under DDP the records, on rank 0 (the other ranks keep none)."""
        super().gather_stats()
        if RANK >= 0:
            gathered = [None] * dist.get_world_size() if RANK == 0 else None
            dist.gather_object(self.records, gathered, dst=0)
            self.records = [r for part in gathered for r in part] if RANK == 0 else []

    def get_stats(self) -> dict[str, Any]:
        """Return Ultralytics' stats plus the protocol's numbers, with fitness set to its `fitness_key`."""
        stats = super().get_stats()
        self.results = self.evaluate()
        stats.update({f"metrics/{k}({self.benchmark.value})": float(self.results.get(k, 0.0)) for k in self.keys})
        stats["fitness"] = float(self.results.get(self.fitness_key, 0.0))
        return stats

    def evaluate(self) -> dict[str, Any]:
        """Evaluate `records` with the protocol; set `detections`; log; return the results."""
        raise NotImplementedError

    def cached(self, key, load):
        """Return `load()`, computed once per `key`: the ground truth of a split is read once per validator."""
        if self._cache is None or self._cache[0] != key:
            self._cache = key, load()
        return self._cache[1]

    def save(self) -> dict[str, Any]:
        """Write `detections` as `predictions-<benchmark>.json` in the run folder; return what `val` adds to results."""
        file = Path(self.save_dir) / f"predictions-{self.benchmark.value}.json"
        file.write_text(json.dumps(self.detections))
        LOGGER.info(f"ultrald: {self.benchmark.name} predictions (COCO result format) saved to {file}")
        return {}

    @classmethod
    def run(cls, yolo, **overrides) -> ProtocolValidator:
        """Run the protocol on a YOLO model as `YOLO.val` would (rect batches, conf=0.001); return the validator."""
        name, task = cls.benchmark.value, cls.benchmark.task
        if yolo.task != task:
            raise SyntaxError(f"metric={name} evaluates {task} models, this model's task is '{yolo.task}'.")
        if overrides.get("data") is None:
            raise SyntaxError(f"'data' is required for metric={name}, e.g. data=datasets/{name}/data.yaml")
        options = {k: overrides.pop(k) for k in cls.options if k in overrides}
        args = {**yolo.overrides, "rect": True, "conf": 0.001, **overrides, "mode": "val"}
        validator = cls(args=args, _callbacks=yolo.callbacks)
        vars(validator).update(options)
        validator(model=yolo.model)
        return validator

    @classmethod
    def val(cls, yolo, **overrides) -> dict[str, Any]:
        """Validate a YOLO model with the protocol (`run`), save its detections, return its results, e.g.
        `Benchmark.COCO.validator.val(YOLO("best.pt"), data="coco/data.yaml", imgsz=640)["AP"]`."""
        validator = cls.run(yolo, **overrides)
        return {**validator.results, **validator.save()}
