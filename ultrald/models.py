"""Width-scaled YOLO model yamls for CPU-sized experiments, derived from Ultralytics' own model yamls.

`yolov8-w0625.yaml` is Ultralytics' yolov8.yaml at depth 0.33 (as yolov8n) and width multiple 0.0625 (yolov8n: 0.25);
`yolov8-obb-w125.yaml`, `yolo11-w125.yaml`, `yolo26-w125.yaml`, `yolov10-w125.yaml` ... likewise (every family
ultrald distils). The yaml is written once into Ultralytics' config dir.
"""

from __future__ import annotations

import re
from pathlib import Path

import ultralytics
from ultralytics.utils import SETTINGS, USER_CONFIG_DIR, YAML, is_online
from ultralytics.utils.downloads import attempt_download_asset

from .errors import UltraldError
from .seam import is_official_asset

SCALED = re.compile(r"^(?P<family>yolov8|yolo11|yolo12|yolov10|yolo26)(?P<task>-obb)?-w(?P<width>\d+)\.yaml$")
FAMILY_DIRS = {"yolov8": "v8", "yolo11": "11", "yolo12": "12", "yolov10": "v10", "yolo26": "26"}
BASE_YAMLS = {"yolov10": "yolov10n.yaml"}  # YOLOv10 ships one yaml per scale; the others one yaml with scales


def resolve_model(model):
    """Return the path of a width-scaled yaml for names like 'yolov8-w0625.yaml' (writing it once), else `model`."""
    match = SCALED.match(Path(str(model)).name) if isinstance(model, (str, Path)) and not Path(model).exists() else None
    if match is None:
        return model
    family, task, width = match["family"], match["task"] or "", float("0." + match["width"])
    file = USER_CONFIG_DIR / "ultrald-models" / match.string
    if not file.is_file():
        name = BASE_YAMLS.get(family, f"{family}{task}.yaml")
        cfg = YAML.load(Path(ultralytics.__file__).parent / "cfg" / "models" / FAMILY_DIRS[family] / name)
        depth, _, max_channels = cfg.pop("scales")["n"]
        cfg.update(depth_multiple=depth, width_multiple=width, max_channels=max_channels)
        file.parent.mkdir(parents=True, exist_ok=True)
        YAML.save(file, cfg)
    return str(file)


def resolve_weights(weights: str | Path, key: str = "model", error: type[Exception] = UltraldError) -> Path:
    """Return the local path of a *.pt checkpoint: a file, or an official asset name ('yolov8x.pt', ...) from
    Ultralytics' weights dir or downloaded as `yolo` does; offline, or for any other missing name, raise `error`."""
    path = Path(weights).expanduser()
    if path.suffix != ".pt":
        raise error(f"{key}='{weights}' is not a *.pt checkpoint. Pass the path of a trained Ultralytics model.")
    if path.is_file():
        return path.resolve()
    if path.name == str(weights) and is_official_asset(path.name):
        cached = Path(SETTINGS["weights_dir"]) / path.name
        if cached.is_file():
            return cached.resolve()
        if not is_online():
            raise error(
                f"{key}='{weights}' is an official Ultralytics asset that is not on this machine, and it is offline: "
                f"download it where you have a network (or 'yolo predict model={weights}') and pass its path, "
                f"or copy it to {cached}."
            )
        return Path(attempt_download_asset(path.name)).resolve()
    raise error(
        f"{key}='{weights}' does not exist (resolved to '{path.resolve()}'). Pass an existing checkpoint, e.g. the "
        "weights/best.pt of a 'yolo train' run, or an official name such as yolov8x.pt."
    )


def model_yaml(model: str | Path, key: str = "model", error: type[Exception] = UltraldError) -> dict:
    """Return the model dict Ultralytics builds from a model yaml: a file, or a name it ships ('yolov8x.yaml',
    'yolo11l.yaml'; its scale included); raise `error` for a yaml that is neither."""
    from ultralytics.nn.tasks import yaml_model_load

    try:
        return yaml_model_load(resolve_model(model))
    except FileNotFoundError:
        raise error(
            f"{key}='{model}' is neither a yaml file nor a model yaml Ultralytics ships (yolov8x.yaml, yolo11l.yaml, "
            "...)."
        ) from None
