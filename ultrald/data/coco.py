"""COCO instances json -> Ultralytics detection dataset that keeps what COCO evaluation needs.

    yolo-ld convert coco annotations/instances_train2017.json train2017 coco-yolo \\
        --val-json annotations/instances_val2017.json --val-images val2017

writes `coco-yolo/{images,labels}/{train,val}`, `image_ids.json` and `data.yaml`. Images are symlinked (or copied)
under their json `file_name`, sub-folders included. Categories become contiguous class indices in the order of their
ids; the yaml keeps each index's category id and the original jsons, so `metric=coco` evaluates with pycocotools
against the untouched annotations, crowd included. Without --val-json the one json becomes the val split, which the
yaml also names for train. Ultralytics' `convert_coco` does not fit: it maps classes with the fixed COCO-80 table (or
`category_id - 1`), places no images, writes no yaml and keeps no way back to the image ids."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path, PurePosixPath

from ultralytics.data.utils import IMG_FORMATS
from ultralytics.utils import LOGGER

from .common import Problems, box_label, check_dir, image_size, make_cli, summarize, write_data_yaml, write_sample

IMAGE_IDS = "image_ids.json"  # {split: {image path relative to images/<split>: original image id}}
YAML_HEADER = """\
# Written by 'yolo-ld convert coco'. Ultralytics reads path/train/val/names; ultrald's COCO evaluation also reads:
#   category_ids: contiguous class index -> original COCO category id
#   annotations:  split -> the original instances json, the ground truth of 'yolo-ld val ... metric=coco'
#   image_ids:    json file (under path) mapping split -> image path relative to images/<split> -> original image id
#   summary:      what the conversion wrote, clipped, dropped and skipped
"""


def is_numbers(x, n: int) -> bool:
    """Return whether x is a list of n finite real numbers (no bools)."""
    ok = isinstance(x, (list, tuple)) and len(x) == n
    return ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in x)


def load_instances(file: str | Path) -> dict:
    """Load a COCO instances json, raising FileNotFoundError/ValueError that name the file when it is not one."""
    if not (file := Path(file)).is_file():
        raise FileNotFoundError(f"COCO annotation file '{file}' does not exist.")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"'{file}' is not valid JSON ({e}); expected a COCO instances json.") from None
    keys = ["images", "annotations", "categories"]
    if missing := [k for k in keys if not (isinstance(data, dict) and isinstance(data.get(k), list))]:
        raise ValueError(
            f"'{file}' is not a COCO instances json: {missing} missing or not lists (an instances json has {keys}, "
            "e.g. annotations/instances_val2017.json)."
        )
    return data


def categories(data: dict, file: Path) -> tuple[dict[int, str], dict[int, int]]:
    """Return (names, category_ids): contiguous class index -> name and -> original id, in the order of the ids."""
    cats = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or type(c.get("id")) is not int or c["id"] in cats:  # JSON ints: no bools
            raise ValueError(f"'{file}': category {str(c)[:80]} has no integer 'id', or one that appears twice.")
        cats[c["id"]] = str(c.get("name", c["id"]))
    if not cats:
        raise ValueError(f"'{file}' has no categories.")
    ids = sorted(cats)
    return {i: cats[k] for i, k in enumerate(ids)}, dict(enumerate(ids))


def convert_split(
    data: dict, file: Path, images_dir: Path, out_dir: Path, split: str, category_ids: dict[int, int], copy: bool
) -> tuple[dict[str, int], dict[str, int]]:
    """Write one split's images and labels; return (image path relative to images/<split> -> image id, counts)."""
    problems, n, images, sizes = Problems(), Counter(), {}, {}
    cls_of = {cid: i for i, cid in category_ids.items()}
    for img in data["images"]:
        if not (isinstance(img, dict) and type(img.get("id")) is int and isinstance(img.get("file_name"), str)):
            problems("bad image", f"{file}: image entry {str(img)[:80]} lacks an int 'id' or a 'file_name', skipped")
        elif img["id"] in images:
            problems("bad image", f"{file}: image id {img['id']} appears twice, the second is skipped")
        else:
            images[img["id"]] = img
    lines: dict[int, list[str]] = {i: [] for i in images}  # image id -> its YOLO label lines
    for ann in data["annotations"]:
        ann = ann if isinstance(ann, dict) else {}
        where, image_id = f"{file}: annotation {ann.get('id')}", ann.get("image_id")
        if image_id not in images:
            problems("unknown image", f"{where} points to unknown image_id {image_id}, skipped")
        elif ann.get("category_id") not in cls_of:
            problems("unknown category", f"{where} has unknown category_id {ann.get('category_id')}, skipped")
        elif ann.get("iscrowd", 0):  # a missing 'iscrowd' means 0
            n["crowd"] += 1  # kept out of the labels; evaluation reads it from the original json
        else:
            if image_id not in sizes:  # from the json entry, else from the file's header
                wh = (img := images[image_id]).get("width"), img.get("height")
                sizes[image_id] = wh if is_numbers(wh, 2) and min(wh) > 0 else image_size(images_dir / img["file_name"])
            box, wh = ann.get("bbox"), sizes[image_id]
            if not is_numbers(box, 4) or wh is None:
                problems("bad box", f"{where}: bbox {box} is not 4 numbers or its image has no size, dropped")
                n["dropped"] += 1
            elif line := box_label(cls_of[ann["category_id"]], (*box[:2], box[0] + box[2], box[1] + box[3]), *wh, n):
                lines[image_id].append(line)
    ids = {}  # image path relative to images/<split> -> image id
    for image_id, img in images.items():  # its file_name as a safe relative path: sub-folders kept, '..' and roots not
        parts = PurePosixPath(img["file_name"].replace("\\", "/")).parts
        rel = PurePosixPath(*(p for p in parts if p not in {"/", ".", ".."}))
        if not rel.parts or rel.suffix[1:].lower() not in IMG_FORMATS:
            problems("not an image", f"{file}: image {image_id} '{img['file_name']}' is no image file name, skipped")
        elif rel.as_posix() in ids:
            problems("duplicate", f"{file}: image {image_id} repeats file_name '{img['file_name']}', skipped")
        elif not (src := images_dir / img["file_name"]).is_file():
            problems("missing image", f"{file}: image {image_id} file '{src}' does not exist, skipped")
        else:
            write_sample(src, out_dir / "images" / split / rel, lines[image_id], copy, n)
            ids[rel.as_posix()] = image_id
            continue
        n["boxes of skipped images"] += len(lines[image_id])
    counts = summarize(f"COCO {split} from {file}", n, problems, "crowd")
    if not ids:
        raise ValueError(f"'{file}': none of its {len(images)} images could be converted (images dir '{images_dir}').")
    return ids, counts


def convert_coco(
    instances_json: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    copy: bool = False,
    val_json: str | Path | None = None,
    val_images: str | Path | None = None,
) -> Path:
    """Convert COCO instances json(s) and their images into an Ultralytics dataset; return its data yaml. With
    `val_json` and `val_images`, `instances_json` + `images_dir` are the train split and they the val split; without,
    the one json becomes the val split. `copy` copies the images instead of symlinking them."""
    if (val_json is None) != (val_images is None):
        raise ValueError("--val-json and --val-images (val_json and val_images) go together: give both or neither.")
    out_dir, cats, given = Path(out_dir).resolve(), None, (instances_json, images_dir)
    sources = {"train": given, "val": (val_json, val_images)} if val_json else {"val": given}
    image_ids, annotations, summary = {}, {}, {}
    for split, (file, images) in sources.items():
        file, images = Path(file).resolve(), Path(images).resolve()
        data = load_instances(file)
        check_dir(images, out_dir, "images folder")
        if (found := categories(data, file)) != (cats := cats or found):
            raise ValueError(f"the categories of '{file}' differ from those of '{instances_json}'.")
        image_ids[split], summary[split] = convert_split(data, file, images, out_dir, split, cats[1], copy)
        annotations[split] = str(file)
    if "train" not in sources:
        LOGGER.warning("ultrald: no val_json given, so the one split converted is named for both train and val.")
    (out_dir / IMAGE_IDS).write_text(json.dumps(image_ids))
    splits = {"train": f"images/{next(iter(sources))}", "val": "images/val"}
    extra = {"category_ids": cats[1], "annotations": annotations, "image_ids": IMAGE_IDS, "summary": summary}
    return write_data_yaml(out_dir, cats[0], splits, YAML_HEADER, f"COCO dataset ({len(cats[0])} classes)", **extra)


cli = make_cli(
    "coco",
    lambda a: convert_coco(a.json, a.images, a.out, a.copy, a.val_json, a.val_images),
    {
        "json": "instances json of the train split (or of the only split without --val-json)",
        "images": "folder the json's image file_names are relative to, e.g. train2017",
        "out": "output folder (images/, labels/, image_ids.json, data.yaml)",
        "--val-json": "instances json of the val split, e.g. annotations/instances_val2017.json",
        "--val-images": "folder of the val images, e.g. val2017",
        "--copy": {"action": "store_true", "help": "copy the images instead of symlinking them"},
    },
    __doc__,
)
