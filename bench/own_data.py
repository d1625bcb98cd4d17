"""The path from a user's own data, end to end: a labelImg-style folder -> `yolo-ld convert voc` -> `yolo-ld compare`.

    python bench/own_data.py --out bench/out/own-data --epochs 10 --seeds 0,1,2

Draws a folder of PNG photographs-to-be with their VOC XMLs as labelImg writes them (two classes of the user's own,
"Tree" and "Car", with the faults real exports have: an XML without a size, a box past the image border, an image
without XML), converts it, then runs one `yolo-ld compare` with a teacher trained on *other* classes (the shapes
teacher: `--teacher`, else one is trained here on the embedded shapes), so the teacher stage fine-tunes it first.
Every step is cached: a second call reuses the folder, the teacher stage and every finished run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("Tree", "Car")


def draw_folder(root: Path, n: int, imgsz: int, seed: int = 0) -> Path:
    """Write `n` PNG images with labelImg XMLs beside them: textured backgrounds, trees (green blobs with a trunk)
    and cars (red boxes with dark wheels), 1-6 objects each; image 0 has no XML, image 1 an XML without a size, and
    every 25th image a car running past the right border."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        img = cv2.GaussianBlur(rng.integers(50, 200, (imgsz, imgsz, 3), dtype=np.uint8), (0, 0), 3)
        objects = []
        for _ in range(int(rng.integers(1, 7))):
            cls, s = int(rng.integers(2)), int(rng.integers(imgsz // 10, imgsz // 4))
            x, y = int(rng.integers(0, imgsz - s)), int(rng.integers(0, imgsz - s))
            if cls == 1 and i % 25 == 24:
                x = imgsz - s // 2  # past the border: clipped by the converter, and counted
            if cls == 0:
                trunk = ((x + s // 2 - s // 10, y + s // 2), (x + s // 2 + s // 10, y + s - 1))
                cv2.rectangle(img, *trunk, (30, 60, 90), -1)
                cv2.circle(img, (x + s // 2, y + s // 3), s // 3, (40, int(rng.integers(140, 220)), 40), -1)
                box = (x + s // 6, y, x + s - s // 6, y + s)
            else:
                h = s // 2
                cv2.rectangle(img, (x, y + h // 3), (x + s - 1, y + h), (40, 40, int(rng.integers(160, 240))), -1)
                for wx in (x + s // 5, x + 4 * s // 5):
                    cv2.circle(img, (wx, y + h), max(h // 4, 1), (20, 20, 20), -1)
                box = (x, y + h // 3, x + s, y + h + max(h // 4, 1))
            objects.append((CLASSES[cls], *box))
        cv2.imwrite(str(root / f"IMG_{i:04d}.png"), img)
        if i == 0:
            continue  # an image nobody annotated: a background image
        size = "" if i == 1 else f"<size><width>{imgsz}</width><height>{imgsz}</height><depth>3</depth></size>"
        body = "".join(
            f"<object><name>{c}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
            f"<bndbox><xmin>{a + 1}</xmin><ymin>{b + 1}</ymin><xmax>{c2}</xmax><ymax>{d}</ymax></bndbox></object>"
            for c, a, b, c2, d in objects
        )
        (root / f"IMG_{i:04d}.xml").write_text(
            f"<annotation><folder>{root.name}</folder><filename>IMG_{i:04d}.png</filename>{size}{body}</annotation>"
        )
    return root


def shapes_teacher(out: Path, epochs: int) -> Path:
    """Train (once) a teacher on the embedded shapes, 8 classes none of which is the user's: the 'COCO checkpoint'."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    from ultrald.cfg import recipe
    from ultrald.data.shapes import resolve_data
    from ultrald.models import resolve_model

    best = out / "shapes-teacher" / "weights" / "best.pt"
    if not best.is_file():
        args = {k: v for k, v in recipe("shapes").items() if k not in {"model", "data"}}
        args.update(model=resolve_model("yolov8-w25.yaml"), data=resolve_data("shapes"), epochs=epochs, plots=False)
        DetectionTrainer(overrides={**args, "project": str(out), "name": "shapes-teacher", "exist_ok": True}).train()
    return best


def main(argv: list[str] | None = None) -> int:
    """Draw, convert, compare."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench/out/own-data"))
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--teacher-epochs", type=int, default=20, help="the teacher stage's fine-tuning epochs")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--teacher", type=Path, help="a checkpoint of other classes (default: trained on shapes here)")
    p.add_argument("--student", default="yolov8-w0625.yaml")
    a = p.parse_args(argv)
    from ultrald.cli import entrypoint

    out = a.out.resolve()
    photos = draw_folder(out / "photos", a.images, a.imgsz)
    if entrypoint(["convert", "voc", str(photos), str(out / "data"), "--val", "0.2", "--seed", "0"]):
        return 2
    teacher = a.teacher or shapes_teacher(out, 20)
    keys = dict(
        model=a.student, teacher=teacher, data=out / "data" / "data.yaml", epochs=a.epochs, imgsz=a.imgsz,
        teacher_epochs=a.teacher_epochs, seeds=a.seeds, cfg="shapes", project=out, name="compare", plots=False,
    )  # fmt: skip
    return entrypoint(["compare", *(f"{k}={v}" for k, v in keys.items())])


if __name__ == "__main__":
    sys.exit(main())
