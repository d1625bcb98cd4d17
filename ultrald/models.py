"""Width-scaled YOLO model yamls for CPU-sized experiments, derived from Ultralytics' own model yamls.

`yolov8-w0625.yaml` is Ultralytics' yolov8.yaml at depth 0.33 (as yolov8n) and width multiple 0.0625 (yolov8n: 0.25);
`yolov8-obb-w125.yaml`, `yolo11-w125.yaml`, ... likewise. The yaml is written once into Ultralytics' config dir.
"""

from __future__ import annotations

import re
from pathlib import Path

import ultralytics
from ultralytics.utils import USER_CONFIG_DIR, YAML

SCALED = re.compile(r"^(?P<family>yolov8|yolo11)(?P<task>-obb)?-w(?P<width>\d+)\.yaml$")
FAMILY_DIRS = {"yolov8": "v8", "yolo11": "11"}


def resolve_model(model):
    """Return the path of a width-scaled yaml for names like 'yolov8-w0625.yaml' (writing it once), else `model`."""
    match = SCALED.match(Path(str(model)).name) if isinstance(model, (str, Path)) and not Path(model).exists() else None
    if match is None:
        return model
    family, task, width = match["family"], match["task"] or "", float("0." + match["width"])
    file = USER_CONFIG_DIR / "ultrald-models" / match.string
    if not file.is_file():
        base = Path(ultralytics.__file__).parent / "cfg" / "models" / FAMILY_DIRS[family] / f"{family}{task}.yaml"
        cfg = YAML.load(base)
        depth, _, max_channels = cfg.pop("scales")["n"]
        cfg.update(depth_multiple=depth, width_multiple=width, max_channels=max_channels)
        file.parent.mkdir(parents=True, exist_ok=True)
        YAML.save(file, cfg)
    return str(file)
