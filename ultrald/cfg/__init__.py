"""Distillation settings: ultrald's keys, merged over Ultralytics' defaults and checked."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ultralytics.cfg import DEFAULT_CFG, DEFAULT_CFG_DICT, cfg2dict
from ultralytics.utils import YAML

from ..distill.criterion import MAIN_WEIGHTS
from ..distill.edges import BOX_TYPES
from ..distill.losses import ALD_TYPES
from ..eval import Benchmark

LD_CFG_PATH = Path(__file__).parent / "default.yaml"
LD_DEFAULTS: dict[str, Any] = YAML.load(LD_CFG_PATH)
RECIPES_DIR = Path(__file__).parent / "recipes"  # the one place each recipe lives: coco, voc, dota, shapes
RECIPES = tuple(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))

_WEIGHTS = ("ld", "kd", "vlr_ld", "vlr_kd", "ald", "dis", "ld_box", "ld_o2o")
_TEMPERATURES = ("ld_temp", "kd_temp")
KD_TYPES = ("binary", "softmax")
KD_REGIONS = ("main", "all")
METRICS = (None, *(b.value for b in Benchmark))  # metric=: a benchmark's own protocol, or Ultralytics' mAP


def recipe(name: str | Path) -> dict[str, Any]:
    """Return the keys of a recipe: a bundled one by name ('coco', 'voc', 'dota', 'shapes') or a yaml file's path."""
    path = Path(name)
    if not path.is_file() and path.stem in RECIPES and path.suffix in {"", ".yaml"}:
        path = RECIPES_DIR / f"{path.stem}.yaml"  # also the old repository paths, cfg/coco.yaml ...
    if not path.is_file():
        raise FileNotFoundError(f"cfg='{name}' is neither a recipe ({', '.join(RECIPES)}) nor a yaml file.")
    return {k: v for k, v in YAML.load(path).items() if k != "cfg"}


def ld_cfg(cfg: str | Path | dict | SimpleNamespace = DEFAULT_CFG) -> dict[str, Any]:
    """Return the full default cfg dict: Ultralytics' keys plus ultrald's, with `cfg` laid over them.

    Every key a recipe or dict sets is kept, `dis=6.0` included. Only Ultralytics' own complete default cfg (what a
    DDP worker is given, with no ultrald key in it) is read as "unset" where it holds Ultralytics' defaults, so that
    ultrald's defaults (e.g. dis=0) hold there; the worker's real settings arrive as overrides.
    """
    merged = {**DEFAULT_CFG_DICT, **LD_DEFAULTS}
    given = cfg2dict(cfg)
    if DEFAULT_CFG_DICT.keys() <= given.keys() and not (LD_DEFAULTS.keys() - DEFAULT_CFG_DICT.keys()) & given.keys():
        given = {k: v for k, v in given.items() if k not in DEFAULT_CFG_DICT or v != DEFAULT_CFG_DICT[k]}
    merged.update(given)
    return merged


def check_ld_args(args: dict | SimpleNamespace) -> None:
    """Check ultrald's keys in `args` (types and ranges), raising TypeError/ValueError that name the key and value.

    Ultralytics type-checks only its own keys, so ours are checked here.
    """
    a = args if isinstance(args, dict) else vars(args)
    for k in (*_WEIGHTS, *_TEMPERATURES, "vlr_alpha", "vlr_scale", "dis_until"):
        v = a.get(k, LD_DEFAULTS[k])
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"'{k}={v}' is of type {type(v).__name__}, expected a number, e.g. '{k}={LD_DEFAULTS[k]}'.")
    for k in _WEIGHTS:
        if a.get(k, 0) < 0:
            raise ValueError(f"'{k}={a[k]}' is negative; distillation weights must be >= 0 (0 turns the term off).")
    for k in _TEMPERATURES:
        if a.get(k, 1) <= 0:
            raise ValueError(f"'{k}={a[k]}' must be > 0; the paper uses ld_temp=10, kd_temp=2.")
    if not 0 <= a.get("vlr_alpha", 0.25) < 1:
        raise ValueError(f"'vlr_alpha={a['vlr_alpha']}' must lie in [0, 1); the paper uses 0.25.")
    if not 0 <= a.get("dis_until", 0) <= 1:
        raise ValueError(
            f"'dis_until={a['dis_until']}' must lie in [0, 1]: a fraction of the epochs (0: constant dis)."
        )
    if a.get("vlr_scale", 1) <= 0:
        raise ValueError(f"'vlr_scale={a['vlr_scale']}' must be > 0 (virtual anchor side in strides).")
    if not isinstance(a.get("vlr", True), bool):
        raise TypeError(f"'vlr={a['vlr']}' must be True or False.")
    if a.get("kd_type", "binary") not in KD_TYPES:
        raise ValueError(f"'kd_type={a['kd_type']}' is not one of {KD_TYPES}.")
    if a.get("kd_region", "main") not in KD_REGIONS:
        raise ValueError(f"'kd_region={a['kd_region']}' is not one of {KD_REGIONS}.")
    if a.get("main_weight", "target") not in MAIN_WEIGHTS:
        raise ValueError(f"'main_weight={a['main_weight']}' is not one of {tuple(MAIN_WEIGHTS)}.")
    if a.get("ld_box_type", BOX_TYPES[0]) not in BOX_TYPES:
        raise ValueError(f"'ld_box_type={a['ld_box_type']}' is not one of {BOX_TYPES}.")
    if a.get("ald_type", "sin2") not in ALD_TYPES:
        raise ValueError(f"'ald_type={a['ald_type']}' is not one of {ALD_TYPES}.")
    if (e := a.get("teacher_epochs")) is not None and (isinstance(e, bool) or not isinstance(e, int) or e < 1):
        raise ValueError(f"'teacher_epochs={e}' must be a whole number >= 1 (or unset: the student's epochs).")
    if (m := a.get("teacher_min_map", 0)) is None or isinstance(m, bool) or not 0 <= m <= 1:
        raise ValueError(f"'teacher_min_map={m}' must lie in [0, 1]: the teacher's mAP50 below which the run stops.")
    if a.get("metric") not in METRICS:
        raise ValueError(f"'metric={a['metric']}' is not one of {METRICS[1:]} (or unset for Ultralytics' mAP).")
