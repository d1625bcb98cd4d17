"""What every dataset format needs: a problems report, image sizes, image and label files, the data yaml, the CLI
pattern of `yolo-ld convert FORMAT`, and a cached generator for synthetic datasets."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from ultralytics.data.utils import IMG_FORMATS, exif_size, img2label_paths
from ultralytics.utils import LOGGER, TQDM, YAML

LABELMAP_LINE = re.compile(r"^([^:#][^:]*):\d+,\d+,\d+:[^:]*:[^:]*$")  # CVAT's labelmap.txt: name:r,g,b:parts:actions
STAMP = "ultrald.json"  # what a synthetic dataset was generated from: its cache key
# a split folder's or image set's name, lower case -> its split (Roboflow: valid; CVAT: Validation)
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


class Problems:
    """Count skipped or altered items by kind, keep every message, and log the first `limit` of each kind."""

    def __init__(self, limit: int = 5):
        self.counts, self.messages, self.limit = Counter(), [], limit

    def __call__(self, kind: str, message: str) -> None:
        """Count one item of `kind`; log `message` for the first `limit` of them."""
        self.counts[kind] += 1
        self.messages.append(f"[{kind}] {message}")
        if self.counts[kind] <= self.limit:
            LOGGER.warning(f"ultrald: {message}")
        elif self.counts[kind] == self.limit + 1:
            LOGGER.warning(f"ultrald: further '{kind}' problems are counted in the summary, not shown")


def image_size(file: str | Path) -> tuple[int, int] | None:
    """Return an image's (width, height) as Ultralytics loads it, EXIF orientation applied, from its header (nothing
    decoded), or None when it cannot be read."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # DOTA images reach 20000 x 20000 px
    try:
        with Image.open(file) as im:
            return exif_size(im)  # a phone photo turned by its EXIF tag: Ultralytics trains on it turned
    except (OSError, ImportError):  # ImportError: Ultralytics' Image.open patch wants pi-heif for what PIL can't read
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def place_image(src: Path, dst: Path, copy: bool = False) -> None:
    """Symlink (or copy) the image `src` to `dst`, replacing what is there."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    shutil.copy2(src, dst) if copy else os.symlink(Path(src).resolve(), dst)


def write_label(image: Path, lines: list[str]) -> None:
    """Write YOLO label lines where Ultralytics looks for the labels of `image` (an empty file for a background)."""
    label = Path(img2label_paths([str(image)])[0])
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text("".join(f"{line}\n" for line in lines))


def reset_split(root: Path, split: str) -> tuple[Path, Path]:
    """Remove the images and labels folders of a split, and Ultralytics' label cache, which would hide the labels
    written next; create the images folder; return both folders."""
    images, labels = Path(root) / "images" / split, Path(root) / "labels" / split
    for folder in images, labels:
        shutil.rmtree(folder, ignore_errors=True)
    images.mkdir(parents=True)
    (Path(root) / "labels" / f"{split}.cache").unlink(missing_ok=True)
    return images, labels


def box_label(cls: int, box: Sequence[float], w: float, h: float, counts: Counter) -> str | None:
    """Return the YOLO line 'cls xc yc w h' of an xyxy pixel box clipped to the w x h image, None when nothing is
    left; count the boxes 'clipped' and 'dropped'."""
    x0, y0, x1, y1 = (min(max(v, 0.0), s) for v, s in zip(box, (w, h, w, h)))
    if x1 <= x0 or y1 <= y0:
        counts["dropped"] += 1  # degenerate, or wholly outside the image
        return None
    counts["clipped"] += (x0, y0, x1, y1) != tuple(box)
    return f"{cls} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"


def write_sample(src: Path, dst: Path, lines: list[str], copy: bool, counts: Counter) -> None:
    """Place one image at `dst` with its labels, counting its 'images', 'boxes' and 'background'."""
    place_image(src, dst, copy)
    write_label(dst, lines)
    counts.update(images=1, boxes=len(lines), background=not lines)


BOX_NOTES = {"clipped": "clipped to the image", "dropped": "dropped (nothing left after clipping, or not a box)"}


def summarize(
    what: str,
    counts: Counter,
    problems: Problems | None,
    excluded: str | None = None,
    notes: Mapping[str, str] = BOX_NOTES,
) -> dict[str, int]:
    """Log a one-line summary of a detection split's conversion; return its counts with the problems' ('skipped
    <kind>'). `excluded` names the boxes kept out of the labels on purpose (crowd, difficult): evaluation reads them;
    `notes` maps further counts to the words the line follows them with."""
    c, kinds = Counter(counts), problems.counts if problems else {}
    skipped = ", ".join(f"{v} {k}" for k, v in kinds.items())
    why = "kept out of the labels (evaluation reads them from the original annotations)"
    parts = [f"{c[excluded]} {excluded} {why}"] if excluded else []
    parts += [f"{c[k]} {v}" for k, v in notes.items()]
    LOGGER.info(
        f"ultrald: {what}: {c['images']} images ({c['background']} background), {c['boxes']} boxes"
        + (f"; {', '.join(parts)}" if parts else "")
        + (f"; skipped: {skipped}" if skipped else "")
        + (f" ({c['boxes of skipped images']} boxes of skipped images)" if c["boxes of skipped images"] else "")
    )
    return {**counts, **{f"skipped {k}": v for k, v in kinds.items()}}


def check_dir(source: Path, out: Path, what: str) -> None:
    """Raise FileNotFoundError when the folder `source` (the `what`) is missing, ValueError when `out` lies in it."""
    if not source.is_dir():
        raise FileNotFoundError(f"{what} '{source}' does not exist.")
    if out == source or source in out.parents:
        raise ValueError(f"out_dir '{out}' lies inside the {what} '{source}'; choose another folder.")


def write_data_yaml(
    root: Path, names, splits: Mapping[str, str | None], header="", what="", to: Path | None = None, **extra
) -> Path:
    """Write `root/data.yaml` (or the file `to`): path (root), the split folders, names (a sequence or index -> name),
    then `extra`, leaving out keys whose value is None; log 'ultrald: <what> written to <yaml>' when `what` names the
    dataset; return its path."""
    names = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
    data = {"path": str(Path(root).resolve()), **splits, "names": names, **extra}
    file = Path(to or Path(root) / "data.yaml")
    YAML.save(file, {k: v for k, v in data.items() if v is not None}, header=header)
    if what:
        LOGGER.info(f"ultrald: {what} written to {file}")
    return file


def list_files(folder: Path, formats: Iterable[str] = IMG_FORMATS) -> list[Path]:
    """Return the files under `folder` with an extension in `formats` (lower case, no dot; default: Ultralytics'
    images), sub-folders included and hidden ones (editor, VCS) not, sorted by path whatever the filesystem's order."""
    formats = set(formats)
    files = (f for f in Path(folder).rglob("*") if f.suffix[1:].lower() in formats and f.is_file())
    return sorted(f for f in files if not any(p.startswith(".") for p in f.relative_to(folder).parts))


def load_names(names: str | Path | Sequence[str] | None) -> list[str] | None:
    """Return class names from a sequence or a names file (one per line, as classes.txt and obj.names hold them:
    line i is class i; or CVAT's labelmap.txt, 'name:r,g,b::' lines less its mask-only 'background'); None stays
    None. Raises FileNotFoundError for a missing file, ValueError for no names, an empty name (it would shift the
    classes after it) or a repeated one."""
    if names is None:
        return None
    where = "the class names"
    if isinstance(names, (str, Path)):
        if not Path(names).is_file():
            raise FileNotFoundError(f"names file '{names}' does not exist.")
        where, names = f"names file '{names}'", Path(names).read_text(encoding="utf-8-sig").rstrip().splitlines()
        if names and all(LABELMAP_LINE.match(n) or n.startswith("#") for n in names):  # CVAT's labelmap.txt
            names = [m[1] for n in names if (m := LABELMAP_LINE.match(n)) and m[1] != "background"]
    names = [str(n).strip() for n in names]
    if not names:
        raise ValueError(f"{where}: no names.")
    if "" in names:
        raise ValueError(f"{where}: name {names.index('') + 1} is empty.")
    if repeated := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"{where}: {repeated} appear more than once.")
    return names


def names_arg(value: str | None) -> Path | list[str] | None:
    """Return a `--names` value as a names file (an existing file, or a .txt/.names path) or a comma-separated list."""
    if value is None:
        return None
    file = Path(value)
    return file if file.is_file() or ("," not in value and file.suffix in {".txt", ".names"}) else value.split(",")


def val_split(keys: Iterable[str], val: float, seed: int = 0) -> set[str]:
    """Return the keys (image names) of a val split of fraction `val`: round(val * n) of the n keys (at least 1 and
    at most n - 1 when val > 0 and n > 1), those first in the order of sha256(seed, key). The split depends on the
    keys and the seed only, not on their order, and adding an image moves at most one other between the splits."""
    if not 0 <= val < 1:
        raise ValueError(f"val fraction {val} is not in [0, 1).")
    keys = sorted(set(keys), key=lambda k: hashlib.sha256(f"{seed}\0{k}".encode()).hexdigest())
    k = min(max(round(val * len(keys)), 1), len(keys) - 1) if val > 0 else 0
    return set(keys[:k])


def make_cli(name: str, convert: Callable, arguments: Mapping[str, str | dict], description: str) -> Callable:
    """Return the `yolo-ld convert <name>` entry point `cli(argv) -> exit status`; `arguments` maps each argument to
    its help text or `add_argument` keywords, `convert(args)` returns the data yaml (printed). FileNotFoundError and
    ValueError print one line on stderr and return 2."""

    def cli(argv: list[str]) -> int:
        raw = argparse.RawDescriptionHelpFormatter  # -h shows the description (a module docstring) as written
        p = argparse.ArgumentParser(f"yolo-ld convert {name}", description=description, formatter_class=raw)
        for arg, spec in arguments.items():
            p.add_argument(arg, **(spec if isinstance(spec, dict) else {"help": spec}))
        try:
            print(convert(p.parse_args(argv)))
        except SystemExit as e:  # -h, or a usage error argparse already printed
            return int(e.code or 0)
        except (FileNotFoundError, ValueError) as e:
            print(f"{p.prog}: error: {e}", file=sys.stderr)
            return 2
        return 0

    return cli


def generate_synthetic(
    root: str | Path, meta: Mapping, splits: Mapping[str, int], draw: Callable, names: Sequence[str], seed: int = 0
) -> Path:
    """Draw a synthetic dataset into `root` once and reuse it; return its data.yaml.

    Writes `images/<split>/<i:06d>.png`, the YOLO labels beside them in `labels/<split>/`, `data.yaml` and the stamp
    `ultrald.json`. A dataset whose stamp matches (meta, splits, names and seed; JSON-compared) is returned as it is;
    otherwise the split folders and label caches are replaced.

    Args:
        meta (Mapping): JSON-able description of everything else that changes the files: a generator version (bump
            it when the drawing changes) and its settings.
        draw (Callable): `draw(rng, split) -> (image (H, W, 3) uint8 BGR, label lines)` draws one image of a split.
        seed (int): Image i of the k-th split gets its own stream `np.random.default_rng([seed, k * 10**6 + i])`, so
            an image does not depend on the split sizes and no two images share a stream.
    """
    root = Path(root)
    stamp, yaml_file = root / STAMP, root / "data.yaml"
    key = json.loads(json.dumps({**meta, "splits": dict(splits), "names": list(names), "seed": seed}))
    if yaml_file.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == key:
        return yaml_file
    stamp.unlink(missing_ok=True)  # an interrupted run leaves no stamp, so it is not reused
    for k, (split, n) in enumerate(splits.items()):
        images, labels = reset_split(root, split)
        labels.mkdir(parents=True)
        for i in TQDM(range(n), desc=f"ultrald: drawing {root.name} {split}"):
            img, lines = draw(np.random.default_rng([seed, k * 10**6 + i]), split)
            cv2.imwrite(str(images / f"{i:06d}.png"), img)
            (labels / f"{i:06d}.txt").write_text("\n".join(lines))
    write_data_yaml(root, names, {s: f"images/{s}" for s in splits})
    stamp.write_text(json.dumps(key))
    LOGGER.info(f"ultrald: synthetic dataset ({', '.join(f'{n} {s}' for s, n in splits.items())}) written to {root}")
    return yaml_file
