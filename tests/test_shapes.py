"""The embedded synthetic dataset: deterministic, and its labels are what was drawn."""

import cv2
import numpy as np
import pytest
from helpers import digest

from ultrald.data.shapes import CLASSES, ShapesConfig, background, draw_image, generate, label_lines


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    cfg = ShapesConfig(n_train=6, n_val=3, imgsz=64)
    a, b = generate(tmp_path / "a", cfg), generate(tmp_path / "b", cfg)
    assert digest(a.parent) == digest(b.parent)
    c = generate(tmp_path / "c", ShapesConfig(n_train=6, n_val=3, imgsz=64, seed=1))
    assert digest(c.parent) != digest(a.parent)
    assert len(list((a.parent / "images/train").glob("*.png"))) == 6
    assert len(list((a.parent / "labels/val").glob("*.txt"))) == 3


def test_existing_dataset_is_reused_and_a_changed_config_regenerates(tmp_path):
    cfg = ShapesConfig(n_train=2, n_val=1, imgsz=64)
    yaml_file = generate(tmp_path, cfg)
    label = tmp_path / "labels/train/000000.txt"
    label.write_text("edited")
    assert generate(tmp_path, cfg) == yaml_file and label.read_text() == "edited"  # reused as it is
    generate(tmp_path, ShapesConfig(n_train=2, n_val=1, imgsz=64, noise=0.0))
    assert label.read_text() != "edited"


def drawn_mask(cfg, seed):
    """Draw one single-object image and return (pixels that differ from the bare background, objects)."""
    img, objects = draw_image(cfg, np.random.default_rng(seed))
    bare = np.clip(background(np.random.default_rng(seed), cfg.imgsz), 0, 255)  # same stream, first draw
    return np.abs(img.astype(float) - bare).max(-1) > 2, objects


@pytest.mark.parametrize("seed", range(12))
def test_detect_label_is_the_box_of_the_drawn_pixels(seed):
    cfg = ShapesConfig(imgsz=96, objects=(1, 1), noise=0.0, clutter=0, seed=seed)
    mask, objects = drawn_mask(cfg, seed)
    ((cls, corners),) = objects
    ys, xs = np.nonzero(mask)
    drawn = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    label = np.concatenate((corners.min(0), corners.max(0)))
    assert np.abs(drawn - label).max() <= 2.0, (CLASSES[cls], drawn, label)  # anti-aliasing bleeds up to 1 px
    # and the label line says the same, normalised
    c, xc, yc, w, h = map(float, label_lines(objects, "detect", 96)[0].split())
    assert c == cls and np.allclose(
        [xc, yc, w, h],
        [
            (label[0] + label[2]) / 192,
            (label[1] + label[3]) / 192,
            (label[2] - label[0]) / 96,
            (label[3] - label[1]) / 96,
        ],
        atol=1e-5,
    )


@pytest.mark.parametrize("seed", range(12))
def test_obb_label_is_the_tight_rotated_rectangle_of_the_drawn_pixels(seed):
    cfg = ShapesConfig(task="obb", imgsz=96, objects=(1, 1), noise=0.0, clutter=0, seed=seed)
    mask, objects = drawn_mask(cfg, seed)
    ((_, corners),) = objects
    assert corners.min() >= 0 and corners.max() <= 96
    rect = corners.astype(np.float32)
    inside = np.array([cv2.pointPolygonTest(rect, (x + 0.5, y + 0.5), True) for y, x in zip(*np.nonzero(mask))])
    assert inside.min() >= -1.5  # every drawn pixel lies in the rectangle (anti-aliasing: up to a diagonal px)
    drawn_rect = cv2.minAreaRect(np.argwhere(mask)[:, ::-1].astype(np.float32) + 0.5)
    assert cv2.contourArea(rect) <= (drawn_rect[1][0] + 2.5) * (drawn_rect[1][1] + 2.5)  # and it is tight
