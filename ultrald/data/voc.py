"""PASCAL VOC (VOCdevkit XML + ImageSets) -> Ultralytics detection dataset that keeps what VOC evaluation needs.

    yolo-ld convert voc VOCdevkit voc-yolo --sets 2007:trainval,2012:trainval --test 2007:test

writes `voc-yolo/{images,labels}/{train,test}/VOC<year>/<id>.*` and `data.yaml` (val = test = the `--test` sets), the
20 classes in their standard order. `difficult` objects stay out of the labels; `metric=voc` re-reads each image's XML
under `voc_root` and ignores them. Ultralytics has no importable VOC converter (its VOC.yaml script drops difficult
objects from the test labels too).

Boxes: VOC's 1-based inclusive corners (xmin, ymin, xmax, ymax) cover [xmin - 1, xmax] x [ymin - 1, ymax] in
continuous pixels, the convention of labels and evaluation here; the IoU of two such boxes is the devkit's IoU with
its +1 widths."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from ultralytics.utils import LOGGER

from .common import Problems, box_label, check_dir, image_size, make_cli, summarize, write_data_yaml, write_sample

VOC_CLASSES = tuple(
    "aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person pottedplant "  # noqa: SIM905
    "sheep sofa train tvmonitor".split()
)
YAML_HEADER = """\
# Written by 'yolo-ld convert voc'. Ultralytics reads path/train/val/test/names; ultrald's VOC evaluation also reads:
#   voc_root: the VOCdevkit folder; images/<split>/VOC<year>/<id>.jpg is evaluated against
#             voc_root/VOC<year>/Annotations/<id>.xml, difficult objects included (and ignored)
#   sets:     split -> the YEAR:SET image sets it holds
#   summary:  what the conversion wrote, clipped, dropped and skipped
"""


class VOCObject(NamedTuple):
    """One object of a VOC annotation: class name, box xyxy in continuous pixels, difficult flag."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool


def parse_voc_xml(file: str | Path) -> tuple[tuple[int, int] | None, list[VOCObject]]:
    """Parse a VOC annotation XML; return ((width, height) or None when absent or zero, objects). Raises ValueError
    naming the file when it is not well-formed XML or an object lacks its name or box."""
    try:
        root = ET.parse(file).getroot()
    except ET.ParseError as e:
        raise ValueError(f"'{file}' is not well-formed XML ({e}).") from None
    try:
        wh = tuple(int(float(root.find("size").findtext(k))) for k in ("width", "height"))
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


def convert_sets(voc_root: Path, specs: tuple[str, ...], out_dir: Path, split: str, copy: bool) -> dict[str, int]:
    """Write the images and labels of the image sets `specs` as `split`; return the counts."""
    problems, n, done = Problems(), Counter(), set()
    cls_of = {c: i for i, c in enumerate(VOC_CLASSES)}
    for spec in specs:
        year, name = parse_set(spec)
        base = voc_root / f"VOC{year}"
        if not (set_file := base / "ImageSets" / "Main" / f"{name}.txt").is_file():
            raise FileNotFoundError(f"image set file '{set_file}' of '{spec}' does not exist.")
        for image_id in [line.split()[0] for line in set_file.read_text().splitlines() if line.strip()]:
            if (year, image_id) in done:
                continue  # listed by two sets
            done.add((year, image_id))
            xml, jpegs = base / "Annotations" / f"{image_id}.xml", base / "JPEGImages"
            image = next((f for s in (".jpg", ".jpeg", ".png") if (f := jpegs / f"{image_id}{s}").is_file()), None)
            try:
                wh, objects = parse_voc_xml(xml) if image and xml.is_file() else (None, None)
            except ValueError as e:
                problems("malformed xml", f"{e} Image skipped.")
                continue
            if image is None:
                problems("missing image", f"{set_file}: image '{jpegs / image_id}.jpg' does not exist")
            elif objects is None:
                problems("missing xml", f"{set_file}: annotation '{xml}' does not exist, image skipped")
            elif unknown := sorted({o.name for o in objects} - cls_of.keys()):
                problems("unknown class", f"'{xml}': unknown classes {unknown} (not VOC's 20), image skipped")
            elif wh is None and (wh := image_size(image)) is None:
                problems("unreadable image", f"'{xml}' gives no size and '{image}' cannot be read, image skipped")
            else:
                n["difficult"] += sum(o.difficult for o in objects)  # ignored by evaluation, which reads the XML
                lines = [x for o in objects if not o.difficult and (x := box_label(cls_of[o.name], o.box, *wh, n))]
                write_sample(image, out_dir / "images" / split / f"VOC{year}" / image.name, lines, copy, n)
    counts = summarize(f"VOC {split} from {','.join(specs)}", n, problems, "difficult")
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
    `voc_root` is the VOCdevkit folder (or the folder holding it); image sets are YEAR:SET, e.g. ("2007:trainval",
    "2012:trainval") for VOC07+12; without `test` sets val is the train split. `copy` copies instead of symlinking."""
    voc_root, out_dir = Path(voc_root).resolve(), Path(out_dir).resolve()
    check_dir(voc_root, out_dir, "VOC root")
    if (voc_root / "VOCdevkit").is_dir() and not any(voc_root.glob("VOC2*")):
        voc_root = voc_root / "VOCdevkit"
    sets, test = tuple(sets), tuple(test)
    if not sets:
        raise ValueError("at least one training image set is needed, e.g. sets=('2007:trainval',)")
    for spec in (*sets, *test):
        parse_set(spec)  # check every spec before writing anything
    splits = {"train": sets, "test": test} if test else {"train": sets}
    summary = {split: convert_sets(voc_root, specs, out_dir, split, copy) for split, specs in splits.items()}
    if not test:
        LOGGER.warning("ultrald: no test sets given, so val is the train split.")
    val = "images/test" if test else "images/train"
    folders = {"train": "images/train", "val": val, "test": val if test else None}
    extra = {"voc_root": str(voc_root), "sets": {k: list(v) for k, v in splits.items()}, "summary": summary}
    return write_data_yaml(out_dir, VOC_CLASSES, folders, YAML_HEADER, "VOC dataset", **extra)


def _sets(s: str) -> tuple[str, ...]:
    """Return the comma-separated YEAR:SET list `s` as a tuple (empty for '')."""
    return tuple(x for x in s.split(",") if x.strip())


cli = make_cli(
    "voc",
    lambda a: convert_voc(a.voc_root, a.out, _sets(a.sets), _sets(a.test), a.copy),
    {
        "voc_root": "the VOCdevkit folder (holding VOC2007/, VOC2012/)",
        "out": "output folder (images/, labels/, data.yaml)",
        "--sets": {"default": "2007:trainval,2012:trainval", "help": "training image sets, YEAR:SET,..."},
        "--test": {"default": "2007:test", "help": "evaluation image sets, YEAR:SET,... ('' for none)"},
        "--copy": {"action": "store_true", "help": "copy the images instead of symlinking them"},
    },
    __doc__,
)
