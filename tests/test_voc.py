"""PASCAL VOC import and protocol: hand-written XMLs -> exact labels; 11-point and area AP by hand; difficult."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import IMGSZ, tiny_yaml

from ultrald.data.voc import VOC_CLASSES, convert_voc, parse_voc_xml
from ultrald.eval.ap import ap07, ap_area, average_precision, match
from ultrald.eval.coco import coco_evaluate, load_ground_truth
from ultrald.eval.protocol import batch_labels
from ultrald.eval.voc import box_iou, voc_evaluate, voc_ground_truth


def xml(w, h, *objects):
    """A VOC annotation of a w x h image with objects (name, xmin, ymin, xmax, ymax[, difficult])."""
    objs = "".join(
        f"<object><name>{o[0]}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{o[5] if len(o) > 5 else 0}</difficult><bndbox><xmin>{o[1]}</xmin><ymin>{o[2]}</ymin>"
        f"<xmax>{o[3]}</xmax><ymax>{o[4]}</ymax></bndbox></object>"
        for o in objects
    )
    return (
        f"<annotation><filename>x.jpg</filename><size><width>{w}</width><height>{h}</height><depth>3</depth>"
        f"</size>{objs}</annotation>"
    )


# image id: (xml text or None, has image)
VOC2007 = {
    "000001": (xml(100, 80, ("dog", 11, 21, 40, 60), ("person", 51, 11, 70, 50, 1), ("car", 81, 61, 120, 90)), True),
    "000002": (xml(100, 80, ("unicorn", 1, 1, 10, 10)), True),  # not one of the 20 classes
    "000003": ("<annotation><size><width>100</width>", True),  # truncated
    "000004": (xml(100, 80, ("dog", 1, 1, 10, 10)), False),  # the image is missing
    "000005": (xml(100, 80), True),  # no objects
    "000006": (xml(100, 80, ("cat", 11, 11, 50, 40), ("cat", 61, 41, 90, 70, 1), ("chair", 21, 51, 40, 70)), True),
}
SETS = {"trainval": ["000001", "000002", "000003", "000004"], "test": ["000005", "000006"]}


@pytest.fixture
def devkit(tmp_path):
    """A VOCdevkit with VOC2007 (the images above) and VOC2012 (one image)."""
    root = tmp_path / "VOCdevkit"
    images = {"VOC2007": VOC2007, "VOC2012": {"2008_000001": (xml(100, 80, ("bird", 1, 1, 100, 80)), True)}}
    sets = {"VOC2007": SETS, "VOC2012": {"trainval": ["2008_000001"]}}
    for year, items in images.items():
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (root / year / sub).mkdir(parents=True)
        for image_id, (text, has_image) in items.items():
            (root / year / "Annotations" / f"{image_id}.xml").write_text(text)
            if has_image:
                cv2.imwrite(str(root / year / "JPEGImages" / f"{image_id}.jpg"), np.full((80, 100, 3), 127, np.uint8))
        for name, ids in sets[year].items():
            (root / year / "ImageSets/Main" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    return root


def test_convert_labels_yaml_and_summary(devkit, tmp_path, logged):
    data_yaml = convert_voc(devkit, tmp_path / "out", sets=("2007:trainval", "2012:trainval"), test=("2007:test",))
    out = data_yaml.parent
    dog, car, cat, chair, bird = (VOC_CLASSES.index(c) for c in ("dog", "car", "cat", "chair", "bird"))
    # VOC corners are 1-based inclusive: (xmin, ymin, xmax, ymax) covers [xmin - 1, xmax] x [ymin - 1, ymax]
    # dog 11,21,40,60 -> [10, 20, 40, 60] in 100x80 -> centre (25, 40) -> (0.25, 0.5), size 30x40 -> 0.3 x 0.5
    # person is difficult: out of the labels
    # car 81,61,120,90 -> [80, 60, 120, 90], clipped to [80, 60, 100, 80] -> (0.9, 0.875), 0.2 x 0.25
    assert (out / "labels/train/VOC2007/000001.txt").read_text() == (
        f"{dog} 0.250000 0.500000 0.300000 0.500000\n{car} 0.900000 0.875000 0.200000 0.250000\n"
    )
    # bird 1,1,100,80 -> [0, 0, 100, 80]: the whole image
    assert (out / "labels/train/VOC2012/2008_000001.txt").read_text() == f"{bird} 0.500000 0.500000 1.000000 1.000000\n"
    assert (out / "labels/test/VOC2007/000005.txt").read_text() == ""  # background
    # cat 11,11,50,40 -> [10, 10, 50, 40] -> (0.3, 0.3125), 0.4 x 0.375; chair 21,51,40,70 -> [20, 50, 40, 70]
    assert (out / "labels/test/VOC2007/000006.txt").read_text() == (
        f"{cat} 0.300000 0.312500 0.400000 0.375000\n{chair} 0.300000 0.750000 0.200000 0.250000\n"
    )
    assert sorted(p.name for p in (out / "images/train/VOC2007").iterdir()) == ["000001.jpg"]
    assert (out / "images/test/VOC2007/000006.jpg").resolve() == (devkit / "VOC2007/JPEGImages/000006.jpg").resolve()

    data = yaml.safe_load(data_yaml.read_text())
    assert (data["train"], data["val"], data["test"]) == ("images/train", "images/test", "images/test")
    assert list(data["names"].values()) == list(VOC_CLASSES) and data["voc_root"] == str(devkit)
    assert data["sets"] == {"train": ["2007:trainval", "2012:trainval"], "test": ["2007:test"]}
    train, test = data["summary"]["train"], data["summary"]["test"]
    assert (train["images"], train["boxes"], train["difficult"], train["clipped"]) == (2, 3, 1, 1)
    assert (train["skipped unknown class"], train["skipped malformed xml"], train["skipped missing image"]) == (1, 1, 1)
    assert (test["images"], test["background"], test["boxes"], test["difficult"]) == (2, 1, 2, 1)
    assert any("000002.xml': unknown classes ['unicorn']" in m for m in logged)
    assert any("000003.xml' is not well-formed XML" in m for m in logged)
    assert any("JPEGImages/000004.jpg' does not exist" in m for m in logged)
    assert any("skipped: 1 unknown class, 1 malformed xml, 1 missing image" in m for m in logged)


def test_cli_and_bad_input(devkit, tmp_path, capsys):
    from ultrald.cli import entrypoint

    out = str(tmp_path / "o")
    assert entrypoint(["convert", "voc", str(devkit), out, "--sets", "2007:trainval", "--test", ""]) == 0
    data = yaml.safe_load(Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text())
    assert data["val"] == "images/train" and "test" not in data
    assert entrypoint(["convert", "voc", str(devkit), str(tmp_path / "o"), "--sets", "2007-trainval"]) == 2
    assert "'2007-trainval' is not YEAR:SET" in capsys.readouterr().err
    assert entrypoint(["convert", "voc", str(devkit), str(tmp_path / "o"), "--sets", "2007:train"]) == 2
    assert "ImageSets/Main/train.txt' of '2007:train' does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="000003.xml' is not well-formed XML"):
        parse_voc_xml(devkit / "VOC2007/Annotations/000003.xml")


def test_voc_ap_by_hand():
    """Detections in score order TP, FP, TP, FP with 3 ground truth boxes (one never found).

    recall    = 1/3, 1/3, 2/3, 2/3;  precision = 1, 1/2, 2/3, 1/2.
    11-point: t = 0, .1, .2, .3 -> highest precision at recall >= t is 1; t = .4, .5, .6 -> 2/3; t = .7 ... 1 -> 0:
              (4 * 1 + 3 * 2/3) / 11 = 6/11.
    area:     the envelope is 1 up to recall 1/3, 2/3 up to 2/3, then 0: 1/3 * 1 + 1/3 * 2/3 = 5/9.
    The reference's recall points: a recall of exactly 0.3 reaches 3 of them (the 4th is 0.30000000000000004), not 4.
    """
    recall, precision = np.array([1, 1, 2, 2]) / 3, np.array([1, 1 / 2, 2 / 3, 1 / 2])
    assert ap07(recall, precision) == pytest.approx(6 / 11)
    assert ap_area(recall, precision) == pytest.approx(5 / 9)
    assert ap07([0.3], [1.0]) == pytest.approx(3 / 11) and ap07([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(
        (6 + 5 * 2 / 3) / 11
    )
    assert ap_area(np.array([]), np.array([])) == 0.0 == ap07(np.array([]), np.array([]))


def test_matching_by_hand():
    """Image A: a box and a difficult box; image B: a box; image C: none. Detections, by score:

    d1 (A, .9) = A's box              -> TP
    d2 (A, .8) IoU .9 with A's box    -> FP (the box is taken)
    d3 (A, .7) = A's difficult box    -> ignored: neither TP nor FP (it repeats the point before it)
    d4 (B, .6) IoU .4 with B's box    -> FP
    d5 (B, .5) IoU .6 with B's box    -> TP
    d6 (C, .4)                        -> FP
    cumulative tp 1 1 1 1 2 2, fp 0 1 1 2 2 3, npos 2: recall 1/2 1/2 1/2 1/2 1 1, precision 1 1/2 1/2 1/3 1/2 2/5.
    11-point: t <= .5 (6 points) -> 1; t = .6 ... 1 (5 points) -> 1/2: (6 + 2.5) / 11 = 8.5/11.
    area: envelope 1 up to recall 1/2, then 1/2 up to 1: 1/2 * 1 + 1/2 * 1/2 = 3/4.
    """
    box = [0.0, 0, 10, 10]
    gts = {"A": ([box, [20, 20, 30, 30]], [0, 0], [False, True]), "B": ([box], [0], [False]), "C": ([], [], [])}
    dets = {
        "A": ([[0, 0, 10, 9], box, [20, 20, 30, 30]], [0.8, 0.9, 0.7], [0, 0, 0]),
        "B": ([[0, 0, 10, 4], [0, 0, 10, 6]], [0.6, 0.5], [0, 0]),
        "C": ([box], [0.4], [0]),
    }
    gts = {k: (np.array(b, float).reshape(-1, 4), np.array(c), np.array(d, bool)) for k, (b, c, d) in gts.items()}
    dets = {k: (np.array(b, float), np.array(s), np.array(c)) for k, (b, s, c) in dets.items()}
    tp, fp = match(box_iou(dets["A"][0], gts["A"][0]), dets["A"][1], gts["A"][2], np.array([0.5]))
    assert tp[:, 0].tolist() == [False, True, False] and fp[:, 0].tolist() == [True, False, False]  # d2, d1, d3
    r = average_precision(dets, gts, box_iou, [0, 1])
    assert r[0]["AP07"] == pytest.approx([8.5 / 11]) and r[0]["AP"] == pytest.approx([0.75])
    assert (r[0]["gt"], r[0]["difficult"], r[0]["dets"]) == (2, 1, 6)
    assert np.isnan(r[1]["AP07"]).all() and r[1]["dets"] == 0  # a class without ground truth


def test_difficult_is_ignored_by_voc_and_coco_style(devkit):
    """Perfect detections plus one on a difficult box: AP 1 by VOC's matching and by pycocotools (difficult = crowd)."""
    root = "/data/images/test"
    files = [f"{root}/VOC2007/000005.jpg", f"{root}/VOC2007/000006.jpg"]
    gt = voc_ground_truth(files, root, devkit, dict(enumerate(VOC_CLASSES)))
    cat = VOC_CLASSES.index("cat") + 1
    difficult = [a for a in gt["annotations"] if a["iscrowd"]]
    assert [(a["category_id"], a["bbox"]) for a in difficult] == [(cat, [60, 40, 30, 30])]  # 61,41,90,70
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0 - i / 10}
        for i, a in enumerate(gt["annotations"])
    ]
    per_class = voc_evaluate(gt, detections)
    scored = {c: r for c, r in per_class.items() if r["gt"]}
    assert len(scored) == 2 and all(r["AP07"] == r["AP"] == 1.0 for r in scored.values())
    assert np.isnan(per_class[1]["AP"])  # aeroplane: no ground truth, left out of the mean
    assert coco_evaluate(load_ground_truth(gt), detections)[0]["AP"] == pytest.approx(1.0)
    # without the difficult flag the box would be a miss: cat recall 1/2
    plain = {**gt, "annotations": [{**a, "iscrowd": 0} for a in gt["annotations"]]}
    found = [d for d in detections if d["bbox"] != [60, 40, 30, 30]]
    assert voc_evaluate(plain, found)[cat]["AP"] == pytest.approx(0.5)


def test_validator_on_converted_voc(devkit, tmp_path):
    """The VOC Validator reads the original XMLs: exact boxes of the test labels score mAP 1 (difficult ignored)."""
    from ultralytics import YOLO

    from ultrald.eval import voc

    class Oracle(voc.Validator):
        def update_metrics(self, preds, batch):
            for si in range(len(preds)):
                boxes, cls = batch_labels(batch, si)
                preds[si] = {
                    "bboxes": boxes,
                    "conf": torch.ones(len(cls)),
                    "cls": cls,
                    "extra": torch.zeros(len(cls), 0),
                }
            super().update_metrics(preds, batch)

    data_yaml = convert_voc(devkit, tmp_path / "voc", sets=("2007:trainval",), test=("2007:test",))
    model = YOLO(str(tiny_yaml(tmp_path / "m.yaml", width=0.0625)))  # untrained: the oracle replaces its boxes
    args = {"data": str(data_yaml), "imgsz": IMGSZ, "batch": 2, "plots": False, "project": str(tmp_path)}
    args["exist_ok"] = True
    v = Oracle(args={**args, "name": "oracle", "rect": True})
    stats = v(model=model.model)
    assert v.results["mAP50_07"] == v.results["mAP50"] == 1.0 and v.results["AP"] == pytest.approx(1.0)
    assert stats["fitness"] == stats["metrics/mAP50_07(voc)"] == 1.0
    assert {n for n, r in v.results["classes"].items() if r["gt"]} == {"cat", "chair"}
    assert v.results["classes"]["cat"]["difficult"] == 1

    results = voc.val(model, **args, name="val")  # the model's own boxes: finite numbers, a predictions file
    assert 0 <= results["mAP50_07"] <= 1 and 0 <= results["mAP50"] <= 1 and set(results["classes"]) == set(VOC_CLASSES)
    assert isinstance(json.loads((tmp_path / "val/predictions-voc.json").read_text()), list)
