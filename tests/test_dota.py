"""DOTA import and protocol: hand-written labelTxt -> exact patch labels; merging; Task1 files; AP by hand; e2e."""

import json
import math
import re

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import IMGSZ, tiny_yaml
from ultralytics.utils import ops

from ultrald.data.dota import (
    DOTA_CLASSES,
    PATCHES,
    Patch,
    class_names,
    cli,
    clip_object,
    convert_dota,
    parse_dota_txt,
    parse_patch_name,
    patch_name,
    windows,
)
from ultrald.eval.ap import match
from ultrald.eval.dota import (
    IOU_THRS,
    Detections,
    GroundTruth,
    dota_evaluate,
    merge_patches,
    poly_iou,
    poly_nms,
    write_task1,
)
from ultrald.eval.protocol import batch_labels

V10 = DOTA_CLASSES["1.0"]
PLANE, SHIP, SMALL_VEHICLE, LARGE_VEHICLE, HARBOR = (
    V10.index(c) for c in ("plane", "ship", "small-vehicle", "large-vehicle", "harbor")
)


def rect(x0, y0, x1, y1):
    """The 8 coordinates of an axis-aligned rectangle, clockwise in image coordinates from the top left."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def line(poly, name, difficult=0):
    """A DOTA annotation line."""
    return " ".join(f"{v:g}" for v in poly) + f" {name} {difficult}"


# train/P0001: 180 x 100 px. With size 100 and gap 20 the windows are x 0..100 and 80..180 (y 0..100).
P0001 = [
    "imagesource:GoogleEarth",  # line 1, header
    "gsd:0.146343590398",  # line 2, header
    line(rect(10, 10, 50, 30), "plane"),  # 3: in window 0 only
    line(rect(70, 40, 110, 60), "small-vehicle"),  # 4: 75% in each window -> clipped in both
    line(rect(120, 20, 160, 80), "ship", 1),  # 5: difficult, in window 1
    line(rect(85, 70, 95, 90), "harbor"),  # 6: whole in both windows
    line(rect(90, 5, 130, 15), "large-vehicle"),  # 7: 25% in window 0 (cut, left out), whole in window 1
    "1 2 3 4 5 6 plane 0",  # 8: wrong count
    "10 10 50 10 abc 30 10 30 plane 0",  # 9: non-numeric
    "10 10 50 10 50 30 10 30 airport 0",  # 10: unknown class (DOTA-v2)
    "10 10 50 10 90 10 30 10 plane 0",  # 11: degenerate (collinear)
    "",  # blank lines are not problems
    "20 60 40 60 40 80 20 80 helicopter",  # 13: no difficult field: not difficult (9 fields, as the devkit)
]
# val/P0002: 112 x 64 px; with size 64 and gap 16 the windows are x 0..64 and 48..112.
P0002 = [
    line(rect(4, 4, 24, 20), "plane"),
    line(rect(70, 30, 100, 50), "ship"),
    line(rect(50, 10, 60, 20), "small-vehicle"),  # in both windows: merging must keep one
    line(rect(10, 40, 30, 60), "plane", 1),  # difficult: ignored by the evaluation
]


def image(file, w, h, seed=0):
    """Write a random w x h image."""
    file.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(file), np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def dota_root(tmp_path):
    """Raw DOTA folders as distributed: train and val with labelTxt, test with images only."""
    root = tmp_path / "DOTA"
    image(root / "train/images/P0001.png", 180, 100)
    (root / "train/labelTxt").mkdir(parents=True)
    (root / "train/labelTxt/P0001.txt").write_text("\n".join(P0001) + "\n")
    image(root / "val/images/P0002.png", 112, 64, 1)
    (root / "val/labelTxt").mkdir(parents=True)
    (root / "val/labelTxt/P0002.txt").write_text("\n".join(P0002) + "\n")
    image(root / "test/images/P0003.jpg", 150, 100, 2)
    return root


def read_task1(folder, names):
    """Task1_<class>.txt files back into image -> Detections."""
    rows = {}
    for c, name in enumerate(names):
        for line in (folder / f"Task1_{name}.txt").read_text().splitlines():
            image, score, *poly = line.split()
            rows.setdefault(image, []).append([*map(float, poly), float(score), c])
    return {image: Detections(a[:, :8], a[:, 8], a[:, 9]) for image, a in ((i, np.array(r)) for i, r in rows.items())}


def read_labels(file):
    """Label rows of a patch: {(cls, rounded points)}."""
    rows = [r.split() for r in file.read_text().splitlines()]
    return sorted((int(r[0]), tuple(round(float(v), 6) for v in r[1:])) for r in rows)


def normalised(cls, points, w, h):
    """The expected label row of pixel points (x1, y1, ..., x4, y4) in a w x h patch."""
    return cls, tuple(round(v / (w if i % 2 == 0 else h), 6) for i, v in enumerate(points))


def test_parse_reports_malformed_lines_with_file_and_line(dota_root):
    """Headers are read, malformed lines of each kind are skipped and reported as file:line, 9 fields are allowed."""
    file = dota_root / "train/labelTxt/P0001.txt"
    objects, header, problems = parse_dota_txt(file, V10)
    assert header == {"imagesource": "GoogleEarth", "gsd": "0.146343590398"}
    assert [o.name for o in objects] == ["plane", "small-vehicle", "ship", "harbor", "large-vehicle", "helicopter"]
    assert [o.difficult for o in objects] == [False, False, True, False, False, False]
    assert objects[0].poly == (10, 10, 50, 10, 50, 30, 10, 30)
    assert [(kind, m.split(": ")[0]) for kind, m in problems] == [
        ("wrong count", f"{file}:8"),
        ("non-numeric", f"{file}:9"),
        ("unknown class", f"{file}:10"),
        ("degenerate", f"{file}:11"),
    ]
    assert "'airport'" in problems[2][1]
    # class names are matched in DOTA's spelling: Ultralytics' spaced names find the same objects
    spaced, _, _ = parse_dota_txt(file, class_names("1.0", "ultralytics"))
    assert [o.name for o in spaced][:2] == ["plane", "small vehicle"]
    # container-crane is a v1.5 class only
    (file.parent / "crane.txt").write_text(line(rect(0, 0, 9, 9), "container-crane") + "\n")
    assert parse_dota_txt(file.parent / "crane.txt", V10)[2][0][0] == "unknown class"
    assert parse_dota_txt(file.parent / "crane.txt", DOTA_CLASSES["1.5"])[0][0].name == "container-crane"


@pytest.mark.parametrize("version, reference", [("1.0", "DOTAv1.yaml"), ("1.5", "DOTAv1.5.yaml")])
def test_class_ids_are_those_of_ultralytics_dota_yamls(dota_root, tmp_path, version, reference):
    """A converted set numbers the classes as Ultralytics' own DOTA yamls do, so a model trained on either set reads
    the other's labels: names='ultralytics' writes exactly their names, DOTA's spelling the same classes in the same
    order, and the label rows carry those ids."""
    from ultralytics.utils import ROOT

    expected = yaml.safe_load((ROOT / "cfg/datasets" / reference).read_text())["names"]
    spaced = convert_dota(dota_root, tmp_path / "spaced", version, size=0, splits=("val",), names="ultralytics")
    assert yaml.safe_load(spaced.read_text())["names"] == expected
    hyphens = convert_dota(dota_root, tmp_path / "dota", version, size=0, splits=("val",))
    assert yaml.safe_load(hyphens.read_text())["names"] == {i: n.replace(" ", "-") for i, n in expected.items()}
    ids = {v: k for k, v in expected.items()}
    rows = read_labels(tmp_path / "dota/labels/val/P0002.txt")  # plane, ship, small vehicle, difficult plane
    assert sorted(c for c, _ in rows) == sorted([ids["plane"], ids["plane"], ids["ship"], ids["small vehicle"]])
    with pytest.raises(ValueError, match="DOTA version '2.0'"):
        class_names("2.0")


def test_windows_and_patch_names():
    """Windows as the devkit's ImgSplit: every size - gap pixels, the last flush with the border."""
    assert windows(2000, 1000, 1024, 200) == [(0, 0, 1024, 1000), (824, 0, 1848, 1000), (976, 0, 2000, 1000)]
    assert windows(1024, 500, 1024, 200) == [(0, 0, 1024, 500)]  # not padded
    assert windows(180, 100, 100, 20) == [(0, 0, 100, 100), (80, 0, 180, 100)]
    with pytest.raises(ValueError, match="gap"):
        windows(100, 100, 100, 100)
    assert patch_name("P0001", 1.0, 0, 824) == "P0001__1__0___824"
    assert parse_patch_name("P0001__0.5__0___824.png") == Patch("P0001", 0.5, 0, 824)
    assert parse_patch_name("P0001__1024__0___824") == Patch("P0001", 1.0, 0, 824)  # Ultralytics' split_dota name
    assert parse_patch_name("P0001") is None


def test_clip_object_by_hand():
    """Clipped objects: the minimum-area rectangle of the part inside, corners moved onto the border, same order."""
    r = np.array(rect(10, 10, 50, 30), float).reshape(4, 2)
    points, fit = clip_object(r, (20, 0, 100, 100))  # 30 of 40 px wide inside: IoF 0.75
    assert fit == "clipped" and np.allclose(points, [(0, 10), (30, 10), (30, 30), (0, 30)])
    assert clip_object(r, (40, 0, 100, 100)) == (None, "cut")  # IoF 0.25 < 0.7
    assert clip_object(r, (40, 0, 100, 100), iof=0.2)[1] == "clipped"
    assert clip_object(r, (60, 0, 100, 100)) == (None, "outside")
    points, fit = clip_object(r, (0, 0, 100, 100))
    assert fit == "inside" and np.array_equal(points, r)
    # A 45-degree square (diamond) of area 3200 around (50, 50), cut at x = 80: the triangle (80, 40), (90, 50),
    # (80, 60) of area 100 is outside, IoF 3100 / 3200. The part inside is a pentagon whose minimum-area rectangle is
    # the diamond itself (area 3200; upright it would be 70 x 80 = 5600), so the corner (90, 50) moves onto the
    # border at (80, 50); the other points keep the original order.
    diamond = np.array([(50, 10), (90, 50), (50, 90), (10, 50)], float)
    points, fit = clip_object(diamond, (0, 0, 80, 100))
    assert fit == "clipped" and np.allclose(points, [(50, 10), (80, 50), (50, 90), (10, 50)])
    # the same diamond in a window offset by (5, 0): points come back in window coordinates
    points, _ = clip_object(diamond, (5, 0, 80, 100))
    assert np.allclose(points, [(45, 10), (75, 50), (45, 90), (5, 50)])


def test_convert_and_split_exact_labels(dota_root, tmp_path):
    """Patch labels are exactly the clipped polygons; mapping, yaml, test split and problems are written."""
    out = tmp_path / "split"
    data_yaml = convert_dota(dota_root, out, size=100, gap=20, workers=0)
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == dict(enumerate(V10)) and data["dota_version"] == "1.0"
    assert (data["train"], data["val"], data["test"]) == ("images/train", "images/val", "images/test")
    assert data["annotations"] == {"train": str(dota_root / "train/labelTxt"), "val": str(dota_root / "val/labelTxt")}
    assert data["patches"] == PATCHES and data["split"]["size"] == 100 and data["split"]["difficult"] == "kept"

    p0, p1 = "P0001__1__0___0", "P0001__1__80___0"
    labels = out / "labels/train"
    assert sorted(f.name for f in (out / "images/train").iterdir()) == [f"{p0}.png", f"{p1}.png"]
    assert read_labels(labels / f"{p0}.txt") == sorted(
        [
            normalised(PLANE, rect(10, 10, 50, 30), 100, 100),
            normalised(SMALL_VEHICLE, rect(70, 40, 100, 60), 100, 100),  # clipped at x = 100
            normalised(HARBOR, rect(85, 70, 95, 90), 100, 100),
            normalised(V10.index("helicopter"), rect(20, 60, 40, 80), 100, 100),
            # large-vehicle: 25% inside, left out
        ]
    )
    assert read_labels(labels / f"{p1}.txt") == sorted(
        [
            normalised(SMALL_VEHICLE, rect(0, 40, 30, 60), 100, 100),  # clipped at x = 80, shifted by -80
            normalised(SHIP, rect(40, 20, 80, 80), 100, 100),  # difficult, kept by default
            normalised(HARBOR, rect(5, 70, 15, 90), 100, 100),
            normalised(LARGE_VEHICLE, rect(10, 5, 50, 15), 100, 100),
        ]
    )
    # patches are lossless crops of the image
    full = cv2.imread(str(dota_root / "train/images/P0001.png"))
    assert np.array_equal(cv2.imread(str(out / f"images/train/{p1}.png")), full[:, 80:180])

    mapping = json.loads((out / PATCHES).read_text())
    assert mapping["splits"]["train"] == {p0: ["P0001", 1.0, 0, 0], p1: ["P0001", 1.0, 80, 0]}
    assert mapping["images"]["val"] == {"P0002": ["P0002.png", 112, 64]}
    # test: split, no labels
    assert sorted(mapping["splits"]["test"]) == ["P0003__1__0___0", "P0003__1__50___0"]
    assert not (out / "labels/test").exists()

    s = data["summary"]["train"]
    assert (s["images"], s["patches"], s["objects"], s["difficult"], s["labels"]) == (1, 2, 6, 1, 8)
    assert (s["clipped"], s["cut"], s["skipped lines"]) == (2, 1, 4)
    report = (out / "problems.txt").read_text()
    for n, kind in ((8, "wrong count"), (9, "non-numeric"), (10, "unknown class"), (11, "degenerate")):
        assert re.search(rf"\[{kind}\] .*P0001\.txt:{n}: ", report)


def test_split_options(dota_root, tmp_path):
    """Difficult objects dropped on request; multi-scale rates resize before cutting; --size 0 does not split."""
    out = tmp_path / "opts"
    convert_dota(dota_root, out, size=100, gap=20, rates=(0.5, 1.0), drop_difficult=True, splits=("train",))
    # at rate 0.5 the image is 90 x 50: one patch, coordinates halved and normalised by 90 x 50
    small = read_labels(out / "labels/train/P0001__0.5__0___0.txt")
    assert normalised(PLANE, [v / 2 for v in rect(10, 10, 50, 30)], 90, 50) in small
    assert SHIP not in {c for c, _ in small} and SHIP not in {
        c for c, _ in read_labels(out / "labels/train/P0001__1__80___0.txt")
    }
    with pytest.raises(ValueError, match="not empty"):
        (tmp_path / "busy").mkdir()
        (tmp_path / "busy/x").write_text("")
        convert_dota(dota_root, tmp_path / "busy")

    # parallel workers write the same patches
    image(dota_root / "train/images/P0004.png", 150, 90, 3)
    (dota_root / "train/labelTxt/P0004.txt").write_text(line(rect(30, 30, 60, 50), "ship") + "\n")
    one, two = tmp_path / "w0", tmp_path / "w2"
    convert_dota(dota_root, one, size=100, gap=20, splits=("train",), workers=0)
    convert_dota(dota_root, two, size=100, gap=20, splits=("train",), workers=2)
    assert json.loads((one / PATCHES).read_text()) == json.loads((two / PATCHES).read_text())
    for f in (one / "labels/train").iterdir():
        assert f.read_text() == (two / "labels/train" / f.name).read_text()
    assert len(list((two / "images/train").iterdir())) == 4

    flat = tmp_path / "flat"
    data = yaml.safe_load(convert_dota(dota_root, flat, size=0, splits=("train", "val")).read_text())
    assert "patches" not in data and (flat / "images/train/P0001.png").is_symlink()
    assert normalised(SMALL_VEHICLE, rect(70, 40, 110, 60), 180, 100) in read_labels(flat / "labels/train/P0001.txt")


def test_cli(dota_root, tmp_path, capsys):
    """The argparse front end: yaml path on stdout, errors as exit status 2."""
    assert cli([str(dota_root), str(tmp_path / "c"), "--size", "100", "--gap", "20", "--splits", "val"]) == 0
    assert capsys.readouterr().out.strip().endswith("data.yaml")
    assert cli([str(tmp_path / "nothing"), str(tmp_path / "d")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli([str(dota_root), str(tmp_path / "e"), "--gap", "2000"]) == 2


def test_own_classes_in_dota_format(tmp_path, capsys):
    """DOTA-format labels of a dataset's own classes (as rotated-box tools export them): refused as DOTA's, before
    anything is written, with the way out; converted with --classes, in that order."""
    root = tmp_path / "mine"
    image(root / "train/images/a.png", 64, 64)
    (root / "train/labelTxt").mkdir(parents=True)
    (root / "train/labelTxt/a.txt").write_text(
        line(rect(8, 8, 40, 24), "Solar-panel") + "\n" + line(rect(4, 30, 60, 60), "roof")
    )
    assert cli([str(root), str(tmp_path / "out"), "--size", "0"]) == 2
    err = capsys.readouterr().err
    assert "no object is of the 15 classes" in err and "['roof', 'solar-panel']" in err and "--classes" in err
    assert not (tmp_path / "out").exists()
    assert cli([str(root), str(tmp_path / "out"), "--size", "0", "--classes", "roof,solar panel"]) == 0
    data = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert data["names"] == {0: "roof", 1: "solar panel"}
    assert [r[0] for r in read_labels(tmp_path / "out" / "labels" / "train" / "a.txt")] == [0, 1]


def test_poly_iou_and_nms_by_hand():
    """Exact polygon IoU; NMS suppresses IoU above the threshold."""
    square = rect(0, 0, 2, 2)
    c, r = 1.0, math.sqrt(2)  # the same square turned 45 degrees about its centre
    diamond = [c, c - r, c + r, c, c, c + r, c - r, c]
    # the intersection is an octagon: 4 minus four corners of (2 - sqrt 2)^2 / 2 = 8 sqrt 2 - 8; the union is
    # 8 - (8 sqrt 2 - 8) = 16 - 8 sqrt 2; IoU = (sqrt 2 - 1) / (2 - sqrt 2) = 1 / sqrt 2
    assert poly_iou(np.array([square]), np.array([diamond]))[0, 0] == pytest.approx(1 / math.sqrt(2))
    boxes = np.array([rect(0, 0, 10, 10), rect(5, 0, 15, 10), rect(20, 20, 30, 30)], float)  # IoU(0, 1) = 1/3
    assert poly_nms(boxes, [0.9, 0.8, 0.7], 0.1).tolist() == [0, 2]
    assert poly_nms(boxes, [0.7, 0.8, 0.9], 0.5).tolist() == [2, 1, 0]


def test_dota_evaluate_by_hand():
    """AP at every IoU threshold on hand-built detections with known IoUs (difficult ignored, IoU must exceed)."""
    gt = {
        "A": GroundTruth(
            [rect(0, 0, 10, 10), rect(20, 0, 30, 10), rect(40, 0, 50, 10), rect(60, 0, 70, 10)],
            [PLANE, PLANE, PLANE, SHIP],
            [False, True, False, False],  # the second plane is difficult
        ),
        "B": GroundTruth(np.zeros((0, 8)), [], []),  # an image without objects
    }
    dets = {
        "A": Detections(
            [
                rect(0, 0, 10, 6),  # .9 IoU 0.6 with plane 1
                rect(20, 0, 30, 10),  # .8 on the difficult plane: ignored
                rect(0, 0, 10, 10),  # .7 IoU 1 with plane 1
                rect(100, 100, 110, 110),  # .6 nothing
                rect(40, 0, 50, 8),  # .5 IoU 0.8 with plane 3
            ],
            [0.9, 0.8, 0.7, 0.6, 0.5],
            [PLANE] * 5,
        ),
        "B": Detections([rect(0, 0, 5, 5)], [0.1], [HARBOR]),  # a false positive of a class without ground truth
        "C": Detections([rect(0, 0, 5, 5)], [0.99], [PLANE]),  # an image outside the ground truth: not evaluated
    }
    r = dota_evaluate(dets, gt, V10)
    # 2 non-difficult planes. At IoU .50/.55: tp, (ignored), fp (plane 1 taken), fp, tp -> recall .5 .5 .5 .5 1,
    # precision 1 1 .5 1/3 .5: points 0 ... .5 -> 1, points .6 ... 1 -> .5: AP = (6 + 2.5) / 11.
    # At .60 ... .75 (0.6 is not above 0.6): fp, -, tp, fp, tp -> recall 0 0 .5 .5 1, precision 0 0 .5 1/3 .5: AP .5.
    # At .80 ... .95: fp, -, tp, fp, fp -> recall 0 0 .5 .5 .5, precision 0 0 .5 1/3 .25: points 0 ... .5 -> 3/11.
    ap50, ap75, high = 8.5 / 11, 0.5, 3 / 11
    plane = r["classes"]["plane"]
    assert plane["AP50"] == pytest.approx(ap50) and plane["AP75"] == pytest.approx(ap75)
    assert plane["AP50-95"] == pytest.approx((2 * ap50 + 4 * 0.5 + 4 * high) / 10)
    assert (plane["gt"], plane["difficult"], plane["dets"]) == (2, 1, 5)
    assert r["classes"]["ship"]["AP50"] == 0.0  # ground truth, no detection
    assert math.isnan(r["classes"]["harbor"]["AP50"]) and r["classes"]["harbor"]["dets"] == 1  # no ground truth
    assert r["mAP50"] == pytest.approx(ap50 / 2) and r["mAP75"] == pytest.approx(0.25)  # plane and ship
    assert (r["images"], r["ignored"]) == (2, 1)
    # the match itself at two thresholds
    tp, fp = match(poly_iou(dets["A"].polys, gt["A"].polys[:3]), dets["A"].scores, gt["A"].difficult[:3], IOU_THRS)
    assert tp[:, 0].tolist() == [True, False, False, False, True] and fp[:, 0].tolist() == [0, 0, 1, 1, 0]
    assert tp[:, IOU_THRS.index(0.8)].tolist() == [False, False, True, False, False]


def test_merge_patches_gives_back_the_boxes(tmp_path):
    """Boxes seen in overlapping patches at two scales merge back to the original boxes, each once."""
    rng = np.random.default_rng(0)
    w, h, size, gap = 300, 200, 100, 40
    boxes = []  # rotated rectangles far apart (IoU 0 between them), small enough to fit whole in some patch
    for cx, cy in ((30, 30), (130, 45), (250, 60), (60, 150), (170, 120), (270, 170)):
        boxes.append((cx, cy, rng.uniform(10, 24), rng.uniform(6, 10), rng.uniform(-0.7, 2.3)))
    polys = ops.xywhr2xyxyxyxy(np.array(boxes)).reshape(-1, 8)
    truth = Detections(polys, np.linspace(0.9, 0.4, len(boxes)), [PLANE, SHIP] * 3)
    patch_dets, patches = {}, {}
    for rate in (1.0, 0.5):
        for x0, y0, x1, y1 in windows(round(w * rate), round(h * rate), size, gap):
            pts = truth.polys.reshape(-1, 4, 2) * rate
            inside = ((pts >= (x0, y0)) & (pts <= (x1, y1))).all((1, 2))
            name = patch_name("P9", rate, x0, y0)
            patches[name] = Patch("P9", rate, x0, y0)
            noise = np.where(rate == 1.0, 0.0, -0.01)  # the coarse scale scores a little lower
            patch_dets[name] = Detections(
                (pts[inside] - (x0, y0)).reshape(-1, 8), truth.scores[inside] + noise, truth.classes[inside]
            )
    assert sum(len(d.scores) for d in patch_dets.values()) > 2 * len(boxes)  # duplicates across patches and scales
    for mapping in (patches, None):  # from the mapping, or parsed from the names
        merged = merge_patches(patch_dets, mapping)
        assert list(merged) == ["P9"]
        m = merged["P9"]
        assert len(m.scores) == len(boxes)
        order = np.argsort(-truth.scores)
        assert np.allclose(m.polys, truth.polys[order]) and np.allclose(m.scores, truth.scores[order])
        assert m.classes.tolist() == truth.classes[order].tolist()
    # without NMS every shifted duplicate stays
    assert len(merge_patches(patch_dets, patches, iou=None)["P9"].scores) == sum(
        len(d.scores) for d in patch_dets.values()
    )

    files = write_task1(merged, V10, tmp_path / "Task1")
    assert sorted(f.name for f in files) == sorted(f"Task1_{c}.txt" for c in V10)
    rows = (tmp_path / "Task1/Task1_plane.txt").read_text().splitlines()
    assert len(rows) == 3 and all(re.fullmatch(r"P9 \d\.\d{6}( -?\d+\.\d{2}){8}", r) for r in rows)
    assert (tmp_path / "Task1/Task1_storage-tank.txt").read_text() == ""
    back = read_task1(tmp_path / "Task1", V10)["P9"]
    k = np.lexsort((back.classes, -back.scores))
    assert np.allclose(back.polys[k], m.polys, atol=0.005) and np.allclose(back.scores[k], m.scores)


class OracleMixin:
    """A validator whose predictions are the labels of each patch (score 1)."""

    def update_metrics(self, preds, batch):
        for si in range(len(preds)):
            boxes, cls = batch_labels(batch, si, obb=True)
            preds[si] = {"bboxes": boxes, "conf": torch.ones(len(cls)), "cls": cls}
        super().update_metrics(preds, batch)


def test_validator_and_val_on_converted_dota(dota_root, tmp_path):
    """Oracle predictions on the val patches merge to mAP 1 against the originals; val() runs and writes Task1."""
    from ultralytics import YOLO

    from ultrald.cli import main
    from ultrald.eval import dota

    class Oracle(OracleMixin, dota.Validator):
        pass

    data_yaml = convert_dota(dota_root, tmp_path / "d", size=IMGSZ, gap=16, splits=("train", "val"))
    model_yaml = tiny_yaml(tmp_path / "m.yaml", 0.0625, "v8/yolov8-obb.yaml", nc=15)
    model = YOLO(str(model_yaml))  # untrained
    args = {"data": str(data_yaml), "imgsz": IMGSZ, "batch": 2, "plots": False, "project": str(tmp_path)}
    args["exist_ok"] = True
    v = Oracle(args={**args, "name": "oracle", "rect": True})
    stats = v(model=model.model)
    r = v.results
    assert r["mode"].startswith("full images") and r["images"] == 1
    assert r["mAP50"] == 1.0 and r["mAP50-95"] == pytest.approx(1.0)  # the small vehicle seen twice merged once
    assert (r["classes"]["plane"]["gt"], r["classes"]["plane"]["difficult"]) == (1, 1)
    assert len(v.detections["P0002"].scores) == 4  # plane, ship, small vehicle, and the difficult plane
    assert stats["fitness"] == stats["metrics/mAP50(dota)"] == 1.0

    # val(), the protocol's entry point: the small vehicle seen in two patches is one Task1 line on the full image
    results = Oracle.val(model, **args, name="val")
    assert results["mAP50"] == 1.0 and results["task1"] == str(tmp_path / "val/Task1")
    assert json.loads((tmp_path / "val/dota_results.json").read_text())["classes"]["ship"]["AP50"] == 1.0
    assert len(list((tmp_path / "val/Task1").glob("Task1_*.txt"))) == 15
    (vehicle,) = (tmp_path / "val/Task1/Task1_small-vehicle.txt").read_text().splitlines()
    corners = np.array(vehicle.split()[2:], float).reshape(4, 2)
    assert vehicle.startswith("P0002 1.000000 ") and np.allclose(
        sorted(corners.tolist()), sorted(np.reshape(rect(50, 10, 60, 20), (4, 2)).tolist()), atol=0.01
    )
    unmerged = Oracle.val(model, **args, name="unmerged", merge_iou=None)  # a Python-only option: no NMS
    assert unmerged["classes"]["small-vehicle"]["dets"] == 2 and unmerged["mAP50"] == 1.0  # the duplicate is an FP last

    # through the CLI: convert, then val metric=dota on the test split (no ground truth: Task1 files only)
    assert main(["convert", "dota", str(dota_root), str(tmp_path / "c"), "--size", str(IMGSZ), "--gap", "16"]) == 0
    cli_args = [f"model={model_yaml}", f"data={tmp_path / 'c/data.yaml'}", "metric=dota", f"imgsz={IMGSZ}"]
    assert main(["val", *cli_args, f"project={tmp_path}", "name=cli", "exist_ok=True", "split=test"]) == 0
    results = json.loads((tmp_path / "cli/dota_results.json").read_text())
    assert (results["mode"], results["images"]) == ("no ground truth", 1)  # two patches of P0003
    assert len(list((tmp_path / "cli/Task1").glob("Task1_*.txt"))) == 15


def test_validator_without_patches_or_annotations(dota_root, tmp_path):
    """Images not split: evaluated per image against the originals; no annotations: per patch against the labels."""
    from ultralytics import YOLO

    from ultrald.eval import dota

    class Oracle(OracleMixin, dota.Validator):
        pass

    model = YOLO(str(tiny_yaml(tmp_path / "m.yaml", 0.0625, "v8/yolov8-obb.yaml", nc=15)))
    args = {"imgsz": IMGSZ, "batch": 2, "plots": False, "project": str(tmp_path), "exist_ok": True, "rect": True}
    flat = convert_dota(dota_root, tmp_path / "flat", size=0, splits=("train", "val"))
    v = Oracle(args={**args, "data": str(flat), "name": "flat"})
    v(model=model.model)
    assert v.results["mode"] == "images (annotations)" and v.results["mAP50"] == 1.0
    assert v.results["classes"]["plane"]["difficult"] == 1

    split = convert_dota(dota_root, tmp_path / "split", size=IMGSZ, gap=16, splits=("train", "val"))
    data = yaml.safe_load(split.read_text())
    # val pointing at the train patches: each image's annotations are found by its folder (train)
    (tmp_path / "train-as-val.yaml").write_text(yaml.safe_dump({**data, "val": "images/train"}))
    v = Oracle(args={**args, "data": str(tmp_path / "train-as-val.yaml"), "name": "train-as-val"})
    v(model=model.model)
    assert v.results["mode"].startswith("full images") and v.results["images"] == 1 and v.results["mAP50"] == 1.0
    assert v.results["classes"]["large-vehicle"]["gt"] == 1  # cut in every 64 px patch, found clipped (IoU 0.85)
    assert v.results["classes"]["large-vehicle"]["AP75"] == 1.0 and v.results["classes"]["large-vehicle"]["AP50-95"] < 1

    del data["annotations"]
    (tmp_path / "labels-only.yaml").write_text(yaml.safe_dump(data))
    v = Oracle(args={**args, "data": str(tmp_path / "labels-only.yaml"), "name": "labels"})
    v(model=model.model)
    assert v.results["mode"].startswith("images (YOLO labels") and v.results["images"] == 2  # the two patches
    assert v.results["mAP50"] == 1.0 and v.results["classes"]["plane"]["difficult"] == 0


@pytest.mark.slow
def test_trainer_metric_dota_is_the_fitness(dota_root, tmp_path, monkeypatch):
    """`metric=dota` on ultrald's trainer: the registry's DOTA validator runs every epoch and its mAP50 is the fitness.

    The validator predicts the labels exactly, so Ultralytics' own mAP is 1; the protocol is handed no ship
    detections, so DOTA mAP50 is 2/3 (plane 1, ship 0, small vehicle 1): a fitness of 2/3 can only come from it.
    """
    from conftest import ANY_TEACHER, FAST
    from ultralytics import YOLO

    from ultrald import LDOBBTrainer
    from ultrald.eval import Benchmark, dota

    class NoShips(OracleMixin, dota.Validator):
        def evaluate(self):
            for r in self.records:
                keep = r["classes"] != SHIP
                r.update(polys=r["polys"][keep], scores=r["scores"][keep], classes=r["classes"][keep])
            return super().evaluate()

    monkeypatch.setattr(dota, "Validator", NoShips)  # what Benchmark.DOTA.validator hands the trainer
    data_yaml = convert_dota(dota_root, tmp_path / "d", size=IMGSZ, gap=16, splits=("train", "val"))
    model = tiny_yaml(tmp_path / "m.yaml", 0.0625, "v8/yolov8-obb.yaml", nc=15)
    overrides = {"model": str(model), "data": str(data_yaml), "epochs": 1, "imgsz": IMGSZ, "batch": 4, "workers": 0}
    overrides.update(plots=False, project=str(tmp_path), name="train", exist_ok=True, metric="dota", **FAST)
    overrides.update(ANY_TEACHER)
    teacher = YOLO(str(model))  # untrained: only the validator's numbers matter here
    teacher.model.names = dict(enumerate(V10))
    trainer = LDOBBTrainer(overrides={**overrides, "teacher": teacher})
    trainer.train()
    assert Benchmark.DOTA.validator is NoShips and type(trainer.validator) is NoShips
    metrics = trainer.metrics
    assert metrics["metrics/mAP50(B)"] > 0.99 and metrics["metrics/mAP50(dota)"] == pytest.approx(2 / 3, abs=1e-5)
    assert trainer.fitness == trainer.best_fitness == pytest.approx(2 / 3, abs=1e-5)
    assert {"metrics/mAP75(dota)", "metrics/mAP50-95(dota)"} <= set(metrics)
    assert "metrics/mAP50(dota)" in (tmp_path / "train/results.csv").read_text()
