"""What every dataset format needs: a problems report, image sizes, image and label files, the data yaml, the CLI
pattern of `yolo-ld convert FORMAT`, and a cached generator for synthetic datasets."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from ultralytics.data.utils import img2label_paths
from ultralytics.utils import LOGGER, TQDM, YAML

STAMP = "ultrald.json"  # what a synthetic dataset was generated from: its cache key


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
    """Return an image's (width, height) from its header (PIL, nothing decoded), or None when it cannot be read."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # DOTA images reach 20000 x 20000 px
    try:
        with Image.open(file) as im:
            return im.size
    except OSError:
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


def summarize(what: str, counts: Counter, problems: Problems, excluded: str) -> dict[str, int]:
    """Log a one-line summary of a detection split's conversion; return its counts with the problems'. `excluded`
    names the boxes kept out of the labels on purpose (crowd, difficult): evaluation reads them."""
    c, skipped = Counter(counts), ", ".join(f"{v} {k}" for k, v in problems.counts.items())
    LOGGER.info(
        f"ultrald: {what}: {c['images']} images ({c['background']} background), {c['boxes']} boxes; "
        f"{c[excluded]} {excluded} kept out of the labels (evaluation reads them from the original annotations), "
        f"{c['clipped']} clipped to the image, {c['dropped']} dropped (nothing left after clipping, or not a box)"
        + (f"; skipped: {skipped}" if skipped else "")
        + (f" ({c['boxes of skipped images']} boxes of skipped images)" if c["boxes of skipped images"] else "")
    )
    return {**counts, **{f"skipped {k}": v for k, v in problems.counts.items()}}


def check_dir(source: Path, out: Path, what: str) -> None:
    """Raise FileNotFoundError when the folder `source` (the `what`) is missing, ValueError when `out` lies in it."""
    if not source.is_dir():
        raise FileNotFoundError(f"{what} '{source}' does not exist.")
    if out == source or source in out.parents:
        raise ValueError(f"out_dir '{out}' lies inside the {what} '{source}'; choose another folder.")


def write_data_yaml(root: Path, names, splits: Mapping[str, str | None], header="", what="", **extra) -> Path:
    """Write `root/data.yaml`: path, the split folders, names (a sequence or index -> name), then `extra`, leaving out
    keys whose value is None; log 'ultrald: <what> written to <yaml>' when `what` names the dataset; return its path."""
    names = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
    data = {"path": str(Path(root).resolve()), **splits, "names": names, **extra}
    YAML.save(file := Path(root) / "data.yaml", {k: v for k, v in data.items() if v is not None}, header=header)
    if what:
        LOGGER.info(f"ultrald: {what} written to {file}")
    return file


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
