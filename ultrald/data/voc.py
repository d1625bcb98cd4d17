"""PASCAL VOC (VOCdevkit XML + ImageSets) -> Ultralytics detection dataset that keeps what VOC evaluation needs.

    yolo-ld convert voc VOCdevkit voc-yolo --sets 2007:trainval,2012:trainval --test 2007:test

writes `voc-yolo/{images,labels}/{train,test}/VOC<year>/<id>.*` and `data.yaml` (val = test = the `--test` sets). The 20
classes keep their standard order. `difficult` objects stay out of the labels; evaluation (`metric=voc`) re-reads each
image's original XML under `voc_root`, so it ignores them as the VOC protocol does. Ultralytics has no importable VOC
converter (its VOC.yaml download script also drops difficult objects from the test labels), so this one is ultrald's.

Boxes: VOC's 1-based inclusive pixel corners (xmin, ymin, xmax, ymax) cover [xmin - 1, xmax] x [ymin - 1, ymax] in
continuous pixel coordinates, the convention used here for labels and evaluation; the IoU of two such boxes equals
the VOC devkit's IoU with its +1 widths.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ultralytics.utils import LOGGER, YAML

from .coco import Problems, clear_cache, clip_box, label_line, place_image, summary_line, write_label

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
YAML_HEADER = """\
# Written by 'yolo-ld convert voc'. Ultralytics reads path/train/val/test/names; ultrald's VOC evaluation also reads:
#   voc_root: the VOCdevkit folder; images/<split>/VOC<year>/<id>.jpg is evaluated against
#             voc_root/VOC<year>/Annotations/<id>.xml, difficult objects included (and ignored)
#   sets:     split -> the YEAR:SET image sets it holds
#   summary:  what the conversion wrote, clipped, dropped and skipped
"""


@dataclass(frozen=True)
class VOCObject:
    """One object of a VOC annotation: class name, box xyxy in continuous pixels, difficult flag."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool


def parse_voc_xml(file: str | Path) -> tuple[tuple[int, int] | None, list[VOCObject]]:
    """Parse a VOC annotation XML; return ((width, height) or None when absent or zero, objects).

    Raises:
        ValueError: naming the file, when it is not well-formed XML or an object lacks its name or box.
    """
    try:
        root = ET.parse(file).getroot()
    except ET.ParseError as e:
        raise ValueError(f"'{file}' is not well-formed XML ({e}).") from None
    size = root.find("size")
    try:
        wh = (int(float(size.findtext("width"))), int(float(size.findtext("height"))))
    except (AttributeError, TypeError, ValueError):
        wh = None
    objects = []
    for obj in root.iter("object"):
        name, box = (obj.findtext("name") or "").strip(), obj.find("bndbox")
        try:
            x0, y0, x1, y1 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"'{file}': object '{name}' has no numeric bndbox xmin/ymin/xmax/ymax.") from None
        if not name:
            raise ValueError(f"'{file}': an object has no name.")
        difficult = (obj.findtext("difficult") or "0").strip() not in {"0", ""}
        objects.append(VOCObject(name, (x0 - 1, y0 - 1, x1, y1), difficult))
    return (wh if wh and min(wh) > 0 else None), objects


def parse_set(spec: str) -> tuple[str, str]:
    """Return (year, image set) of 'YEAR:SET', e.g. '2007:trainval' -> ('2007', 'trainval')."""
    year, sep, name = spec.strip().partition(":")
    if not (sep and year and name):
        raise ValueError(f"image set '{spec}' is not YEAR:SET, e.g. 2007:trainval or 2012:val")
    return year.removeprefix("VOC"), name


def find_image(folder: Path, image_id: str) -> Path | None:
    """Return the image file of `image_id` in JPEGImages, or None."""
    return next((f for s in IMAGE_SUFFIXES if (f := folder / f"{image_id}{s}").is_file()), None)


def image_size(file: Path) -> tuple[int, int] | None:
    """Return the (width, height) of an image file, or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(file) as im:
            return im.size
    except OSError:
        return None


def convert_sets(voc_root: Path, specs: tuple[str, ...], out_dir: Path, split: str, copy: bool) -> dict[str, int]:
    """Write the images and labels of the image sets `specs` as `split`; return the counts."""
    problems, n, done = Problems(), Counter(), set()
    cls_of = {c: i for i, c in enumerate(VOC_CLASSES)}
    for spec in specs:
        year, name = parse_set(spec)
        base = voc_root / f"VOC{year}"
        set_file = base / "ImageSets" / "Main" / f"{name}.txt"
        if not set_file.is_file():
            raise FileNotFoundError(f"image set file '{set_file}' of '{spec}' does not exist.")
        ids = [line.split()[0] for line in set_file.read_text().splitlines() if line.strip()]
        for image_id in ids:
            if (year, image_id) in done:
                continue  # listed by two sets
            done.add((year, image_id))
            xml, image = base / "Annotations" / f"{image_id}.xml", find_image(base / "JPEGImages", image_id)
            if image is None:
                problems("missing image", f"{set_file}: image '{base / 'JPEGImages' / image_id}.jpg' does not exist")
                continue
            if not xml.is_file():
                problems("missing xml", f"{set_file}: annotation '{xml}' does not exist, image skipped")
                continue
            try:
                wh, objects = parse_voc_xml(xml)
            except ValueError as e:
                problems("malformed xml", f"{e} Image skipped.")
                continue
            unknown = sorted({o.name for o in objects} - cls_of.keys())
            if unknown:
                problems("unknown class", f"'{xml}': unknown classes {unknown} (not VOC's 20), image skipped")
                continue
            if wh is None and (wh := image_size(image)) is None:
                problems("unreadable image", f"'{xml}' gives no size and '{image}' cannot be read, image skipped")
                continue
            lines = []
            for o in objects:
                if o.difficult:
                    n["difficult"] += 1  # ignored by evaluation, which reads them from the XML
                    continue
                box, changed = clip_box(*o.box, *wh)
                if box is None:
                    n["dropped"] += 1
                    continue
                n["clipped"] += changed
                lines.append(label_line(cls_of[o.name], box, *wh))
            dst = out_dir / "images" / split / f"VOC{year}" / image.name
            place_image(image, dst, copy)
            write_label(dst, lines)
            n["images"] += 1
            n["boxes"] += len(lines)
            n["background"] += not lines
    clear_cache(out_dir, split)
    counts = {**n, **{f"skipped {k}": v for k, v in problems.counts.items()}}
    LOGGER.info(f"ultrald: VOC {split} from {','.join(specs)}: " + summary_line(counts, excluded="difficult"))
    if not n["images"]:
        raise ValueError(f"none of the images of {list(specs)} under '{voc_root}' could be converted.")
    return counts


def convert_voc(
    voc_root: str | Path,
    out_dir: str | Path,
    sets: tuple[str, ...] = ("2007:trainval", "2012:trainval"),
    test: tuple[str, ...] = ("2007:test",),
    copy: bool = False,
) -> Path:
    """Convert PASCAL VOC image sets into an Ultralytics dataset (train = `sets`, val = test = `test`); return its yaml.

    Args:
        voc_root (str | Path): The VOCdevkit folder holding VOC2007/, VOC2012/ (or the folder holding VOCdevkit/).
        out_dir (str | Path): Folder to write images/, labels/ and data.yaml into (files are replaced).
        sets (tuple[str, ...]): Training image sets as YEAR:SET, e.g. ("2007:trainval", "2012:trainval") for VOC07+12.
        test (tuple[str, ...]): Evaluation image sets, e.g. ("2007:test",); empty: val is the train split.
        copy (bool): Copy the images instead of symlinking them.

    Returns:
        (Path): The data yaml: path, train, val, test, names, voc_root, sets, summary.

    Examples:
        >>> convert_voc("VOCdevkit", "voc", sets=("2007:trainval", "2012:trainval"), test=("2007:test",))
    """
    voc_root, out_dir = Path(voc_root).resolve(), Path(out_dir).resolve()
    if not voc_root.is_dir():
        raise FileNotFoundError(f"VOC root '{voc_root}' does not exist.")
    if (voc_root / "VOCdevkit").is_dir() and not any(voc_root.glob("VOC2*")):
        voc_root = voc_root / "VOCdevkit"
    if out_dir == voc_root or voc_root in out_dir.parents:
        raise ValueError(f"out_dir '{out_dir}' lies inside the VOC root '{voc_root}'; choose another folder.")
    sets, test = tuple(sets), tuple(test)
    if not sets:
        raise ValueError("at least one training image set is needed, e.g. sets=('2007:trainval',)")
    for spec in (*sets, *test):
        parse_set(spec)  # check every spec before writing anything
    splits = {"train": sets, "test": test} if test else {"train": sets}
    summary = {split: convert_sets(voc_root, specs, out_dir, split, copy) for split, specs in splits.items()}
    val = "images/test" if test else "images/train"
    if not test:
        LOGGER.warning("ultrald: no test sets given, so val is the train split.")
    yaml_file = out_dir / "data.yaml"
    data = {
        "path": str(out_dir),
        "train": "images/train",
        "val": val,
        "test": val if test else None,
        "names": dict(enumerate(VOC_CLASSES)),
        "voc_root": str(voc_root),
        "sets": {k: list(v) for k, v in splits.items()},
        "summary": summary,
    }
    YAML.save(yaml_file, {k: v for k, v in data.items() if v is not None}, header=YAML_HEADER)
    LOGGER.info(f"ultrald: VOC dataset written to {yaml_file}")
    return yaml_file


def cli(argv: list[str]) -> int:
    """`yolo-ld convert voc`: parse `argv`, convert, print the data yaml path; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="yolo-ld convert voc",
        description="Convert PASCAL VOC (VOCdevkit XML + ImageSets/Main) into an Ultralytics dataset for ultrald "
        "(the 20 classes in standard order; difficult objects out of the labels, ignored by metric=voc).",
        epilog="example (VOC07+12): yolo-ld convert voc VOCdevkit voc-yolo --sets 2007:trainval,2012:trainval "
        "--test 2007:test",
    )
    parser.add_argument("voc_root", help="the VOCdevkit folder (holding VOC2007/, VOC2012/)")
    parser.add_argument("out", help="output folder (images/, labels/, data.yaml)")
    parser.add_argument("--sets", default="2007:trainval,2012:trainval", help="training image sets, YEAR:SET,...")
    parser.add_argument("--test", default="2007:test", help="evaluation image sets, YEAR:SET,... ('' for none)")
    parser.add_argument("--copy", action="store_true", help="copy the images instead of symlinking them")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # -h, or a usage error already printed
        return int(e.code or 0)
    split = lambda s: tuple(x for x in s.split(",") if x.strip())  # noqa: E731
    try:
        yaml_file = convert_voc(args.voc_root, args.out, split(args.sets), split(args.test), args.copy)
    except (FileNotFoundError, ValueError) as e:
        print(f"yolo-ld convert voc: error: {e}", file=sys.stderr)
        return 2
    print(yaml_file)
    return 0
