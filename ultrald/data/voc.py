"""PASCAL VOC XMLs -> Ultralytics detection dataset: the VOCdevkit benchmark, or any folder of VOC XMLs.

    yolo-ld convert voc VOCdevkit voc-yolo --sets 2007:trainval,2012:trainval --test 2007:test
    yolo-ld convert voc my-xmls my-yolo [--names a,b,c | --names names.txt] [--val 0.2] [--seed 0]

The layout picks the mode. A VOCdevkit (VOC20xx/ folders with ImageSets/Main, or a folder holding VOCdevkit/) is the
benchmark: it writes `voc-yolo/{images,labels}/{train,test}/VOC<year>/<id>.*` and `data.yaml` (val = test = the
`--test` sets), the 20 classes in their standard order. `difficult` objects stay out of the labels; `metric=voc`
re-reads each image's XML under `voc_root` and ignores them. Ultralytics has no importable VOC converter (its VOC.yaml
script drops difficult objects from the test labels too).

Boxes: VOC's 1-based inclusive corners (xmin, ymin, xmax, ymax) cover [xmin - 1, xmax] x [ymin - 1, ymax] in
continuous pixels, the convention of labels and evaluation here; the IoU of two such boxes is the devkit's IoU with
its +1 widths.

Any other folder is a folder of VOC XMLs (labelImg, CVAT, Roboflow): XMLs beside their images, or Annotations/ +
JPEGImages/, any class names, any image format Ultralytics reads; an image pairs with the XML of its own path. It writes
`my-yolo/{images,labels}/{train,val}/<path>.*` and `data.yaml`, the classes in the order of `--names`, else of
labelmap.txt (CVAT), else sorted. An export's split is kept: ImageSets/Main/<split>.txt (CVAT's Train, Validation,
Test too), else train/ + valid/ (+ test/) folders (Roboflow); else `--val` of the images by a hash of the path and
`--seed`. Difficult objects stay in the labels and are counted: without `voc_root`, `metric=voc` evaluates on these
labels. What is wrong in the input is counted in the summary (datasets/coco-voc.md lists each count)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ultralytics.utils import LOGGER

from .common import (
    BOX_NOTES,
    SPLIT_FOLDERS,
    Problems,
    box_label,
    check_dir,
    image_size,
    list_files,
    load_names,
    make_cli,
    names_arg,
    reset_split,
    summarize,
    val_split,
    write_data_yaml,
    write_sample,
)

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
FOLDER_HEADER = """\
# Written by 'yolo-ld convert voc' from a folder of VOC XMLs. Ultralytics reads path/train/val/test/names.
# Difficult objects are in the labels (summary: difficult). With no voc_root, 'metric=voc' evaluates on these labels.
#   summary: what the conversion wrote, clipped, dropped, counted and skipped
"""
FOLDER_NOTES = {
    **BOX_NOTES,
    "difficult": "difficult kept in the labels",
    "size read from image": "sizes read from the image (no <size> in the XML)",
    "size differs from image": "XML sizes that differ from the image's (EXIF orientation applied)",
    "no xml": "images without an XML kept as background",
}
SPLITS = ("train", "val", "test")
LABELMAP = "labelmap.txt"  # CVAT's label list, in its order
DEVKIT_SETS, DEVKIT_TEST = "2007:trainval,2012:trainval", "2007:test"


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
        own = problems.counts["unknown class"]
        hint = " For own classes convert the VOC<year> folder itself (a folder of XMLs)." if own else ""
        raise ValueError(f"none of the images of {list(specs)} under '{voc_root}' could be converted.{hint}")
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


def is_devkit(root: Path) -> bool:
    """Return whether `root` is a VOCdevkit: VOC20xx folders with ImageSets/Main in it or in its VOCdevkit/ folder."""
    return any((d / "ImageSets" / "Main").is_dir() for base in (root, root / "VOCdevkit") for d in base.glob("VOC2*"))


class FolderSample(NamedTuple):
    """An image of a folder of XMLs: its file, its XML and objects (None without one), its (width, height)."""

    image: Path
    xml: Path | None
    objects: list[VOCObject] | None
    wh: tuple[int, int]


def index_folder(source: Path, problems: Problems) -> tuple[dict[str, Path], dict[str, Path]]:
    """Return (key -> image, key -> XML) under `source`, or under its JPEGImages/ and Annotations/ where they exist. A
    key is the file's path under that folder without its extension ('day/IMG_1'), so an image pairs only with the XML
    of its own sub-folder. Of two files with one key (a.jpg and a.png) the first by path is kept and the other is
    skipped as 'duplicate': both would read one YOLO label."""
    images, xmls = (source / sub if (source / sub).is_dir() else source for sub in ("JPEGImages", "Annotations"))
    found = []
    for root, files in (images, list_files(images)), (xmls, list_files(xmls, ["xml"])):
        kept = {}
        for f in files:
            if (first := kept.setdefault(f.relative_to(root).with_suffix("").as_posix(), f)) != f:
                problems("duplicate", f"'{f}' has the name of '{first}', skipped (both would read one YOLO label)")
        found.append(kept)
    return found[0], found[1]


def read_folder(images: dict[str, Path], xmls: dict[str, Path], problems: Problems, n: Counter) -> dict:
    """Parse the XML of each image; return key -> FolderSample of the usable images, counting the rest."""
    samples = {}
    for key in sorted(images.keys() | xmls.keys()):
        image, xml = images.get(key), xmls.get(key)
        if image is None:
            problems("missing image", f"'{xml}' has no image '{key}.*' (beside it, or in JPEGImages/), skipped")
        elif (size := image_size(image)) is None:
            problems("unreadable image", f"'{image}' cannot be read as an image, skipped")
        elif xml is None:
            n["no xml"] += 1  # a background image, as labelImg leaves one without boxes
            samples[key] = FolderSample(image, None, None, size)
        else:
            try:
                wh, objects = parse_voc_xml(xml)
            except ValueError as e:
                problems("malformed xml", f"{e} Image skipped.")
                continue
            n["size read from image"] += wh is None
            if wh and wh != tuple(size):  # e.g. drawn on an EXIF-turned photo unturned: its boxes may be turned
                n["size differs from image"] += 1
                if n["size differs from image"] <= 3:  # the summary counts the rest
                    LOGGER.warning(f"ultrald: '{xml}' gives the size {wh}, its image {tuple(size)}: boxes follow it")
            samples[key] = FolderSample(image, xml, objects, wh or size)
    return samples


def folder_labels(samples: dict, names: list[str], problems: Problems, n: Counter) -> dict[str, list[str]]:
    """Return key -> YOLO label lines; objects of a class not in `names` are skipped as 'unknown class'."""
    cls_of, labels = {c: i for i, c in enumerate(names)}, {}
    for key, s in samples.items():
        labels[key] = []
        for o in s.objects or ():
            if o.name not in cls_of:
                problems("unknown class", f"'{s.xml}': object '{o.name}' is not one of the names, skipped")
            else:
                n["difficult"] += o.difficult  # kept: nothing here re-reads the XML to ignore it
                if line := box_label(cls_of[o.name], o.box, *s.wh, n):
                    labels[key].append(line)
    return labels


def folder_splits(source: Path, samples: dict, val: float, seed: int, problems: Problems) -> dict[str, dict]:
    """Return split -> {key: its path under images/<split>, without extension}. An export's split is kept: the image
    sets ImageSets/Main/<split>.txt (CVAT's Train, Validation, Test too) when they name train and val or test, else
    the folders train/ and val/ (valid/) or test/ under `source` (Roboflow's export); an image in none of them is
    skipped and counted, never re-drawn into train. Without either, `val` of the images go to val (`val_split`)."""
    sets = source / "ImageSets" / "Main"
    files = {SPLIT_FOLDERS[f.stem.lower()]: f for f in sorted(sets.glob("*.txt")) if f.stem.lower() in SPLIT_FOLDERS}
    root = source / "JPEGImages" if (source / "JPEGImages").is_dir() else source  # where the keys start
    folders = {
        d.name: SPLIT_FOLDERS[d.name.lower()] for d in root.iterdir() if d.is_dir() and d.name.lower() in SPLIT_FOLDERS
    }
    if "train" in files and len(files) > 1:
        set_of = {}  # image id -> the first set listing it
        for split, file in sorted(files.items(), key=lambda x: SPLITS.index(x[0])):
            for image_id in [x.split()[0] for x in file.read_text().splitlines() if x.strip()]:
                set_of.setdefault(image_id, split)
        by, missing = f"the image sets {sorted(f.name for f in files.values())} in '{sets}'", "not in an image set"
        split_of = {k: (set_of.get(k), k) for k in samples}
    elif "train" in folders.values() and len(set(folders.values())) > 1:
        by, missing = f"the folders {sorted(folders)} of '{root}'", "not in a split folder"
        split_of = {k: (folders.get(k.partition("/")[0]) if "/" in k else None, k.partition("/")[2]) for k in samples}
    else:
        if files or any(sets.glob("*.txt")):
            LOGGER.info(f"ultrald: the image sets in '{sets}' name no train and val or test split: split by --val")
        chosen = val_split(samples, val, seed)
        return {"train": {k: k for k in samples if k not in chosen}, "val": {k: k for k in sorted(chosen)}}
    LOGGER.info(f"ultrald: split by {by} (the val fraction and seed are not used)")
    splits = {split: {} for split in SPLITS}
    for key, (split, path) in split_of.items():
        if split:
            splits[split][key] = path
        else:
            problems(missing, f"'{samples[key].image}' is in none of {by}, skipped")
    return splits


def convert_voc_folder(
    source: str | Path,
    out_dir: str | Path,
    names: Sequence[str] | str | Path | None = None,
    val: float = 0.2,
    seed: int = 0,
    copy: bool = False,
) -> Path:
    """Convert a folder of VOC XMLs with any classes (XMLs beside the images, or Annotations/ + JPEGImages/) into an
    Ultralytics dataset; return its yaml. `names` (a sequence, or a file of one name per line) orders the classes and
    skips objects of others; without, the sorted names found. The split is ImageSets/Main/{train,val}.txt when they
    exist, else `val` of the images (by name and `seed`: see `val_split`). `copy` copies instead of symlinking."""
    source, out_dir = Path(source).resolve(), Path(out_dir).resolve()
    check_dir(source, out_dir, "VOC folder")
    names, problems = load_names(names), Problems()
    n = Counter(dict.fromkeys(["images", "background", "boxes", *FOLDER_NOTES], 0))
    images, xmls = index_folder(source, problems)
    samples = read_folder(images, xmls, problems, n)
    if not any(s.xml for s in samples.values()):
        raise ValueError(
            f"no image under '{source}' has a VOC annotation ({len(images)} images, {len(xmls)} XMLs found, "
            f"{sum(problems.counts.values())} skipped); XMLs go beside their images, or in Annotations/ + JPEGImages/."
        )
    found = sorted({o.name for s in samples.values() for o in s.objects or ()})
    if (labelmap := source / LABELMAP).is_file() and not names:  # CVAT's label order, unused labels included
        names = load_names(labelmap)
        LOGGER.info(f"ultrald: class names from '{labelmap}'")
    if not (names := names or found):
        raise ValueError(f"the XMLs under '{source}' hold no objects; name the classes (names=, --names).")
    labels = folder_labels(samples, names, problems, n)
    if not any(labels.values()):
        raise ValueError(f"no box under '{source}' is of the classes {names}: the XMLs name {found}.")
    splits = {k: v for k, v in folder_splits(source, samples, val, seed, problems).items() if v}
    if "train" not in splits:
        raise ValueError(f"no image under '{source}' is in the train split ({dict(problems.counts)} skipped).")
    for split, paths in splits.items():
        folder = reset_split(out_dir, split)[0]
        for key, path in paths.items():
            write_sample(samples[key].image, folder / f"{path}{samples[key].image.suffix}", labels[key], copy, n)
        n[f"{split} images"] = len(paths)
    folders = {s: f"images/{s}" if s in splits else None for s in SPLITS}
    folders["val"] = folders["val"] or folders["test"] or folders["train"]
    if "val" not in splits:
        LOGGER.warning(f"ultrald: no image in the val split, so val is the {folders['val'][7:]} split.")
    summary = summarize(f"VOC folder {source}", n, problems, notes=FOLDER_NOTES)
    what = f"VOC folder dataset ({len(names)} classes)"
    return write_data_yaml(out_dir, names, folders, FOLDER_HEADER, what, summary=summary)


def _sets(s: str) -> tuple[str, ...]:
    """Return the comma-separated YEAR:SET list `s` as a tuple (empty for '')."""
    return tuple(x for x in s.split(",") if x.strip())


def convert(a) -> Path:
    """Run `yolo-ld convert voc` on parsed arguments: the devkit or the folder mode, by the layout of `a.source`."""
    source, given = Path(a.source), lambda *opts: [o for o in opts if getattr(a, o) is not None]
    if is_devkit(source):
        if wrong := given("names", "val", "seed"):
            raise ValueError(f"--{'/--'.join(wrong)}: '{source}' is a VOCdevkit: its 20 classes and splits are fixed.")
        sets, test = DEVKIT_SETS if a.sets is None else a.sets, DEVKIT_TEST if a.test is None else a.test
        return convert_voc(source, a.out, _sets(sets), _sets(test), a.copy)
    if wrong := given("sets", "test"):
        raise ValueError(
            f"--{'/--'.join(wrong)}: '{source}' is no VOCdevkit (no VOC20xx/ImageSets/Main), so it is read as a folder "
            "of XMLs; choose its split with --val/--seed or ImageSets/Main/{train,val}.txt."
        )
    val, seed = 0.2 if a.val is None else a.val, a.seed or 0
    return convert_voc_folder(source, a.out, names_arg(a.names), val, seed, a.copy)


cli = make_cli(
    "voc",
    convert,
    {
        "source": "a VOCdevkit folder (holding VOC2007/, VOC2012/), or a folder of VOC XMLs and their images",
        "out": "output folder (images/, labels/, data.yaml)",
        "--sets": f"VOCdevkit: training image sets, YEAR:SET,... (default {DEVKIT_SETS})",
        "--test": f"VOCdevkit: evaluation image sets, YEAR:SET,... ('' for none; default {DEVKIT_TEST})",
        "--names": "folder of XMLs: the classes in order, a,b,c or a file of one per line (default: sorted, as found)",
        "--val": {"type": float, "help": "folder of XMLs: fraction of the images for val (default 0.2)"},
        "--seed": {"type": int, "help": "folder of XMLs: seed of the val split (default 0)"},
        "--copy": {"action": "store_true", "help": "copy the images instead of symlinking them"},
    },
    __doc__,
)
