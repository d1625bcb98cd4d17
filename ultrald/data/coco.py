"""COCO instances json -> Ultralytics detection dataset that keeps what COCO evaluation needs.

    yolo-ld convert coco annotations/instances_train2017.json train2017 coco-yolo \\
        --val-json annotations/instances_val2017.json --val-images val2017

writes `coco-yolo/{images,labels}/{train,val}`, `image_ids.json` and `data.yaml`. Images are symlinked (or copied with
`--copy`) under their json `file_name`, sub-folders included, so names stay unique. Categories are renumbered to
contiguous class indices in the order of their ids; the yaml keeps each index's original category id and the original
jsons, so `yolo-ld val ... metric=coco` evaluates with pycocotools against the untouched annotations, crowd included.

Ultralytics' `ultralytics.data.converter.convert_coco` does not fit and is not used: it maps classes with the fixed
COCO-80 table (or `category_id - 1`, which leaves holes for non-contiguous ids and writes no names), places no images,
writes no data yaml and keeps no way back to the original image ids. Its `img2label_paths` is used, so labels lie where
Ultralytics' loader looks for them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from collections import Counter
from pathlib import Path, PurePosixPath

from ultralytics.data.utils import IMG_FORMATS, img2label_paths
from ultralytics.utils import LOGGER, YAML

REQUIRED = ("images", "annotations", "categories")
IMAGE_IDS = "image_ids.json"  # {split: {image path relative to images/<split>: original image id}}
YAML_HEADER = """\
# Written by 'yolo-ld convert coco'. Ultralytics reads path/train/val/names; ultrald's COCO evaluation also reads:
#   category_ids: contiguous class index -> original COCO category id
#   annotations:  split -> the original instances json, the ground truth of 'yolo-ld val ... metric=coco'
#   image_ids:    json file (under path) mapping split -> image path relative to images/<split> -> original image id
#   summary:      what the conversion wrote, clipped, dropped and skipped
"""


class Problems:
    """Count skipped or altered items by kind, logging the first few of each kind with the file they come from."""

    def __init__(self, limit: int = 5):
        """Log at most `limit` messages of each kind; all are counted."""
        self.counts: Counter = Counter()
        self.limit = limit

    def __call__(self, kind: str, message: str) -> None:
        """Count one item of `kind`; log `message` for the first `limit` of them."""
        self.counts[kind] += 1
        if self.counts[kind] <= self.limit:
            LOGGER.warning(f"ultrald: {message}")
        elif self.counts[kind] == self.limit + 1:
            LOGGER.warning(f"ultrald: further '{kind}' problems are counted in the summary, not shown")


def clip_box(x0: float, y0: float, x1: float, y1: float, w: float, h: float) -> tuple[tuple[float, ...] | None, bool]:
    """Clip the xyxy box to the image [0, w] x [0, h]; return (box or None when nothing is left, whether it changed)."""
    c = (min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w), min(max(y1, 0.0), h))
    if c[2] <= c[0] or c[3] <= c[1]:
        return None, True
    return c, c != (x0, y0, x1, y1)


def label_line(cls: int, box: tuple[float, ...], w: float, h: float) -> str:
    """Return the YOLO label line 'cls xc yc w h' (normalised) of the xyxy pixel box in a w x h image."""
    x0, y0, x1, y1 = box
    return f"{cls} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"


def relative_name(file_name: str) -> PurePosixPath | None:
    """Return an image's json `file_name` as a safe relative path (sub-folders kept, '..' and roots dropped)."""
    parts = [p for p in PurePosixPath(str(file_name).replace("\\", "/")).parts if p not in {"/", ".", ".."}]
    return PurePosixPath(*parts) if parts else None


def place_image(src: Path, dst: Path, copy: bool) -> None:
    """Symlink (or copy) the image `src` to `dst`, replacing what is there."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    if copy:
        shutil.copy2(src, dst)
    else:
        os.symlink(src.resolve(), dst)


def write_label(image: Path, lines: list[str]) -> None:
    """Write YOLO label lines where Ultralytics looks for the labels of `image` (an empty file for a background)."""
    label = Path(img2label_paths([image])[0])
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text("\n".join(lines) + ("\n" if lines else ""))


def clear_cache(out_dir: Path, split: str) -> None:
    """Remove Ultralytics' label cache of a split, which would hide the labels just written."""
    (out_dir / "labels" / f"{split}.cache").unlink(missing_ok=True)


def load_instances(file: str | Path) -> dict:
    """Load a COCO instances json, raising FileNotFoundError/ValueError that name the file when it is not one."""
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"COCO annotation file '{file}' does not exist.")
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"'{file}' is not valid JSON ({e}); expected a COCO instances json.") from None
    if not isinstance(data, dict):
        raise ValueError(f"'{file}' is not a COCO instances json: it holds a {type(data).__name__}, not an object.")
    missing = [k for k in REQUIRED if not isinstance(data.get(k), list)]
    if missing:
        raise ValueError(
            f"'{file}' is not a COCO instances json: {missing} missing or not lists "
            f"(an instances json has {list(REQUIRED)}, e.g. annotations/instances_val2017.json)."
        )
    return data


def categories(data: dict, file: Path) -> tuple[dict[int, str], dict[int, int]]:
    """Return (names, category_ids): contiguous class index -> name and -> original id, in the order of the ids."""
    cats = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or not _integer(c.get("id")):
            raise ValueError(f"'{file}': category {c!r} has no integer 'id'.")
        if c["id"] in cats:
            raise ValueError(f"'{file}': category id {c['id']} appears twice.")
        cats[c["id"]] = str(c.get("name", c["id"]))
    if not cats:
        raise ValueError(f"'{file}' has no categories.")
    ids = sorted(cats)
    return {i: cats[k] for i, k in enumerate(ids)}, dict(enumerate(ids))


def convert_split(
    data: dict,
    file: Path,
    images_dir: Path,
    out_dir: Path,
    split: str,
    category_ids: dict[int, int],
    copy: bool = False,
) -> tuple[dict[str, int], dict[str, int]]:
    """Write one split's images and labels; return (image path relative to images/<split> -> image id, counts)."""
    problems, n = Problems(), Counter()
    cls_of = {cid: i for i, cid in enumerate(category_ids.values())}
    images, sizes = {}, {}
    for img in data["images"]:
        if not (isinstance(img, dict) and _integer(img.get("id")) and isinstance(img.get("file_name"), str)):
            problems("bad image", f"{file}: image entry {str(img)[:80]} lacks an int 'id' or a 'file_name', skipped")
        elif img["id"] in images:
            problems("bad image", f"{file}: image id {img['id']} appears twice, the second is skipped")
        else:
            images[img["id"]] = img
    lines: dict[int, list[str]] = {i: [] for i in images}
    for ann in data["annotations"]:
        where = f"{file}: annotation {_get(ann, 'id')}"
        if _get(ann, "image_id") not in images:
            problems("unknown image", f"{where} points to unknown image_id {_get(ann, 'image_id')}, skipped")
            continue
        if ann.get("category_id") not in cls_of:
            problems("unknown category", f"{where} has unknown category_id {ann.get('category_id')}, skipped")
            continue
        if ann.get("iscrowd", 0):  # a missing 'iscrowd' means 0
            n["crowd"] += 1  # kept out of the labels; evaluation reads it from the original json
            continue
        image_id, box = ann["image_id"], ann.get("bbox")
        if image_id not in sizes:
            sizes[image_id] = image_size(images[image_id], images_dir)
        if not _numbers(box, 4) or sizes[image_id] is None:
            problems("bad box", f"{where}: bbox {box} is not 4 numbers or its image has no size, dropped")
            n["dropped"] += 1
            continue
        (x, y, bw, bh), (w, h) = box, sizes[image_id]
        clipped, changed = clip_box(x, y, x + bw, y + bh, w, h)
        if clipped is None:
            n["dropped"] += 1  # degenerate, or wholly outside the image
            continue
        n["clipped"] += changed
        lines[image_id].append(label_line(cls_of[ann["category_id"]], clipped, w, h))
    ids, seen = {}, set()
    for image_id, img in images.items():
        rel, src = relative_name(img["file_name"]), images_dir / img["file_name"]
        if rel is None or rel.suffix[1:].lower() not in IMG_FORMATS:
            problems("not an image", f"{file}: image {image_id} '{img['file_name']}' is no image file name, skipped")
        elif rel in seen:
            problems("duplicate", f"{file}: image {image_id} repeats file_name '{img['file_name']}', skipped")
        elif not src.is_file():
            problems("missing image", f"{file}: image {image_id} file '{src}' does not exist, skipped")
        else:
            seen.add(rel)
            dst = out_dir / "images" / split / rel
            place_image(src, dst, copy)
            write_label(dst, lines[image_id])
            ids[rel.as_posix()] = image_id
            n["images"] += 1
            n["boxes"] += len(lines[image_id])
            n["background"] += not lines[image_id]
            continue
        n["boxes of skipped images"] += len(lines[image_id])
    clear_cache(out_dir, split)
    counts = {**n, **{f"skipped {k}": v for k, v in problems.counts.items()}}
    LOGGER.info(f"ultrald: COCO {split} from {file}: " + summary_line(counts))
    if not ids:
        raise ValueError(f"'{file}': none of its {len(images)} images could be converted (images dir '{images_dir}').")
    return ids, counts


def image_size(img: dict, images_dir: Path) -> tuple[float, float] | None:
    """Return an image's (width, height) from its json entry, else read from the file; None when neither has it."""
    w, h = img.get("width"), img.get("height")
    if _numbers([w, h], 2) and w > 0 and h > 0:
        return w, h
    try:
        from PIL import Image

        with Image.open(images_dir / img["file_name"]) as im:
            return im.size
    except OSError:
        return None


def summary_line(counts: dict[str, int], excluded: str = "crowd") -> str:
    """Return a one-line summary of a split's conversion counts; `excluded` names the boxes kept out of the labels."""
    c = Counter(counts)
    line = (
        f"{c['images']} images ({c['background']} background), {c['boxes']} boxes; "
        f"{c[excluded]} {excluded} kept out of the labels (evaluation reads them from the original annotations), "
        f"{c['clipped']} clipped to the image, {c['dropped']} dropped (nothing left after clipping, or not a box)"
    )
    skipped = {k.removeprefix("skipped "): v for k, v in counts.items() if k.startswith("skipped ") and v}
    if skipped:
        line += "; skipped: " + ", ".join(f"{v} {k}" for k, v in skipped.items())
    if c["boxes of skipped images"]:
        line += f" ({c['boxes of skipped images']} boxes of skipped images)"
    return line


def convert_coco(
    instances_json: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    copy: bool = False,
    val_json: str | Path | None = None,
    val_images: str | Path | None = None,
) -> Path:
    """Convert COCO instances json(s) and their images into an Ultralytics dataset; return its data yaml.

    With `val_json` (and `val_images`), `instances_json` is the train split and `val_json` the val split, e.g. COCO
    2017's instances_train2017.json + train2017/ and instances_val2017.json + val2017/. Without, the one json becomes
    the val split and the yaml names it for train too (for evaluation, or a quick look).

    Args:
        instances_json (str | Path): COCO instances json; image `file_name`s are relative to `images_dir`.
        images_dir (str | Path): Folder of the images of `instances_json`.
        out_dir (str | Path): Folder to write images/, labels/, image_ids.json and data.yaml into (files are replaced).
        copy (bool): Copy the images instead of symlinking them.
        val_json (str | Path, optional): COCO instances json of the val split.
        val_images (str | Path, optional): Folder of the images of `val_json`.

    Returns:
        (Path): The data yaml: path, train, val, names, category_ids, annotations, image_ids, summary.

    Examples:
        >>> convert_coco("instances_train2017.json", "train2017", "coco", val_json="instances_val2017.json",
        ...              val_images="val2017")
    """
    if (val_json is None) != (val_images is None):
        raise ValueError("val_json and val_images go together: give both or neither.")
    out_dir = Path(out_dir).resolve()
    sources = (
        {"train": (instances_json, images_dir), "val": (val_json, val_images)}
        if val_json
        else {"val": (instances_json, images_dir)}
    )
    names = category_ids = None
    image_ids, annotations, summary = {}, {}, {}
    for split, (file, images) in sources.items():
        file, images = Path(file).resolve(), Path(images).resolve()
        data = load_instances(file)
        if not images.is_dir():
            raise FileNotFoundError(f"images folder '{images}' of '{file}' does not exist.")
        if out_dir == images or images in out_dir.parents:
            raise ValueError(f"out_dir '{out_dir}' lies inside the images folder '{images}'; choose another folder.")
        split_names, split_ids = categories(data, file)
        if names is None:
            names, category_ids = split_names, split_ids
        elif (split_names, split_ids) != (names, category_ids):
            raise ValueError(f"the categories of '{file}' differ from those of '{instances_json}'.")
        image_ids[split], summary[split] = convert_split(data, file, images, out_dir, split, category_ids, copy)
        annotations[split] = str(file)
    if "train" not in sources:
        LOGGER.warning("ultrald: no val_json given, so the one split converted is named for both train and val.")
    (out_dir / IMAGE_IDS).write_text(json.dumps(image_ids))
    yaml_file = out_dir / "data.yaml"
    train = "images/train" if "train" in sources else "images/val"
    YAML.save(
        yaml_file,
        {
            "path": str(out_dir),
            "train": train,
            "val": "images/val",
            "names": names,
            "category_ids": category_ids,
            "annotations": annotations,
            "image_ids": IMAGE_IDS,
            "summary": summary,
        },
        header=YAML_HEADER,
    )
    LOGGER.info(f"ultrald: COCO dataset ({len(names)} classes) written to {yaml_file}")
    return yaml_file


def _numbers(x, n: int) -> bool:
    """Return whether x is a list of n finite real numbers."""
    ok = isinstance(x, (list, tuple)) and len(x) == n
    return ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in x)


def _integer(x) -> bool:
    """Return whether x is an int (not a bool)."""
    return isinstance(x, int) and not isinstance(x, bool)


def _get(ann, key: str):
    """Return ann[key] when ann is a dict, else None."""
    return ann.get(key) if isinstance(ann, dict) else None


def cli(argv: list[str]) -> int:
    """`yolo-ld convert coco`: parse `argv`, convert, print the data yaml path; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="yolo-ld convert coco",
        description="Convert COCO instances json(s) and images into an Ultralytics dataset for ultrald "
        "(YOLO labels, symlinked images, a data yaml that keeps the original category ids and annotation files).",
        epilog="example (COCO 2017): yolo-ld convert coco annotations/instances_train2017.json train2017 coco-yolo "
        "--val-json annotations/instances_val2017.json --val-images val2017",
    )
    parser.add_argument("json", help="instances json of the train split (or of the only split without --val-json)")
    parser.add_argument("images", help="folder the json's image file_names are relative to, e.g. train2017")
    parser.add_argument("out", help="output folder (images/, labels/, image_ids.json, data.yaml)")
    parser.add_argument("--val-json", help="instances json of the val split, e.g. annotations/instances_val2017.json")
    parser.add_argument("--val-images", help="folder of the val images, e.g. val2017")
    parser.add_argument("--copy", action="store_true", help="copy the images instead of symlinking them")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # -h, or a usage error already printed
        return int(e.code or 0)
    if (args.val_json is None) != (args.val_images is None):
        parser.print_usage(sys.stderr)
        print("yolo-ld convert coco: error: --val-json and --val-images go together", file=sys.stderr)
        return 2
    try:
        yaml_file = convert_coco(args.json, args.images, args.out, args.copy, args.val_json, args.val_images)
    except (FileNotFoundError, ValueError) as e:
        print(f"yolo-ld convert coco: error: {e}", file=sys.stderr)
        return 2
    print(yaml_file)
    return 0
