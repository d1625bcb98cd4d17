"""Benchmark evaluation protocols for `metric=coco|voc|dota`, and the one registry of the benchmarks: each has a
converter (`yolo-ld convert NAME`, ultrald.data.NAME.cli) and a protocol (`metric=NAME`, ultrald.eval.NAME.Validator, an
ultrald.eval.protocol.ProtocolValidator). VOC and DOTA share ultrald.eval.ap; COCO is pycocotools' COCOeval."""

from __future__ import annotations

from enum import Enum
from importlib import import_module


class Benchmark(str, Enum):
    """A benchmark by its `metric=` and `yolo-ld convert` name: the task it evaluates, its validator, its converter."""

    COCO = "coco"
    VOC = "voc"
    DOTA = "dota"

    @property
    def task(self) -> str:
        """The Ultralytics task of the models it evaluates."""
        return "obb" if self is Benchmark.DOTA else "detect"

    @property
    def validator(self) -> type:
        """The protocol's validator class (its module, with pycocotools and shapely, loads on first use)."""
        return import_module(f".{self.value}", __name__).Validator
