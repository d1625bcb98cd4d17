"""`yolo-ld`: Ultralytics' `yolo` command with a teacher.

yolo-ld train model=yolov8s.yaml teacher=yolov8x.pt data=coco.yaml epochs=100
yolo-ld val|predict|export model=best.pt ...     (as `yolo` does)
yolo-ld help | cfg | version | data shapes
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from typing import Any

from ultralytics.cfg import DEFAULT_CFG_PATH, MODES, TASKS, parse_key_value_pair
from ultralytics.utils import LOGGER

from . import __version__
from .cfg import LD_CFG_PATH, ld_cfg, recipe
from .errors import UltraldError
from .eval import Benchmark
from .seam import merge_cli_args

# What a user's mistake raises: printed as one line (exit 2) unless ULTRALD_TRACEBACK=1 or --traceback is given.
USER_ERRORS = (UltraldError, SyntaxError, ValueError, TypeError, FileNotFoundError)

COMPARE_SEEDS = "0,1,2"  # yolo-ld compare's default seeds: a gain needs a spread to be judged
CONVERTERS = ("coco", "voc", "dota", "yolo")  # 'yolo-ld convert NAME': ultrald.data.NAME.cli

USAGE = f"""ultrald {__version__}: Localization Distillation for Ultralytics YOLO.

    yolo-ld train model=yolov8s.yaml teacher=yolov8x.pt data=coco.yaml [key=value ...]
    yolo-ld val model=runs/detect/train/weights/best.pt data=coco.yaml
    yolo-ld predict model=best.pt source=images/
    yolo-ld export model=best.pt format=onnx
    yolo-ld val model=best.pt data=coco.yaml metric=coco     (metric=coco|voc|dota: the benchmark's own protocol)
    yolo-ld convert coco|voc|dota|yolo ...   import a dataset into Ultralytics' format ('yolo-ld convert voc -h')
    yolo-ld data shapes            generate the embedded synthetic dataset and print its yaml
    yolo-ld compare model=... teacher=... data=... seeds=0,1,2   plain vs distilled student on your data
    yolo-ld demo [epochs=12 ...]   compare on the embedded synthetic shapes (the shapes recipe)
    yolo-ld cfg                    print every key with its default (Ultralytics' and ultrald's)
    yolo-ld help | version
    yolo-ld --traceback ...        show the full traceback of an error (or set ULTRALD_TRACEBACK=1)

Keys use Ultralytics' key=value syntax; 'cfg=recipe.yaml' merges a yaml of keys, 'cfg=coco|voc|dota|shapes' a
bundled recipe. The student that comes out is a plain Ultralytics model: use it with 'yolo' or ultralytics.YOLO.
Distillation keys and defaults:
"""


def distill_keys_help() -> str:
    """Return one line per ultrald key: name=default and its comment from ultrald/cfg/default.yaml."""
    lines = []
    for line in LD_CFG_PATH.read_text().splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, rest = line.split(":", 1)
            value, _, comment = rest.partition("#")
            lines.append(f"    {key + '=' + (value.strip() or 'None'):<20} {comment.strip()}")
    return "\n".join(lines)


def check_keys(valid: dict, overrides: dict) -> None:
    """Raise SyntaxError naming each key of `overrides` that is not in `valid`, with the closest valid keys."""
    from difflib import get_close_matches

    errors = []
    for k in (k for k in overrides if k not in valid):
        close = get_close_matches(k, valid)
        errors.append(f"'{k}' is not a valid yolo-ld argument." + (f" Similar: {close}." if close else ""))
    if errors:
        raise SyntaxError(" ".join(errors) + " See 'yolo-ld cfg' for every key.")


def parse_args(args: list[str]) -> tuple[str | None, dict[str, Any]]:
    """Parse `yolo-ld` arguments into (mode, overrides), checking every key against Ultralytics' and ultrald's (and
    `seeds` for compare)."""
    defaults = ld_cfg()
    valid = {**defaults, **dict.fromkeys((*TASKS, *MODES, "compare")), "seeds": COMPARE_SEEDS}
    mode, overrides = None, {}
    for a in merge_cli_args(args):
        a = a.removeprefix("--").rstrip(",")
        if "=" in a:
            k, v = parse_key_value_pair(a)
            if k == "cfg" and v is not None:
                overrides = {**recipe(v), **overrides}
            else:
                overrides[k] = v
        elif a in MODES or a == "compare":
            mode = a
        elif a in TASKS:
            overrides["task"] = a
        elif isinstance(defaults.get(a), bool):
            overrides[a] = True  # bare boolean flag, e.g. 'yolo-ld train ... vlr'
        else:
            check_keys(valid, {a: ""})
            raise SyntaxError(f"'{a}' needs a value, i.e. '{a}={defaults.get(a)}'")
    check_keys(valid, overrides)
    if "seeds" in overrides and mode != "compare":
        raise SyntaxError("'seeds' is a key of 'yolo-ld compare' only; 'train' takes one seed=.")
    return mode, overrides


def student(mode: str, overrides: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Return (the YOLO model named by `model=`, the other overrides): a finished checkpoint refused for resume, an
    official name fetched as `yolo` does, and for training the embedded shapes when `data=` is missing."""
    from ultralytics import YOLO

    from .engine.trainer import resume_checkpoint
    from .models import resolve_model, resolve_weights
    from .utils import ensure_offline_fonts

    ensure_offline_fonts()
    overrides = dict(overrides)
    model = overrides.pop("model", None)
    if mode == "train" and overrides.get("resume"):  # that checkpoint and no other; a finished one is refused
        model = overrides["resume"] = str(resume_checkpoint(overrides["resume"], model)[0])
    if model is None:
        raise SyntaxError(f"'model' is required, e.g. 'yolo-ld {mode} model=yolov8s.yaml ...'")
    if str(model).endswith(".pt"):
        model = str(resolve_weights(model, "model"))
    yolo = YOLO(resolve_model(model), task=overrides.pop("task", None))
    if mode in {"train", "compare"} and overrides.get("data") is None and not overrides.get("resume"):
        overrides["data"] = "shapes-obb" if yolo.task == "obb" else "shapes"  # resolved after the teacher is read
        LOGGER.warning(f"'data' is missing, using the embedded synthetic dataset 'data={overrides['data']}'.")
    return yolo, overrides


def run(mode: str, overrides: dict[str, Any]) -> Any:
    """Run `mode` ('train', 'compare', 'val', 'predict', 'export', ...) on the model named in `overrides`."""
    from .data.shapes import resolve_data
    from .engine.trainer import trainer_for

    yolo, overrides = student(mode, overrides)
    if mode == "train":
        return yolo.train(trainer=trainer_for(yolo.task), **overrides)
    if mode == "compare":
        from .compare import compare

        seeds = overrides.pop("seeds", COMPARE_SEEDS)
        return compare(yolo.ckpt_path or yolo.cfg, yolo.task, overrides, seeds)
    if "data" in overrides:
        overrides["data"] = resolve_data(overrides["data"])
    metric = overrides.pop("metric", None)
    if mode == "val" and metric:  # the benchmark's own protocol: pycocotools, VOC07/area AP, DOTA devkit
        return Benchmark(metric).validator.val(yolo, **overrides)
    if mode in {"predict", "track"} and "source" not in overrides:
        raise SyntaxError(f"'source' is required, e.g. 'yolo-ld {mode} model={overrides.get('model')} source=images/'")
    return getattr(yolo, mode)(**overrides)


def entrypoint(argv: list[str] | None = None) -> int:
    """Run `yolo-ld` with `argv` (default: the command line); print a user's error as one line and return 2, and
    Ctrl-C as one line (a training run's says where last.pt is and how to resume) and return 130."""
    args = sys.argv[1:] if argv is None else list(argv)
    traceback = "--traceback" in args or os.environ.get("ULTRALD_TRACEBACK", "") not in {"", "0"}
    try:
        return main([a for a in args if a != "--traceback"])
    except (*USER_ERRORS, KeyboardInterrupt) as e:
        if traceback:
            raise
        message = " ".join(str(e).split())  # one line, whatever the exception carried
        if isinstance(e, KeyboardInterrupt):  # a new line after a progress bar's unfinished one
            print(f"\nyolo-ld: {message or 'interrupted'}", file=sys.stderr)
            return 130  # 128 + SIGINT, as a shell reports Ctrl-C
        print(f"yolo-ld: error: {message} (--traceback for details)", file=sys.stderr)
        return 2


def main(args: list[str]) -> int:
    """Run `yolo-ld` with `args` and return the exit status."""
    first = args[0].lstrip("-") if args else "help"
    if first in {"help", "h"} or (first not in {"convert", "demo"} and {"-h", "--help", "help"} & set(args[1:])):
        print(USAGE + distill_keys_help())
    elif first == "version":
        print(__version__)
    elif first == "cfg":
        print(DEFAULT_CFG_PATH.read_text() + "\n# ultrald\n" + LD_CFG_PATH.read_text())
    elif first == "convert":
        if len(args) < 2 or args[1] not in CONVERTERS:
            raise SyntaxError(f"'yolo-ld convert FORMAT ...' with FORMAT one of {list(CONVERTERS)}")
        return import_module(f".data.{args[1]}", __package__).cli(args[2:])
    elif first == "demo":
        from .demo import cli as demo

        return demo(args[1:])
    elif first == "data":
        from .data.shapes import EMBEDDED, resolve_data

        name = args[1] if len(args) > 1 else "shapes"
        if name not in EMBEDDED:
            raise SyntaxError(
                f"'yolo-ld data {name}': the embedded datasets are {list(EMBEDDED)} (the benchmark's others: "
                f"'python bench/synthetic.py {name}' in the repository)."
            )
        print(resolve_data(name))
    else:
        mode, overrides = parse_args(args)
        if mode is None:
            raise SyntaxError(f"a mode is required, one of {list(MODES)}, e.g. 'yolo-ld train ...'\n\n{USAGE}")
        run(mode, overrides)
    return 0


if __name__ == "__main__":
    sys.exit(entrypoint())
