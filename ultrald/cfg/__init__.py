"""Distillation settings: ultrald's keys, merged over Ultralytics' defaults and checked."""

from __future__ import annotations

from dataclasses import field, make_dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ultralytics.cfg import DEFAULT_CFG, DEFAULT_CFG_DICT, cfg2dict
from ultralytics.utils import YAML

from ..distill.assign import ASSIGN_SOURCES
from ..distill.criterion import KD_REGIONS, MAIN_WEIGHTS
from ..distill.edges import BOX_FORMS
from ..distill.losses import ANGLE_FORMS, KD_FORMS
from ..distill.schedules import SCHEDULES
from ..eval import Benchmark
from ..registry import Registry

LD_CFG_PATH = Path(__file__).parent / "default.yaml"
LD_DEFAULTS: dict[str, Any] = YAML.load(LD_CFG_PATH)
RECIPES_DIR = Path(__file__).parent / "recipes"  # the one place each recipe lives: coco, voc, dota, shapes
RECIPES = tuple(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))

_WEIGHTS = ("ld", "kd", "vlr_ld", "vlr_kd", "ald", "dis", "ld_box", "ld_o2o")
_TEMPERATURES = ("ld_temp", "kd_temp")
METRICS = Registry("metric", **{b.value: b for b in Benchmark})  # a benchmark's own protocol; unset: Ultralytics' mAP


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


# ultrald's numeric keys: key -> (the allowed values, what the error says after "'key=value' ")
_NONNEGATIVE = (lambda v: v >= 0, "is negative; distillation weights must be >= 0 (0 turns the term off).")
_FRACTION = "must lie in [0, 1]"
RANGES = {
    **dict.fromkeys(_WEIGHTS, _NONNEGATIVE),
    **dict.fromkeys(_TEMPERATURES, (lambda v: v > 0, "must be > 0; the paper uses ld_temp=10, kd_temp=2.")),
    "vlr_alpha": (lambda v: 0 <= v < 1, "must lie in [0, 1); the paper uses 0.25."),
    "vlr_scale": (lambda v: v > 0, "must be > 0 (virtual anchor side in strides)."),
    "dis_until": (lambda v: 0 <= v <= 1, f"{_FRACTION}: a fraction of the epochs (0: constant dis)."),
    "assign_until": (lambda v: 0 <= v <= 1, f"{_FRACTION}: a fraction of the epochs (0: never hand over)."),
    "teacher_min_map": (lambda v: 0 <= v <= 1, f"{_FRACTION}: the teacher's mAP50 below which the run stops."),
}
# ultrald's keys with named values: key -> the registry that implements them
CHOICES = {
    "kd_type": KD_FORMS,
    "kd_region": KD_REGIONS,
    "main_weight": MAIN_WEIGHTS,
    "assign": ASSIGN_SOURCES,
    "distill_schedule": SCHEDULES,
    "ld_box_type": BOX_FORMS,
    "ald_type": ANGLE_FORMS,
    "metric": METRICS,
}


def check_ld_args(args: dict | SimpleNamespace) -> None:
    """Check ultrald's keys in `args` against `RANGES` and `CHOICES`, raising TypeError/ValueError that name the key
    and value. Ultralytics type-checks only its own keys, so ours are checked here."""
    a = args if isinstance(args, dict) else vars(args)
    for k, (ok, why) in RANGES.items():
        v = a.get(k, LD_DEFAULTS[k])
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"'{k}={v}' is of type {type(v).__name__}, expected a number, e.g. '{k}={LD_DEFAULTS[k]}'.")
        if not ok(v):
            raise ValueError(f"'{k}={v}' {why}")
    for k, registry in CHOICES.items():
        v = a.get(k, LD_DEFAULTS[k])
        if v is None and k == "metric":
            continue  # unset: Ultralytics' own mAP
        try:
            registry[v]
        except (KeyError, TypeError):  # TypeError: an unhashable value, e.g. a list
            raise ValueError(f"'{k}={v}' is not one of {tuple(registry)}.") from None
    for k in ("vlr", "dfl_branch"):
        if not isinstance(a.get(k, False), bool):
            raise TypeError(f"'{k}={a[k]}' must be True or False.")
    if a.get("distill_schedule") == "close_mosaic" and a.get("close_mosaic", 0) >= a.get("epochs", 1) > 0:
        raise ValueError(
            f"'distill_schedule=close_mosaic' with close_mosaic={a['close_mosaic']} >= epochs={a['epochs']} would switch "
            "distillation off for the whole run; lower close_mosaic or use distill_schedule=constant."
        )
    if (e := a.get("teacher_epochs")) is not None and (isinstance(e, bool) or not isinstance(e, int) or e < 1):
        raise ValueError(f"'teacher_epochs={e}' must be a whole number >= 1 (or unset: the student's epochs).")


DistillConfig = make_dataclass(
    "DistillConfig",
    [(k, Any, field(default=v)) for k, v in LD_DEFAULTS.items()],
    frozen=True,
    namespace={"__doc__": "ultrald's settings of a run (the keys of default.yaml), checked and frozen: built once by "
               "`distill_config` and passed down to the criterion and the checkpoint writer."},
)  # fmt: skip


def distill_config(args: dict | SimpleNamespace) -> DistillConfig:
    """Return ultrald's keys of `args` (a run's args or a dict; missing keys take their defaults) as a DistillConfig,
    after `check_ld_args`: an unknown option is a ValueError here, and a KeyError in any function handed one."""
    a = args if isinstance(args, dict) else vars(args)
    values = {k: a.get(k, v) for k, v in LD_DEFAULTS.items()}
    check_ld_args(values)
    return DistillConfig(**values)
