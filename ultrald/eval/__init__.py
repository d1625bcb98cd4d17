"""Benchmark evaluation protocols for `metric=coco|voc|dota`: validators that report the benchmark's own numbers."""

from __future__ import annotations

import torch.distributed as dist
from ultralytics.utils import RANK


def gather_records(records: list) -> list:
    """Return all ranks' `records` joined on rank 0 under DDP (an empty list on the others), else `records` as is."""
    if RANK < 0:
        return records
    gathered = [None] * dist.get_world_size() if RANK == 0 else None
    dist.gather_object(records, gathered, dst=0)
    return [r for part in gathered for r in part] if RANK == 0 else []
