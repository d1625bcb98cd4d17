"""A YOLO-format folder without a yaml -> its data.yaml, after checking every label.

    yolo-ld convert yolo DIR [--names a,b,c | --names classes.txt] [--val 0.2] [--seed 0] [--out DIR/data.yaml]

Layouts: images/{train,val[,test]} + labels/{...} (`valid` counts as val); Roboflow's {train,valid[,test]}/images +
.../labels; or one images/ + labels/ without a split, which gets the image lists train.txt and val.txt beside the
yaml (`--val` of the images as val, chosen by a hash of the image path and `--seed`); labels beside the images
(labelImg's YOLO format, CVAT's YOLO 1.1 with obj_<subset>_data/) are linked into images/ + labels/ of `--out`,
a new folder, first. The classes: `--names`, else
`names` of the dataset's own yaml (DIR/data.yaml, else the first DIR/*.yaml with names, as Roboflow exports them), else
classes.txt, names.txt or obj.names in DIR or DIR/labels (line i is class i), else class0..classN-1 from the largest
class id seen. Nothing is moved or rewritten: malformed lines, class ids outside the names, coordinates outside
[0, 1], images without a label file, label files without an image and images that share a label file are counted in
the yaml's summary; Ultralytics' own scan then skips each image that has a bad line. A yaml that `yolo-ld convert
yolo` did not write is never replaced: train from the dataset's own yaml as it is, or pass --out for a checked copy."""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ultralytics.data.utils import img2label_paths
from ultralytics.utils import LOGGER, YAML

from .common import (
    SPLIT_FOLDERS,
    Problems,
    check_dir,
    image_size,
    list_files,
    load_names,
    make_cli,
    names_arg,
    place_image,
    summarize,
    val_split,
    write_data_yaml,
    write_label,
)

HEADER = "# Written by 'yolo-ld convert yolo'"
YAML_HEADER = f"""\
{HEADER}. Ultralytics reads path/train/val/test/names; the labels are left as they were.
#   summary: what the labels hold and what is wrong with them (Ultralytics skips an image with a bad line)
"""
OBB_HEADER = "# Every label line has 9 columns (class + 4 corners): an OBB dataset; train it with an -obb model.\n"
NINE = "9 columns"  # lines of class + 4 corners: all of them, an OBB dataset
NAME_FILES = ("classes.txt", "names.txt", "obj.names")  # labelImg, common, darknet
CVAT_SUBSET = re.compile(r"^obj_(.+)_data$")  # CVAT's YOLO 1.1 export: a folder per subset
NOTES = {
    "no label": "images without a label file (background)",
    "malformed line": "malformed lines",
    "class out of range": "lines with a class id outside the names",
    "outside [0, 1]": "lines with coordinates outside [0, 1]",
    "polygon line": "polygon lines (Ultralytics boxes them)",
    "mixed lines": "label files mixing box and polygon lines (Ultralytics skips their images)",
    "shared label": "images sharing a label file with one of the same stem",
    "label without image": "label files without an image",
    "unreadable image": "unreadable images",
}


def find_splits(root: Path) -> dict[str, str]:
    """Return split -> images folder relative to `root`: images/<split>/ or Roboflow's <split>/images/, or
    {'all': 'images'} for one images/ folder without a split."""
    for pattern in "images/{}", "{}/images":
        found = {}
        for folder, split in SPLIT_FOLDERS.items():
            if (root / pattern.format(folder)).is_dir():
                found.setdefault(split, pattern.format(folder))
        if found:
            if "train" not in found:
                raise ValueError(f"'{root}' has the splits {list(found)} but not {pattern.format('train')}/.")
            return found
    if (root / "images").is_dir():
        return {"all": "images"}
    raise ValueError(f"'{root}' holds no images/, images/train/ or train/images/ folder: not a YOLO-format dataset.")


def parse_line(fields: list[str]) -> tuple[int, list[float]] | str:
    """Return (class id, coordinates) of a split YOLO label line, or why it is malformed: Ultralytics reads 5 fields
    (class xc yc w h) or a class and 3 or more x y points."""
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        return f"{len(fields)} fields, not 'class xc yc w h' or 'class x1 y1 x2 y2 x3 y3 ...'"
    try:
        cls, coords = float(fields[0]), [float(v) for v in fields[1:]]
    except ValueError:
        return "a field is not a number"
    if cls < 0 or cls % 1 or any(v != v for v in coords):  # v != v: NaN
        return f"class '{fields[0]}' is not a non-negative integer, or a coordinate is NaN"
    return int(cls), coords


def check_labels(images: list[Path], bad: Problems, n: Counter) -> list[tuple[int, str]]:
    """Read the YOLO label of each image; count images, background, boxes and problems into `n` and `bad`; return the
    class id and 'file:line' of each well-formed line, to check against the names once they are known."""
    ids = []
    for image, label in zip(images, map(Path, img2label_paths([str(f) for f in images]))):
        n["images"] += 1
        if image_size(image) is None:
            bad("unreadable image", f"'{image}' cannot be read as an image")
        if not label.is_file():
            n.update(["background", "no label"])
            continue
        text = label.read_text(encoding="utf-8-sig").splitlines()
        boxes = [(f"{label}:{i}", parse_line(x.split())) for i, x in enumerate(text, 1) if x.split()]
        n["background"] += not boxes
        if len({len(b[1]) > 4 for _, b in boxes if not isinstance(b, str)}) > 1:
            bad("mixed lines", f"'{label}' mixes box and polygon lines: Ultralytics skips its image as corrupt")
        for where, box in boxes:
            if isinstance(box, str):
                bad("malformed line", f"'{where}': {box}")
                continue
            n.update({"boxes": 1, "polygon line": len(box[1]) > 4, NINE: len(box[1]) == 8})
            if not all(0 <= v <= 1 for v in box[1]):
                bad("outside [0, 1]", f"'{where}': coordinates {box[1]} are not all in [0, 1]")
            ids.append((box[0], where))
    return ids


def label_conflicts(folders: list[Path], images: list[Path], bad: Problems) -> None:
    """Count the images whose label file another image (same folder and stem, e.g. a.jpg and a.png) reads too, then
    the label files under the labels folders of `folders` that no image of `images` reads."""
    first = {}  # label file -> the first image that reads it
    for image, label in zip(images, img2label_paths([str(f) for f in images])):
        if (other := first.setdefault(label, image)) != image:
            bad("shared label", f"'{image}' and '{other}' share the label '{label}'")
    for folder in {Path(img2label_paths([str(f / "x.jpg")])[0]).parent for f in folders}:
        for label in sorted(folder.rglob("*.txt")) if folder.is_dir() else ():
            if str(label) not in first and label.name not in NAME_FILES:
                bad("label without image", f"'{label}' belongs to no image")


def ours(file: Path) -> bool:
    """Return whether 'yolo-ld convert yolo' wrote the yaml `file` (then it may be replaced, and its names not read)."""
    return file.read_text(encoding="utf-8", errors="replace").startswith(HEADER)


def yaml_names(root: Path) -> list[str] | None:
    """Return the names of the dataset's own yaml (root/data.yaml, else the first root/*.yaml with `names`), a list or
    Ultralytics' {index: name}; None without one. Yamls of this step are skipped: their names came from here."""
    others = sorted(f for f in root.iterdir() if f.suffix in {".yaml", ".yml"} and f.name != "data.yaml")
    for file in (f for f in [root / "data.yaml", *others] if f.is_file() and not ours(f)):
        try:
            if (names := (YAML.load(file) or {}).get("names")) is None:
                continue
            names = [names.get(i) for i in range(len(names))] if isinstance(names, dict) else names
            if not isinstance(names, list) or None in names:
                raise ValueError("names is neither a list nor {0: name, 1: name, ...}")
            LOGGER.info(f"ultrald: class names from '{file}'")
            return load_names([str(n) for n in names])
        except (ValueError, AttributeError) as e:  # Ultralytics' YAML error spans lines: its first
            raise ValueError(f"'{file}': its class names cannot be read ({str(e).splitlines()[0]}).") from None
    return None


def class_names(root: Path, ids: list[tuple[int, str]]) -> list[str]:
    """Return the names of the dataset's own yaml, else of a names file in `root` or `root`/labels, else
    class0..classN-1 by the largest id seen."""
    if names := yaml_names(root):
        return names
    for file in (root / f for f in NAME_FILES), (root / "labels" / f for f in NAME_FILES):
        if file := next((f for f in file if f.is_file()), None):
            LOGGER.info(f"ultrald: class names from '{file}'")
            return load_names(file)
    if not ids:
        raise ValueError(f"'{root}' has no class names (--names, or {'/'.join(NAME_FILES)}) and no label to count.")
    top = max(cls for cls, _ in ids)
    LOGGER.warning(f"ultrald: no class names given or found in '{root}': class0..class{top}; pass --names")
    return [f"class{i}" for i in range(top + 1)]


def list_path(file: Path, root: Path) -> str:
    """Return how a yaml (path `root`) or an image list names `file`: relative when under root, else absolute."""
    return os.path.relpath(file, root) if root in file.parents else str(file)


def split_images(images: list[Path], root: Path, val: float, seed: int) -> dict[str, list[Path]]:
    """Return train and val of `images`: `val` of them as val, chosen by their paths under `root` and `seed`."""
    chosen = val_split(keys := {f.relative_to(root).as_posix(): f for f in images}, val, seed)
    splits = {"train": [f for k, f in keys.items() if k not in chosen], "val": [keys[k] for k in sorted(chosen)]}
    return {split: files for split, files in splits.items() if files}


def write_lists(splits: dict[str, list[Path]], root: Path, yaml_file: Path) -> dict[str, str]:
    """Write the image lists <split>.txt beside `yaml_file` (Ultralytics reads './' lines relative to the list);
    return split -> list as the yaml (path `root`) names it. Lists that are there before the yaml are the user's."""
    lists = {split: yaml_file.parent / f"{split}.txt" for split in splits}
    if not yaml_file.is_file() and (theirs := [str(f) for f in lists.values() if f.exists()]):
        raise ValueError(f"{theirs} exist already; pass --out to write the yaml and its image lists elsewhere.")
    for split, file in lists.items():
        lines = (f"./{list_path(f, file.parent)}" if file.parent in f.parents else str(f) for f in splits[split])
        file.write_text("".join(f"{line}\n" for line in lines))
    return {split: list_path(file, root) for split, file in lists.items()}


def yaml_target(root: Path, out: str | Path | None) -> Path:
    """Return the yaml to write (`out`, a .yaml file or a folder, else root/data.yaml); refuse to replace a yaml
    that 'yolo-ld convert yolo' did not write."""
    file = Path(out or root).resolve()
    file = file if file.suffix in {".yaml", ".yml"} else file / "data.yaml"
    if file.is_file() and not ours(file) and file.parent == root:  # e.g. Roboflow's: it already works as it is
        raise ValueError(
            f"'{file}' is the dataset's own yaml ('yolo-ld convert yolo' did not write it, so it is kept): Ultralytics "
            f"and yolo-ld train from it as it is (data={file}); pass --out to write the checked copy elsewhere (with "
            "this yaml's class names)."
        )
    if file.is_file() and not ours(file):
        raise ValueError(f"'{file}' exists and 'yolo-ld convert yolo' did not write it; pass another --out.")
    file.parent.mkdir(parents=True, exist_ok=True)
    return file


def flatten(root: Path, out: str | Path | None) -> Path:
    """Write the images/ + labels/ folders Ultralytics reads into the folder `out` for a dataset whose labels lie beside
    its images (labelImg's YOLO format; CVAT's YOLO 1.1 export, split by its obj_<subset>_data/ folders when they name
    train and another split): images linked, labels and names files copied, nothing in `root` changed; return `out`."""
    if out is None:
        raise ValueError(
            f"'{root}' keeps its labels beside the images (labelImg, CVAT YOLO 1.1), and Ultralytics reads images/ and "
            "labels/ folders: pass --out NEW_FOLDER to write them there (images linked, labels copied)."
        )
    dest = Path(out).resolve()
    dest = dest.parent if dest.suffix in {".yaml", ".yml"} else dest
    check_dir(root, dest, "YOLO dataset folder")
    if dest.is_dir() and any(dest.iterdir()) and not ((dest / "data.yaml").is_file() and ours(dest / "data.yaml")):
        raise ValueError(f"--out '{dest}' is not empty and holds no earlier 'yolo-ld convert yolo' output.")
    images, labels = list_files(root), {f for f in list_files(root, ["txt"]) if f.name not in NAME_FILES}
    subsets = {f: SPLIT_FOLDERS.get(m[1].lower()) if (m := CVAT_SUBSET.match(f.relative_to(root).parts[0])) else None
               for f in images}  # fmt: skip
    by_folder = "train" in subsets.values() and None not in subsets.values() and len(set(subsets.values())) > 1
    for folder in dest / "images", dest / "labels":
        shutil.rmtree(folder, ignore_errors=True)
    for image in images:
        rel = image.relative_to(root)
        target = dest / "images" / (Path(subsets[image], *rel.parts[1:]) if by_folder else rel)
        place_image(image, target)
        if (label := image.with_suffix(".txt")) in labels:
            labels.discard(label)
            write_label(target, label.read_text(encoding="utf-8-sig").splitlines())
    for name in (f for f in NAME_FILES if (root / f).is_file()):
        shutil.copy2(root / name, dest / name)
    if labels:
        LOGGER.warning(f"ultrald: {len(labels)} label files beside no image are not used, e.g. '{min(labels)}'")
    LOGGER.info(f"ultrald: {len(images)} images of '{root}' with their labels in images/ and labels/ of '{dest}'")
    return dest


def convert_yolo(
    root: str | Path,
    names: Sequence[str] | str | Path | None = None,
    val: float = 0.2,
    seed: int = 0,
    out: str | Path | None = None,
) -> Path:
    """Write the data yaml of the YOLO-format folder `root` after checking its labels; return the yaml (`out`, a
    .yaml file or a folder, else root/data.yaml). A folder without a split gets image lists beside the yaml, `val`
    of the images as val (by path and `seed`: see `val_split`). `names`: a sequence or a names file (see module)."""
    root, names = Path(root).resolve(), load_names(names)
    if not root.is_dir():
        raise FileNotFoundError(f"YOLO dataset folder '{root}' does not exist.")
    layouts = ("images", *(f"{s}/images" for s in SPLIT_FOLDERS))
    if not any((root / f).is_dir() for f in layouts) and any(f.with_suffix(".txt").is_file() for f in list_files(root)):
        return convert_yolo(flatten(root, out), names, val, seed)  # labels beside the images
    file, folders = yaml_target(root, out), find_splits(root)
    images = {split: files for split, folder in folders.items() if (files := list_files(root / folder))}
    if not images.get("train", images.get("all")):
        raise ValueError(f"no image under '{root}' ({' or '.join(f'{f}/' for f in folders.values())}).")
    every = [f for files in images.values() for f in files]
    if "all" in images:  # no split: train and val image lists
        images = split_images(images["all"], root, val, seed)
    bad, n = Problems(), Counter(dict.fromkeys(["images", "background", "boxes", *NOTES], 0))
    ids = check_labels(every, bad, n)
    names = names or class_names(root, ids)
    for cls, where in ids:
        if cls >= len(names):
            bad("class out of range", f"'{where}': class {cls} is outside the {len(names)} names")
    label_conflicts([root / f for f in folders.values()], every, bad)
    n.update({**bad.counts, **{f"{split} images": len(files) for split, files in images.items()}})
    if obb := 0 < n["boxes"] == n.pop(NINE, 0):
        LOGGER.warning(f"ultrald: {OBB_HEADER[2:].strip()}")
    if "val" not in images:
        LOGGER.warning("ultrald: no val split, so val is the train split.")
    folders = write_lists(images, root, file) if "all" in folders else {s: folders[s] for s in images}
    summary = summarize(f"YOLO dataset {root}", n, None, notes=NOTES)
    splits = {"train": folders["train"], "val": folders.get("val", folders["train"]), "test": folders.get("test")}
    what, header = f"YOLO dataset ({len(names)} classes)", YAML_HEADER + (OBB_HEADER if obb else "")
    return write_data_yaml(root, names, splits, header, what, file, summary=summary)


cli = make_cli(
    "yolo",
    lambda a: convert_yolo(a.root, names_arg(a.names), a.val, a.seed, a.out),
    {
        "root": "the YOLO-format dataset folder (images/ + labels/, split or not, or Roboflow's train/ valid/ test/)",
        "--names": "the classes in order, a,b,c or a file of one per line (default: classes.txt/names.txt/obj.names)",
        "--val": {"type": float, "default": 0.2, "help": "without a split: fraction of the images for val"},
        "--seed": {"type": int, "default": 0, "help": "without a split: seed of the val split"},
        "--out": "the yaml to write, or its folder (default ROOT/data.yaml)",
    },
    __doc__,
)
