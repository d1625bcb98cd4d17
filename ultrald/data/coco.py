"""COCO instances json -> Ultralytics detection dataset that keeps what COCO evaluation needs.

    yolo-ld convert coco annotations/instances_train2017.json train2017 coco-yolo \\
        --val-json annotations/instances_val2017.json --val-images val2017
    yolo-ld convert coco annotations/instances_default.json images cvat-yolo --val 0.2 [--seed 0]

writes `coco-yolo/{images,labels}/{train,val}`, `image_ids.json` and `data.yaml`. Images are symlinked (or copied)
under their json `file_name`, sub-folders included. Categories become contiguous class indices in the order of their
ids; the yaml keeps each index's category id and the original jsons, so `metric=coco` evaluates with pycocotools
against the untouched annotations, crowd included. A category that no annotation uses and that is another's
supercategory (Roboflow's category 0) only groups the others and is left out of the classes. Without --val-json the
one json becomes the val split, which the yaml also names for train; with `--val 0.2` (CVAT and Label Studio export
one json) 20% of its images, chosen by path and `--seed`, become val and the rest train. Ultralytics' `convert_coco`
does not fit: it maps classes with the fixed COCO-80 table (or `category_id - 1`), places no images, writes no yaml
and keeps no way back to the image ids."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path, PurePosixPath

from ultralytics.data.utils import IMG_FORMATS
from ultralytics.utils import LOGGER

from .common import (
    Problems,
    box_label,
    check_dir,
    image_size,
    make_cli,
    reset_split,
    summarize,
    val_split,
    write_data_yaml,
    write_sample,
)

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


def without_groups(names: dict, ids: dict, jsons: list[dict]) -> tuple[dict[int, str], dict[int, int]]:
    """Return (names, category_ids) less the categories that only group others: used by no box of `jsons` and the
    supercategory of another (Roboflow's category 0). As classes they would never have a box, and would shift every
    index against the project's YOLO export."""
    used = {str(a.get("category_id")) for d in jsons for a in d["annotations"] if isinstance(a, dict)}
    supers = {str(c.get("supercategory")) for c in jsons[0]["categories"] if c.get("supercategory") != c.get("name")}
    groups = [i for i in names if str(ids[i]) not in used and names[i] in supers]
    if not groups or len(groups) == len(names):  # every one: no grouping, a dataset without boxes
        return names, ids
    LOGGER.info(f"ultrald: {[names[i] for i in groups]} left out of the classes: no box uses them, they group others")
    kept = [i for i in names if i not in groups]
    return dict(enumerate(names[i] for i in kept)), dict(enumerate(ids[i] for i in kept))


def relative(file_name: str) -> PurePosixPath:
    """Return an image's json `file_name` as a safe relative path (Windows' separators read as '/'): sub-folders kept,
    '..' and roots not."""
    parts = PurePosixPath(file_name.replace("\\", "/")).parts
    return PurePosixPath(*(p for p in parts if p not in {"/", ".", ".."}))


def split_images(data: dict, file: Path, val: float, seed: int) -> dict[str, dict]:
    """Return the train and val parts of one json: `val` of its images (`val_split` of their paths and `seed`) with
    their annotations in val, the rest in train, where what is malformed is reported."""
    ok = [x for x in data["images"] if isinstance(x, dict) and type(x.get("id")) is int and "file_name" in x]
    path_of = {x["id"]: relative(str(x["file_name"])).as_posix() for x in reversed(ok)}  # an id's first entry
    if not (chosen := val_split(path_of.values(), val, seed)):
        raise ValueError(f"'{file}': {len(path_of)} image(s) are too few to split off a val fraction {val}.")
    in_val = {i for i, path in path_of.items() if path in chosen}

    def part(key: str, val: bool) -> list:
        items = data["images" if key == "id" else "annotations"]
        return [x for x in items if (isinstance(x, dict) and type(x.get(key)) is int and x[key] in in_val) == val]

    return {"train": {**data, "images": part("id", False), "annotations": part("image_id", False)},
            "val": {**data, "images": part("id", True), "annotations": part("image_id", True)}}  # fmt: skip


def source(images_dir: Path, img: dict) -> Path:
    """Return the file of an image entry: its `file_name` under `images_dir` (or absolute), read with '/' for the
    backslashes of Windows exports (Label Studio)."""
    return images_dir / img["file_name"].replace("\\", "/")


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
        if type(image_id) is not int or image_id not in images:  # a list would not even hash
            problems("unknown image", f"{where} points to unknown image_id {image_id}, skipped")
        elif type(ann.get("category_id")) is not int or ann["category_id"] not in cls_of:
            problems("unknown category", f"{where} has unknown category_id {ann.get('category_id')}, skipped")
        elif ann.get("iscrowd", 0):  # a missing 'iscrowd' means 0
            n["crowd"] += 1  # kept out of the labels; evaluation reads it from the original json
        else:
            if image_id not in sizes:  # from the json entry, else from the file's header
                wh = (img := images[image_id]).get("width"), img.get("height")
                sizes[image_id] = wh if is_numbers(wh, 2) and min(wh) > 0 else image_size(source(images_dir, img))
            box, wh = ann.get("bbox"), sizes[image_id]
            if not is_numbers(box, 4) or wh is None:
                problems("bad box", f"{where}: bbox {box} is not 4 numbers or its image has no size, dropped")
                n["dropped"] += 1
            elif line := box_label(cls_of[ann["category_id"]], (*box[:2], box[0] + box[2], box[1] + box[3]), *wh, n):
                lines[image_id].append(line)
    ids = {}  # image path relative to images/<split> -> image id
    for image_id, img in images.items():
        rel = relative(img["file_name"])
        if not rel.parts or rel.suffix[1:].lower() not in IMG_FORMATS:
            problems("not an image", f"{file}: image {image_id} '{img['file_name']}' is no image file name, skipped")
        elif rel.as_posix() in ids:
            problems("duplicate", f"{file}: image {image_id} repeats file_name '{img['file_name']}', skipped")
        elif not (src := source(images_dir, img)).is_file():
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
    val: float = 0.0,
    seed: int = 0,
) -> Path:
    """Convert COCO instances json(s) and their images into an Ultralytics dataset; return its data yaml. With
    `val_json` and `val_images`, `instances_json` + `images_dir` are the train split and they the val split; without,
    `val` > 0 splits the one json's images (by path and `seed`: see `val_split`), else the one json becomes the val
    split. `copy` copies the images instead of symlinking them."""
    if val and val_json is not None:
        raise ValueError("--val splits the one json into train and val; with --val-json give no --val.")
    if (val_json is None) != (val_images is None):
        raise ValueError("--val-json and --val-images (val_json and val_images) go together: give both or neither.")
    out_dir, given = Path(out_dir).resolve(), [(instances_json, images_dir), (val_json, val_images)]
    sources = [(Path(f).resolve(), Path(d).resolve()) for f, d in given if f is not None]
    sources = [(file, images, load_instances(file)) for file, images in sources]
    first, rewritten = categories(sources[0][2], sources[0][0]), (out_dir / "images", out_dir / "labels")
    for file, images, data in sources:
        check_dir(images, out_dir, "images folder")
        if any(images == f or f in images.parents or images in f.parents for f in rewritten):
            raise ValueError(f"images folder '{images}' overlaps '{out_dir}/images' or labels/, which are rewritten.")
        if categories(data, file) != first:
            raise ValueError(f"the categories of '{file}' differ from those of '{sources[0][0]}'.")
    names, category_ids = without_groups(*first, [data for *_, data in sources])
    file, images, data = sources[0]
    if val_json is not None:
        splits = dict(zip(("train", "val"), sources))
    elif val:
        splits = {split: (file, images, part) for split, part in split_images(data, file, val, seed).items()}
    else:
        splits = {"val": sources[0]}
        LOGGER.warning("ultrald: no val_json or --val given, so the one split converted is named for train and val.")
    image_ids, annotations, summary = {}, {}, {}
    for split, (file, images, data) in splits.items():
        reset_split(out_dir, split)  # an earlier conversion's images (another --val or --seed) would leak into it
        image_ids[split], summary[split] = convert_split(data, file, images, out_dir, split, category_ids, copy)
        annotations[split] = str(file)
    (out_dir / IMAGE_IDS).write_text(json.dumps(image_ids))
    folders = {"train": f"images/{next(iter(splits))}", "val": "images/val"}
    extra = {"category_ids": category_ids, "annotations": annotations, "image_ids": IMAGE_IDS, "summary": summary}
    return write_data_yaml(out_dir, names, folders, YAML_HEADER, f"COCO dataset ({len(names)} classes)", **extra)


cli = make_cli(
    "coco",
    lambda a: convert_coco(a.json, a.images, a.out, a.copy, a.val_json, a.val_images, a.val, a.seed),
    {
        "json": "instances json of the train split (or of the only split without --val-json)",
        "images": "folder the json's image file_names are relative to, e.g. train2017",
        "out": "output folder (images/, labels/, image_ids.json, data.yaml)",
        "--val-json": "instances json of the val split, e.g. annotations/instances_val2017.json",
        "--val-images": "folder of the val images, e.g. val2017",
        "--val": {
            "type": float,
            "default": 0.0,
            "help": "without --val-json: fraction of the one json's images for val, the rest train (default 0: "
            "the one json is val, named for train too)",
        },
        "--seed": {"type": int, "default": 0, "help": "seed of the --val split (default 0)"},
        "--copy": {"action": "store_true", "help": "copy the images instead of symlinking them"},
    },
    __doc__,
)
