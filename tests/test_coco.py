"""COCO import and protocol: hand-written instances json -> exact labels, pycocotools numbers by hand, tiny e2e."""

import json
import math
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import ANY_TEACHER, FAST, IMGSZ, tiny_yaml
from helpers import read_results

from ultrald.data.coco import convert_coco
from ultrald.eval.coco import COCO_KEYS, coco_detections, coco_evaluate, load_ground_truth
from ultrald.eval.protocol import batch_labels


def write_image(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 127, np.uint8))


INSTANCES = {
    "images": [
        {"id": 10, "file_name": "a/0001.jpg", "width": 100, "height": 80},
        {"id": 20, "file_name": "b/0001.jpg", "width": 100, "height": 80},  # same name, other sub-folder
        {"id": 30, "file_name": "c.jpg", "width": 50, "height": 50},  # no annotations: a background image
    ],
    "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}, {"id": 12, "name": "bird"}],  # ids 3, 7, 12
    "annotations": [
        {"id": 1, "image_id": 10, "category_id": 3, "bbox": [10, 20, 30, 40], "iscrowd": 0, "area": 1200},
        {"id": 2, "image_id": 10, "category_id": 12, "bbox": [80, 60, 40, 30], "area": 1200},  # no iscrowd; outside
        {"id": 3, "image_id": 10, "category_id": 7, "bbox": [0, 0, 50, 50], "iscrowd": 1, "area": 2500},  # crowd
        {"id": 4, "image_id": 20, "category_id": 7, "bbox": [5, 5, 0, 10], "iscrowd": 0, "area": 0},  # degenerate
        {"id": 5, "image_id": 20, "category_id": 7, "bbox": [50, 40, 20, 20], "iscrowd": 0, "area": 400},
        {"id": 6, "image_id": 20, "category_id": 3, "bbox": [-10, -10, 5, 5], "iscrowd": 0, "area": 25},  # outside
    ],
}


@pytest.fixture
def coco_set(tmp_path):
    """The hand-written instances json with its images on disk: (json, images dir)."""
    images = tmp_path / "src"
    for img in INSTANCES["images"]:
        write_image(images / img["file_name"], img["width"], img["height"])
    file = tmp_path / "instances.json"
    file.write_text(json.dumps(INSTANCES))
    return file, images


def test_convert_round_trip_labels_and_yaml(coco_set, tmp_path, logged):
    file, images = coco_set
    data_yaml = convert_coco(file, images, tmp_path / "out")
    out = data_yaml.parent
    # classes in the order of their ids: 3 cat -> 0, 7 dog -> 1, 12 bird -> 2
    # box 1: [10, 20, 30, 40] in 100x80 -> centre (25, 40) / (100, 80) = (0.25, 0.5), size 0.3 x 0.5
    # box 2: [80, 60, 40, 30] reaches (120, 90), clipped to [80, 60, 100, 80] -> centre (0.9, 0.875), size 0.2 x 0.25
    # box 3 is crowd (left out); box 4 has width 0 and box 6 lies left/above the image (both dropped)
    # box 5: [50, 40, 20, 20] -> centre (60, 50) -> (0.6, 0.625), size 0.2 x 0.25
    assert (out / "labels/val/a/0001.txt").read_text() == (
        "0 0.250000 0.500000 0.300000 0.500000\n2 0.900000 0.875000 0.200000 0.250000\n"
    )
    assert (out / "labels/val/b/0001.txt").read_text() == "1 0.600000 0.625000 0.200000 0.250000\n"
    assert (out / "labels/val/c.txt").read_text() == ""  # kept as background
    for name in ("a/0001.jpg", "b/0001.jpg", "c.jpg"):
        link = out / "images/val" / name
        assert link.is_symlink() and link.resolve() == (images / name).resolve()
    data = yaml.safe_load(data_yaml.read_text())
    assert data["path"] == str(out) and data["train"] == data["val"] == "images/val"
    assert data["names"] == {0: "cat", 1: "dog", 2: "bird"} and data["category_ids"] == {0: 3, 1: 7, 2: 12}
    assert data["annotations"] == {"val": str(file.resolve())}
    assert json.loads((out / data["image_ids"]).read_text()) == {
        "val": {"a/0001.jpg": 10, "b/0001.jpg": 20, "c.jpg": 30}
    }
    summary = data["summary"]["val"]
    assert (summary["images"], summary["background"], summary["boxes"]) == (3, 1, 3)
    assert (summary["crowd"], summary["clipped"], summary["dropped"]) == (1, 1, 2)
    assert any("3 images (1 background), 3 boxes; 1 crowd" in m for m in logged)

    # Ultralytics reads the converted set as it is
    from ultralytics.data.utils import check_det_dataset

    assert check_det_dataset(str(data_yaml))["nc"] == 3


def test_copy_and_train_val_splits(coco_set, tmp_path):
    file, images = coco_set
    val = {**INSTANCES, "images": INSTANCES["images"][2:], "annotations": []}
    (tmp_path / "val.json").write_text(json.dumps(val))
    data_yaml = convert_coco(
        file, images, tmp_path / "out", copy=True, val_json=tmp_path / "val.json", val_images=images
    )
    data = yaml.safe_load(data_yaml.read_text())
    assert (data["train"], data["val"]) == ("images/train", "images/val")
    assert set(data["annotations"]) == {"train", "val"}
    copied = data_yaml.parent / "images/train/a/0001.jpg"
    assert copied.is_file() and not copied.is_symlink()
    assert json.loads((data_yaml.parent / "image_ids.json").read_text())["val"] == {"c.jpg": 30}


def test_mapping_back_and_perfect_predictions_give_ap_1(coco_set, tmp_path):
    file, images = coco_set
    data_yaml = convert_coco(file, images, tmp_path / "out")
    out, data = data_yaml.parent, yaml.safe_load(data_yaml.read_text())
    # predictions in converted-image pixels from the labels map back to original image and category ids
    ids = json.loads((out / "image_ids.json").read_text())["val"]
    image_ids = {str(out / "images/val" / k): v for k, v in ids.items()}
    cls, xc, yc, w, h = np.loadtxt(out / "labels/val/b/0001.txt")
    box = np.array([[(xc - w / 2) * 100, (yc - h / 2) * 80, (xc + w / 2) * 100, (yc + h / 2) * 80]])
    records = [{"im_file": str(out / "images/val/b/0001.jpg"), "boxes": box, "scores": [0.9], "classes": [cls]}]
    (det,) = coco_detections(records, image_ids, data["category_ids"])
    assert det == {"image_id": 20, "category_id": 7, "bbox": [50.0, 40.0, 20.0, 20.0], "score": 0.9}

    # perfect predictions of every evaluable box, plus one on the crowd region, which pycocotools ignores
    gt = load_ground_truth(file)  # fills the missing iscrowd of box 2
    assert len(gt.getAnnIds()) == 5  # the zero-width box 4 is left out: nothing can match it
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in INSTANCES["annotations"]
        if not a.get("iscrowd") and a["bbox"][2] > 0
    ]
    crowd = {"image_id": 10, "category_id": 7, "bbox": [0, 0, 50, 50], "score": 0.5}
    numbers, text = coco_evaluate(gt, [*perfect, crowd])
    assert numbers["AP"] == numbers["AP50"] == numbers["AP75"] == 1.0
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000" in text
    assert coco_evaluate(gt, [])[0]["AP"] == 0.0  # no predictions at all


def test_known_iou_gives_hand_computed_numbers():
    """One 40x40 box and one prediction inside it of 40x25: IoU = 1000 / 1600 = 0.625.

    pycocotools' thresholds are .50, .55, ..., .95; 0.625 passes .50, .55 and .60, so at those 3 of 10 the only
    prediction is a true positive (precision 1 at every recall) and at the 7 others there is none (AP 0):
    AP = 3 / 10 = 0.3, AP50 = 1, AP75 = 0. Recall is likewise 1 at 3 thresholds: AR1 = AR10 = AR100 = 0.3.
    The ground truth area 1600 is 'medium' (32^2 < 1600 < 96^2): APm = ARm = 0.3; no small or large ground truth: -1.
    """
    gt = load_ground_truth(
        {
            "images": [{"id": 1, "width": 100, "height": 100}],
            "categories": [{"id": 5, "name": "thing"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 40, 40]}
            ],  # no iscrowd, no area
        }
    )
    numbers, _ = coco_evaluate(gt, [{"image_id": 1, "category_id": 5, "bbox": [10, 10, 40, 25], "score": 0.8}])
    expected = [0.3, 1.0, 0.0, -1.0, 0.3, -1.0, 0.3, 0.3, 0.3, -1.0, 0.3, -1.0]
    assert [numbers[k] for k in COCO_KEYS] == pytest.approx(expected, abs=1e-9)


def test_bad_inputs_name_the_file(tmp_path, coco_set, logged, capsys):
    from ultrald.cli import entrypoint

    file, images = coco_set
    not_coco = tmp_path / "labels.json"
    not_coco.write_text(json.dumps({"images": [], "info": {}}))
    with pytest.raises(ValueError, match=r"labels.json' is not a COCO instances json: \['annotations', 'categories'\]"):
        convert_coco(not_coco, images, tmp_path / "out")
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(ValueError, match="broken.json' is not valid JSON"):
        convert_coco(broken, images, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="nowhere.json' does not exist"):
        convert_coco(tmp_path / "nowhere.json", images, tmp_path / "out")

    # through the CLI: a usage error, no traceback
    assert entrypoint(["convert", "coco", str(not_coco), str(images), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "yolo-ld convert coco: error:" in err and "labels.json" in err and "Traceback" not in err
    assert entrypoint(["convert", "coco", str(file), str(images), str(tmp_path / "o"), "--val-json", str(file)]) == 2

    # a missing image file, an annotation of an unknown image and one of an unknown category: skipped and counted
    bad = json.loads(json.dumps(INSTANCES))
    bad["images"].append({"id": 40, "file_name": "gone.jpg", "width": 10, "height": 10})
    bad["annotations"] += [
        {"id": 7, "image_id": 99, "category_id": 3, "bbox": [1, 1, 2, 2]},
        {"id": 8, "image_id": 10, "category_id": 4, "bbox": [1, 1, 2, 2]},
        {"id": 9, "image_id": 40, "category_id": 3, "bbox": [1, 1, 2, 2]},
        {"id": 11, "image_id": [10], "category_id": 3, "bbox": [1, 1, 2, 2]},  # lists: malformed, not even hashable
        {"id": 12, "image_id": 10, "category_id": [3], "bbox": [1, 1, 2, 2]},
    ]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert entrypoint(["convert", "coco", str(tmp_path / "bad.json"), str(images), str(tmp_path / "out")]) == 0
    data_yaml = Path(capsys.readouterr().out.strip().splitlines()[-1])
    summary = yaml.safe_load(data_yaml.read_text())["summary"]["val"]
    assert summary["images"] == 3 and summary["boxes of skipped images"] == 1  # the box of the missing image
    assert (
        summary["skipped missing image"],
        summary["skipped unknown image"],
        summary["skipped unknown category"],
    ) == (1, 2, 2)
    assert any("bad.json: image 40 file" in m and "gone.jpg' does not exist" in m for m in logged)
    assert any("bad.json: annotation 7 points to unknown image_id 99" in m for m in logged)
    assert any("bad.json: annotation 8 has unknown category_id 4" in m for m in logged)
    assert any("skipped: 2 unknown image, 2 unknown category, 1 missing image" in m for m in logged)

    # nothing convertible at all
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="none of its 3 images could be converted"):
        convert_coco(file, tmp_path / "empty", tmp_path / "out2")


def one_box_set(root: Path, categories: list[dict], boxes: dict[str, int], name=lambda f: f) -> Path:
    """An instances json of images 100x80 with one 20x20 box each, of category `boxes[file_name]`; the images on disk
    under `root/src`, by their forward-slash name. Ids start at 0, as Roboflow's do."""
    images = [{"id": i, "file_name": name(f), "width": 100, "height": 80} for i, f in enumerate(boxes)]
    annotations = [
        {"id": i, "image_id": i, "category_id": c, "bbox": [10, 20, 20, 20], "area": 400, "iscrowd": 0}
        for i, c in enumerate(boxes.values())
    ]
    for f in boxes:
        write_image(root / "src" / f, 100, 80)
    file = root / "instances.json"
    file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return file


def test_roboflow_grouping_category_is_no_class(tmp_path, logged):
    """Roboflow's category 0 is the workspace, the supercategory of the classes 1..N, and no box uses it: no class."""
    categories = [
        {"id": 0, "name": "animals", "supercategory": "none"},
        {"id": 1, "name": "cat", "supercategory": "animals"},
        {"id": 2, "name": "dog", "supercategory": "animals"},
    ]
    file = one_box_set(tmp_path, categories, {"cat.jpg": 1, "dog.jpg": 2})
    data_yaml = convert_coco(file, tmp_path / "src", tmp_path / "out")
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == {0: "cat", 1: "dog"} and data["category_ids"] == {0: 1, 1: 2}
    assert (tmp_path / "out/labels/val/cat.txt").read_text() == "0 0.200000 0.375000 0.200000 0.250000\n"
    assert (tmp_path / "out/labels/val/dog.txt").read_text().startswith("1 ")
    assert [m for m in logged if "['animals'] left out of the classes" in m]


def test_unused_categories_that_group_nothing_stay_classes(tmp_path):
    """An unused category stays unless another names it as supercategory; a used supercategory stays too (COCO's
    'person' is its own supercategory)."""
    categories = [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 2, "name": "animal", "supercategory": "none"},  # used, and the supercategory of 'bird'
        {"id": 3, "name": "bird", "supercategory": "animal"},  # unused, but no category's supercategory
        {"id": 4, "name": "fish"},  # unused, no supercategory at all
    ]
    file = one_box_set(tmp_path, categories, {"a.jpg": 1, "b.jpg": 2})
    data = yaml.safe_load(convert_coco(file, tmp_path / "src", tmp_path / "out").read_text())
    assert data["names"] == {0: "person", 1: "animal", 2: "bird", 3: "fish"}
    assert data["category_ids"] == {0: 1, 1: 2, 2: 3, 3: 4}


def test_windows_backslash_file_names_find_their_images(tmp_path):
    """Label Studio on Windows writes 'images\\x.jpg'; an entry without width/height reads the size from the file."""
    from ultralytics.data.utils import img2label_paths

    boxes = {"images/a.jpg": 1, "images/b.jpg": 1}
    file = one_box_set(tmp_path, [{"id": 1, "name": "car"}], boxes, name=lambda f: f.replace("/", "\\"))
    data = json.loads(file.read_text())
    del data["images"][1]["width"], data["images"][1]["height"]
    file.write_text(json.dumps(data))
    out = convert_coco(file, tmp_path / "src", tmp_path / "out").parent
    assert json.loads((out / "image_ids.json").read_text()) == {"val": {"images/a.jpg": 0, "images/b.jpg": 1}}
    label = img2label_paths([str(out / "images/val/images/b.jpg")])[0]  # Ultralytics' place for a folder 'images'
    assert Path(label).read_text() == "0 0.200000 0.375000 0.200000 0.250000\n"


def test_val_fraction_splits_one_json_through_the_cli(tmp_path, capsys):
    """CVAT and Label Studio export one json: --val 0.25 of 8 images -> 6 train, 2 val, by path and seed."""
    from ultrald.cli import entrypoint

    file = one_box_set(
        tmp_path, [{"id": 1, "name": "car"}, {"id": 2, "name": "tree"}], {f"{i}.jpg": 1 for i in range(8)}
    )
    args = ["convert", "coco", str(file), str(tmp_path / "src")]
    splits = []
    for out, seed in ("out", "3"), ("again", "3"), ("out", "4"):  # the same split twice; another seed, same folder
        assert entrypoint([*args, str(tmp_path / out), "--val", "0.25", "--seed", seed]) == 0
        data = yaml.safe_load((tmp_path / out / "data.yaml").read_text())
        ids = json.loads((tmp_path / out / "image_ids.json").read_text())
        assert (len(ids["train"]), len(ids["val"])) == (6, 2) and not set(ids["train"]) & set(ids["val"])
        assert sorted({**ids["train"], **ids["val"]}.values()) == list(range(8))
        assert (data["train"], data["val"]) == ("images/train", "images/val") and data["names"] == {0: "car", 1: "tree"}
        assert data["annotations"] == {"train": str(file.resolve()), "val": str(file.resolve())}
        assert (data["summary"]["train"]["images"], data["summary"]["val"]["boxes"]) == (6, 2)
        for split, names in ids.items():  # only this conversion's images: no leftovers of the earlier seed
            assert sorted(p.name for p in (tmp_path / out / "images" / split).iterdir()) == sorted(names)
            assert all((tmp_path / out / "labels" / split / n).with_suffix(".txt").is_file() for n in names)
        splits.append(ids)
    assert splits[0] == splits[1] != splits[2]
    capsys.readouterr()

    # converting from a folder the conversion rewrites: refused before anything is deleted
    train = tmp_path / "out/images/train"
    assert entrypoint(["convert", "coco", str(file), str(train), str(tmp_path / "out"), "--val", "0.25"]) == 2
    assert "overlaps" in capsys.readouterr().err and len(list(train.iterdir())) == 6

    # the val split given twice: a usage error of one line
    assert (
        entrypoint([*args, str(tmp_path / "x"), "--val", "0.2", "--val-json", str(file), "--val-images", args[-1]]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--val" in err and "--val-json" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


# --- tiny end to end: synthetic images as a COCO set -> convert -> teacher -> LD student -> COCO protocol -------------

CATEGORY_IDS = {0: 5, 1: 9, 2: 42}  # non-contiguous


def shapes_as_coco(root: Path, split: str) -> Path:
    """Write the shapes split's YOLO labels as a COCO instances json (file names 'split/xxx.png' under images/)."""
    from ultrald.data.shapes import CLASSES

    images, annotations = [], []
    for i, label in enumerate(sorted((root / "labels" / split).glob("*.txt"))):
        images.append({"id": 1000 + i, "file_name": f"{split}/{label.stem}.png", "width": IMGSZ, "height": IMGSZ})
        for c, xc, yc, w, h in np.loadtxt(label, ndmin=2):
            box = [(xc - w / 2) * IMGSZ, (yc - h / 2) * IMGSZ, w * IMGSZ, h * IMGSZ]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 1000 + i,
                    "category_id": CATEGORY_IDS[int(c)],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": v, "name": CLASSES[k]} for k, v in CATEGORY_IDS.items()]
    file = root / f"instances_{split}.json"
    file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return file


def oracle(cls: type) -> type:
    """The validator class `cls`, predicting each image's labels exactly (score 1) instead of the model's boxes."""

    class Oracle(cls):
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

    return Oracle


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A synthetic COCO set (shapes as a json) converted by the CLI: (root, data.yaml, the shapes data.yaml)."""
    from ultrald.cli import entrypoint
    from ultrald.data.shapes import ShapesConfig, generate

    root = tmp_path_factory.mktemp("tiny-coco")
    shapes = generate(root / "shapes", ShapesConfig(n_train=16, n_val=8, imgsz=IMGSZ, classes=3, size=(0.2, 0.5)))
    train_json, val_json = shapes_as_coco(shapes.parent, "train"), shapes_as_coco(shapes.parent, "val")
    images = shapes.parent / "images"
    assert (
        entrypoint(
            [
                "convert",
                "coco",
                str(train_json),
                str(images),
                str(root / "coco"),
                "--val-json",
                str(val_json),
                "--val-images",
                str(images),
            ]
        )
        == 0
    )
    return root, root / "coco/data.yaml", shapes


@pytest.fixture(scope="module")
def tiny_teacher(tiny):
    """A teacher trained on the converted set by plain Ultralytics (slow tests only)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    root, data_yaml, _ = tiny
    teacher = DetectionTrainer(overrides=train_args(root, "teacher", data_yaml, width=0.125, epochs=2))
    teacher.train()
    return teacher.best


def train_args(root, name, data, width=0.0625, **kw):
    model = str(tiny_yaml(root / f"{name}.yaml", width=width))
    return dict(
        model=model,
        data=str(data),
        imgsz=IMGSZ,
        batch=8,
        workers=0,
        plots=False,
        project=str(root / "runs"),
        name=name,
        exist_ok=True,
        seed=0,
        **FAST,
        **kw,
    )


def test_converted_layout_keeps_sub_folders_and_ids(tiny):
    root, data_yaml, _ = tiny
    data = yaml.safe_load(data_yaml.read_text())
    assert data["category_ids"] == CATEGORY_IDS and len(data["names"]) == 3
    ids = json.loads((root / "coco/image_ids.json").read_text())
    assert ids["val"]["val/000000.png"] == 1000 and len(ids["train"]) == 16
    assert (root / "coco/labels/val/val/000000.txt").is_file()


def test_validator_maps_perfect_predictions_to_ap_1(tiny):
    """Exact boxes, mapped back to original image ids, category ids and pixels, score AP 1 on the original json."""
    from ultralytics import YOLO

    from ultrald.eval.coco import Validator

    root, data_yaml, shapes = tiny
    model = YOLO(str(tiny_yaml(root / "untrained.yaml", nc=3)))  # untrained: the oracle replaces its boxes
    for name, data in ("json", data_yaml), ("labels", shapes):  # converted: the original json; plain: the labels
        args = {"data": str(data), "imgsz": IMGSZ, "batch": 8, "plots": False, "project": str(root / "runs")}
        v = oracle(Validator).run(model, **args, name=name, exist_ok=True)
        assert v.results["AP"] == v.results["AP50"] == 1.0, name
        assert v.args.max_det == 100  # COCO's detections per image
    assert {d["image_id"] for d in v.detections} == set(range(8))  # plain: image ids are positions


def test_validator_evaluates_the_val_fraction_of_one_json(tiny):
    """--val of one json: both splits name the one json; pycocotools scores the val images only (AP 1, not less for
    the train images that get no predictions)."""
    from ultralytics import YOLO

    from ultrald.cli import entrypoint
    from ultrald.eval.coco import Validator

    root, _, shapes = tiny
    out = root / "coco-val-fraction"
    argv = ["convert", "coco", str(shapes.parent / "instances_train.json"), str(shapes.parent / "images"), str(out)]
    assert entrypoint([*argv, "--val", "0.25"]) == 0
    val_ids = set(json.loads((out / "image_ids.json").read_text())["val"].values())
    assert len(val_ids) == 4 and val_ids < set(range(1000, 1016))
    model = YOLO(str(tiny_yaml(root / "untrained-fraction.yaml", nc=3)))
    args = {"data": str(out / "data.yaml"), "imgsz": IMGSZ, "batch": 8, "plots": False, "project": str(root / "runs")}
    v = oracle(Validator).run(model, **args, name="fraction", exist_ok=True)
    assert v.results["AP"] == 1.0 and {d["image_id"] for d in v.detections} == val_ids


@pytest.mark.slow
def test_trainer_keeps_best_pt_by_coco_ap(tiny, tiny_teacher, monkeypatch):
    """`metric=coco` on ultrald's trainer: the registry's COCO validator runs every epoch and best.pt is the epoch of
    the best COCO AP, not of Ultralytics' own mAP.

    Both epochs predict the labels exactly, so Ultralytics' mAP50-95 ties (and on a tie it keeps the first epoch);
    the first validation hands pycocotools boxes moved 3 px, so only COCO AP prefers the second epoch.
    """
    from ultrald import LDTrainer
    from ultrald.eval import Benchmark, coco

    class FirstMoved(oracle(coco.Validator)):
        calls = 0

        def evaluate(self):
            FirstMoved.calls += 1
            if FirstMoved.calls == 1:
                for r in self.records:
                    r["boxes"] = r["boxes"] + np.array([3, 0, 3, 0])
            return super().evaluate()

    monkeypatch.setattr(coco, "Validator", FirstMoved)  # what Benchmark.COCO.validator hands the trainer
    root, data_yaml, _ = tiny
    overrides = train_args(root, "fitness", data_yaml, epochs=2, teacher=str(tiny_teacher), metric="coco")
    overrides.update(ANY_TEACHER)
    trainer = LDTrainer(overrides=overrides)
    trainer.train()
    assert Benchmark.COCO.validator is FirstMoved and type(trainer.validator) is FirstMoved
    rows = read_results(trainer.save_dir)
    assert all(f"metrics/{k}(coco)" in rows[0] for k in COCO_KEYS) and rows[1]["train/ld_loss"] > 0
    assert rows[0]["metrics/mAP50-95(B)"] == rows[1]["metrics/mAP50-95(B)"] > 0.9
    assert rows[0]["metrics/AP(coco)"] < 1.0 == rows[1]["metrics/AP(coco)"]
    assert trainer.best_fitness == 1.0
    assert torch.load(trainer.best, weights_only=False)["train_metrics"]["metrics/AP(coco)"] == 1.0


@pytest.mark.slow
def test_e2e_distil_then_coco_protocol(tiny, tiny_teacher):
    from ultralytics import YOLO

    from ultrald import LDTrainer
    from ultrald.eval import coco

    root, data_yaml, _ = tiny
    teacher = tiny_teacher
    student = LDTrainer(overrides=train_args(root, "student", data_yaml, teacher=str(teacher), epochs=1, **ANY_TEACHER))
    student.train()
    best = student.best

    results = coco.val(
        YOLO(str(best)),
        data=str(data_yaml),
        imgsz=IMGSZ,
        batch=8,
        plots=False,
        project=str(root / "runs"),
        name="val",
        exist_ok=True,
    )
    assert list(results) == list(COCO_KEYS) and all(math.isfinite(v) for v in results.values())
    predictions = json.loads((root / "runs/val/predictions-coco.json").read_text())
    assert predictions and {p["category_id"] for p in predictions} <= set(CATEGORY_IDS.values())
    assert {p["image_id"] for p in predictions} <= set(range(1000, 1008))

    cmd = [
        "yolo-ld",
        "val",
        f"model={best}",
        f"data={data_yaml}",
        "metric=coco",
        f"imgsz={IMGSZ}",
        "batch=8",
        "plots=False",
        f"project={root / 'runs'}",
        "name=cli",
        "exist_ok=True",
    ]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env=os.environ, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.lstrip().startswith("Average ")]
    assert len(lines) == 12, (out.stdout + out.stderr)[-3000:]
    assert all(math.isfinite(float(line.rsplit("=", 1)[1])) for line in lines)
    assert (root / "runs/cli/predictions-coco.json").is_file()
