"""Datasets people have: a folder of VOC XMLs with own classes, and a YOLO-format folder without a yaml.

Every folder is written here with cv2; the label lines are computed by hand (VOC corners are 1-based inclusive:
(xmin, ymin, xmax, ymax) covers [xmin - 1, xmax] x [ymin - 1, ymax] in continuous pixels)."""

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from ultralytics.data.utils import check_det_dataset

from ultrald.cli import entrypoint
from ultrald.data.common import val_split
from ultrald.data.voc import convert_voc_folder
from ultrald.data.yolo import convert_yolo


def image(path: Path, w: int = 100, h: int = 80) -> Path:
    """Write a grey w x h image (the format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), 127, np.uint8))
    return path


def xml(path: Path, *objects, size=(100, 80)) -> Path:
    """Write a labelImg-style VOC XML with objects (name, xmin, ymin, xmax, ymax[, difficult]); size None: no <size>."""
    objs = "".join(
        f"<object><name>{o[0]}</name><difficult>{o[5] if len(o) > 5 else 0}</difficult><bndbox><xmin>{o[1]}</xmin>"
        f"<ymin>{o[2]}</ymin><xmax>{o[3]}</xmax><ymax>{o[4]}</ymax></bndbox></object>"
        for o in objects
    )
    sized = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><folder>x</folder><filename>{path.stem}.png</filename>{sized}{objs}</annotation>")
    return path


@pytest.fixture
def labelimg(tmp_path):
    """XMLs beside PNG images, classes Tree and Car, and one of each kind of bad input."""
    src = tmp_path / "labelimg"
    image(src / "a.png")  # Tree, and a difficult Car reaching out of the image
    xml(src / "a.xml", ("Tree", 11, 21, 40, 60), ("Car", 81, 61, 120, 90, 1))
    image(src / "b.png", 64, 48)  # no <size>: 64 x 48 from the image; a zero-area box (xmin - 1 == xmax)
    xml(src / "b.xml", ("Car", 1, 1, 32, 24), ("Car", 21, 11, 20, 30), size=None)
    image(src / "c.png")  # no XML: background
    xml(src / "d.xml", ("Tree", 1, 1, 10, 10))  # no image
    image(src / "e.jpg")  # e.png shares the stem: skipped
    image(src / "e.png")
    xml(src / "e.xml", ("Tree", 51, 41, 100, 80))
    image(src / "f.png")  # malformed XML
    (src / "f.xml").write_text("<annotation><size><width>100</width>")
    (src / "g.png").write_bytes(b"not an image")  # unreadable image
    xml(src / "g.xml", ("Tree", 1, 1, 10, 10))
    image(src / "sub" / "a.png")  # the stem of a.png and a.xml again, in a sub-folder: its own image and XML
    xml(src / "sub" / "a.xml", ("Car", 1, 1, 100, 80))
    image(src / "day" / "a.png")  # no XML beside it: background, not sub/a.xml's or a.xml's boxes
    return src


def labels_of(out: Path) -> dict[str, str]:
    """Image path under images/<split>, without extension -> its label file's text, over all splits."""
    return {f.relative_to(d).with_suffix("").as_posix(): f.read_text() for d in (out / "labels").glob("*/") for f in
            d.rglob("*.txt")}  # fmt: skip


def test_voc_folder_labels_counts_and_split(labelimg, tmp_path, logged):
    data_yaml = convert_voc_folder(labelimg, tmp_path / "out", val=0.25)
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == {0: "Car", 1: "Tree"}  # sorted
    assert labels_of(data_yaml.parent) == {
        # Tree [10, 20, 40, 60] in 100 x 80; the difficult Car [80, 60, 120, 90] kept, clipped to [80, 60, 100, 80]
        "a": "1 0.250000 0.500000 0.300000 0.500000\n0 0.900000 0.875000 0.200000 0.250000\n",
        # Car [0, 0, 32, 24] in the image's 64 x 48 (not 100 x 80); [20, 10, 20, 30] has no width: dropped
        "b": "0 0.250000 0.250000 0.500000 0.500000\n",
        "c": "",
        "e": "1 0.750000 0.750000 0.500000 0.500000\n",  # Tree [50, 40, 100, 80]
        "sub/a": "0 0.500000 0.500000 1.000000 1.000000\n",  # Car [0, 0, 100, 80], its own XML
        "day/a": "",
    }
    images = {f.relative_to(d).as_posix(): f for d in (data_yaml.parent / "images").glob("*/") for f in d.rglob("*.*")}
    assert sorted(images) == ["a.png", "b.png", "c.png", "day/a.png", "e.jpg", "sub/a.png"]  # e.jpg: first by path
    assert images["a.png"].resolve() == (labelimg / "a.png").resolve()
    assert images["e.jpg"].resolve() == (labelimg / "e.jpg").resolve()
    assert data["summary"] == {
        "images": 6,
        "background": 2,
        "boxes": 5,
        "clipped": 1,
        "dropped": 1,
        "difficult": 1,
        "size read from image": 1,
        "size differs from image": 0,
        "no xml": 2,
        "train images": 4,
        "val images": 2,  # 0.25 of 6
        "skipped duplicate": 1,  # e.png
        "skipped missing image": 1,  # d.xml
        "skipped malformed xml": 1,  # f.xml
        "skipped unreadable image": 1,  # g.png
    }
    assert (data["train"], data["val"]) == ("images/train", "images/val")
    assert "test" not in data and "voc_root" not in data  # metric=voc reads these labels, not the XMLs
    assert len(list((data_yaml.parent / "images/val").rglob("*.png"))) == 2
    assert check_det_dataset(str(data_yaml))["nc"] == 2
    assert any("e.png' has the name of '" in m for m in logged)
    assert any("f.xml' is not well-formed XML" in m for m in logged)
    assert any("skipped: 1 duplicate, 1 missing image, 1 malformed xml, 1 unreadable image" in m for m in logged)


def test_names_order_and_unknown_classes(labelimg, tmp_path, logged):
    """--names orders the classes; objects of other classes are skipped and counted, not fatal."""
    names = tmp_path / "names.txt"
    names.write_text("Tree\nCar\n")
    data = yaml.safe_load(convert_voc_folder(labelimg, tmp_path / "o1", names=names).read_text())
    assert data["names"] == {0: "Tree", 1: "Car"}
    tree, car = "0 0.250000 0.500000 0.300000 0.500000\n", "1 0.900000 0.875000 0.200000 0.250000\n"
    assert labels_of(tmp_path / "o1")["a"] == tree + car

    data = yaml.safe_load(convert_voc_folder(labelimg, tmp_path / "o2", names=["Tree"]).read_text())
    assert data["names"] == {0: "Tree"}
    assert labels_of(tmp_path / "o2") == {
        "a": "0 0.250000 0.500000 0.300000 0.500000\n",
        "b": "",  # both its Cars skipped: a background image now
        "c": "",
        "e": "0 0.750000 0.750000 0.500000 0.500000\n",
        "sub/a": "",
        "day/a": "",
    }
    s = data["summary"]
    assert (s["skipped unknown class"], s["boxes"], s["background"], s["difficult"], s["dropped"]) == (4, 2, 4, 0, 0)
    assert any("a.xml': object 'Car' is not one of the names, skipped" in m for m in logged)
    with pytest.raises(ValueError, match="'Car'.* more than once"):
        convert_voc_folder(labelimg, tmp_path / "o3", names=["Car", "Tree", "Car"])


def test_split_is_reproducible_by_name(tmp_path):
    src = tmp_path / "many"
    for i in range(40):
        image(src / f"{i:03d}.png", 16, 16)
        xml(src / f"{i:03d}.xml", ("Tree", 1, 1, 8, 8), size=(16, 16))

    def val_of(out, **kw):
        data_yaml = convert_voc_folder(src, tmp_path / out, **kw)
        return sorted(f.name for f in (data_yaml.parent / "images/val").iterdir())

    first = val_of("s0", val=0.25, seed=0)
    assert len(first) == 10 and val_of("s0b", val=0.25, seed=0) == first
    assert val_of("s1", val=0.25, seed=1) != first
    assert len(val_of("s2", val=0.1, seed=0)) == 4
    keys = [f"{i:03d}" for i in range(40)]
    shuffled = random.Random(1).sample(keys, len(keys))  # another listing order, same images
    assert val_split(shuffled, 0.25, 0) == val_split(keys, 0.25, 0) == {Path(f).stem for f in first}
    for more in range(1, 8):  # adding images moves at most one other image per added one between the splits
        added = [f"new{i}" for i in range(more)]
        assert len((val_split(keys + added, 0.25, 0) ^ val_split(keys, 0.25, 0)) - set(added)) <= more
    with pytest.raises(ValueError, match="not in \\[0, 1\\)"):
        val_split(keys, 1.0)


def test_annotations_jpegimages_layout_and_image_sets(tmp_path):
    """Annotations/ + JPEGImages/ with several image formats; SegmentationClass PNGs of the same stems are not
    images of this dataset; ImageSets/Main/{train,val}.txt split it."""
    src = tmp_path / "cvat"
    for stem, ext in (("p1", "jpg"), ("p2", "bmp"), ("p3", "webp"), ("p4", "png")):
        image(src / "JPEGImages" / f"{stem}.{ext}", 50, 40)
        image(src / "SegmentationClass" / f"{stem}.png", 50, 40)
        xml(src / "Annotations" / f"{stem}.xml", ("person", 1, 1, 25, 40), size=(50, 40))
    data_yaml = convert_voc_folder(src, tmp_path / "out", val=0.5)
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == {0: "person"} and data["summary"]["images"] == 4
    assert "skipped duplicate" not in data["summary"]  # SegmentationClass/ is not searched
    assert labels_of(data_yaml.parent)["p2"] == "0 0.250000 0.500000 0.500000 1.000000\n"  # [0, 0, 25, 40] in 50 x 40
    assert (data["summary"]["train images"], data["summary"]["val images"]) == (2, 2)

    sets = src / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("p1\np2\n")
    (sets / "val.txt").write_text("p3\n")
    data = yaml.safe_load(convert_voc_folder(src, tmp_path / "out2", val=0.5).read_text())
    assert sorted(f.name for f in (tmp_path / "out2/images/train").iterdir()) == ["p1.jpg", "p2.bmp"]
    assert [f.name for f in (tmp_path / "out2/images/val").iterdir()] == ["p3.webp"]
    assert data["summary"]["skipped not in an image set"] == 1  # p4


def test_exif_turned_photos_are_measured_turned(tmp_path, logged):
    """A phone photo stored 100 x 80 with EXIF orientation 6 is 80 x 100 as Ultralytics loads it: an XML without a size
    is normalised by that, and an XML whose size is the stored one is counted and named."""
    from PIL import Image

    src, exif = tmp_path / "phone", Image.Exif()
    src.mkdir()
    exif[274] = 6  # rotate 90 degrees clockwise to display
    for stem in ("a", "b"):
        Image.new("RGB", (100, 80)).save(src / f"{stem}.jpg", exif=exif)
    xml(src / "a.xml", ("Tree", 1, 1, 40, 50), size=None)
    xml(src / "b.xml", ("Tree", 1, 1, 40, 50), size=(100, 80))
    data = yaml.safe_load(convert_voc_folder(src, tmp_path / "out", val=0).read_text())
    assert labels_of(tmp_path / "out")["a"] == "0 0.250000 0.250000 0.500000 0.500000\n"  # [0, 0, 40, 50] in 80 x 100
    assert labels_of(tmp_path / "out")["b"] == "0 0.200000 0.312500 0.400000 0.625000\n"  # as its XML says: 100 x 80
    assert (data["summary"]["size read from image"], data["summary"]["size differs from image"]) == (1, 1)
    assert any("b.xml' gives the size (100, 80), its image (80, 100)" in m for m in logged)


def test_split_folders_keep_the_exports_split(tmp_path, logged):
    """Roboflow's Pascal VOC export (train/, valid/, test/, each image beside its XML): each image stays in the split
    its folder names, whatever --val and --seed say (a re-split would leak test images into train); an image outside
    the split folders is skipped and counted."""
    src = tmp_path / "roboflow"
    for folder, stems in (("train", "t1 t2 t3 t4"), ("valid", "v1"), ("test", "x1 x2"), ("extra", "e1")):
        for stem in stems.split():
            image(src / folder / f"{stem}_jpg.rf.0a1b.jpg", 50, 40)
            xml(src / folder / f"{stem}_jpg.rf.0a1b.xml", ("Tree", 1, 1, 25, 40), size=(50, 40))
    (src / "README.roboflow.txt").write_text("exported")
    data_yaml = convert_voc_folder(src, tmp_path / "out", val=0.5, seed=3)
    data = yaml.safe_load(data_yaml.read_text())
    split_of = {f.name.split("_")[0]: f.parent.name for f in (tmp_path / "out" / "images").glob("*/*.jpg")}
    assert split_of == {**dict.fromkeys(["t1", "t2", "t3", "t4"], "train"), "v1": "val", "x1": "test", "x2": "test"}
    assert (data["val"], data["test"]) == ("images/val", "images/test")
    assert data["summary"]["skipped not in a split folder"] == 1  # extra/e1
    assert any("split by the folders ['test', 'train', 'valid']" in m for m in logged)
    assert check_det_dataset(str(data_yaml))["nc"] == 1


def test_cvat_export_subsets_and_labelmap(tmp_path, logged):
    """CVAT's PASCAL VOC export: image sets named after its subsets (Train, Validation, Test), and labelmap.txt, whose
    order (unused labels included, its mask-only background not) gives the classes. Train and test without val: val
    is the test split. A --names that matches no object is an error, not a dataset of background images."""
    src = tmp_path / "cvat"
    for stem in ("p1", "p2", "p3", "p4"):
        image(src / "JPEGImages" / f"{stem}.jpg", 50, 40)
        xml(src / "Annotations" / f"{stem}.xml", ("person", 1, 1, 25, 40), ("car", 26, 1, 50, 20), size=(50, 40))
    (sets := src / "ImageSets" / "Main").mkdir(parents=True)
    (sets / "Train.txt").write_text("p1\np2\n")
    (sets / "Validation.txt").write_text("p3\n")
    (sets / "Test.txt").write_text("p4\n")
    labelmap = "# label:color_rgb:parts:actions\nbackground:0,0,0::\ntree:1,2,3::\nperson:250,50,83::\ncar:5,5,5::\n"
    (src / "labelmap.txt").write_text(labelmap)
    data = yaml.safe_load(convert_voc_folder(src, tmp_path / "out", val=0.5).read_text())
    assert data["names"] == {0: "tree", 1: "person", 2: "car"}
    assert (
        labels_of(tmp_path / "out")["p1"]
        == "1 0.250000 0.500000 0.500000 1.000000\n2 0.750000 0.250000 0.500000 0.500000\n"
    )
    split_of = {f.stem: f.parent.name for f in (tmp_path / "out" / "images").rglob("*.jpg")}
    assert split_of == {"p1": "train", "p2": "train", "p3": "val", "p4": "test"}
    assert any("split by the image sets ['Test.txt', 'Train.txt', 'Validation.txt']" in m for m in logged)

    (sets / "Validation.txt").unlink()  # train and test only: val is the test split, p3 is in no set
    data = yaml.safe_load(convert_voc_folder(src, tmp_path / "out2", names=src / "labelmap.txt").read_text())
    assert (data["val"], data["test"], data["summary"]["skipped not in an image set"]) == ("images/test",) * 2 + (1,)
    with pytest.raises(ValueError, match=r"no box under .* is of the classes \['Person'\]: the XMLs name \['car', "):
        convert_voc_folder(src, tmp_path / "out3", names=["Person"])


def test_voc_cli_modes_and_bad_input(labelimg, tmp_path, capsys):
    out = tmp_path / "cli"
    assert entrypoint(["convert", "voc", str(labelimg), str(out), "--names", "Tree,Car", "--val", "0.5"]) == 0
    printed = Path(capsys.readouterr().out.strip().splitlines()[-1])
    data = yaml.safe_load(printed.read_text())
    assert printed == out / "data.yaml" and data["names"] == {0: "Tree", 1: "Car"}
    assert (data["summary"]["train images"], data["summary"]["val images"]) == (3, 3)

    def refused(*args) -> str:
        assert entrypoint(["convert", "voc", *map(str, args)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        return err

    assert "does not exist" in refused(tmp_path / "missing", out)
    (empty := tmp_path / "empty").mkdir()
    assert "no image under" in refused(empty, out)
    image(tmp_path / "only-images" / "x.png")
    assert "no image under" in refused(tmp_path / "only-images", out)
    (tmp_path / "broken").mkdir()
    image(tmp_path / "broken" / "x.png")
    (tmp_path / "broken" / "x.xml").write_text("<annotation>")
    assert "no image under" in refused(tmp_path / "broken", out)
    assert "--sets" in refused(labelimg, out, "--sets", "2007:trainval")
    assert "names file" in refused(labelimg, out, "--names", tmp_path / "nope.txt")
    (tmp_path / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main").mkdir(parents=True)
    assert "is a VOCdevkit" in refused(tmp_path / "VOCdevkit", out, "--names", "a,b")


def yolo_label(path: Path, text: str) -> None:
    """Write a YOLO label file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_yolo_split_layout_counts_problems(tmp_path, logged):
    root = tmp_path / "yolo"
    for split, stems in (("train", "abc"), ("val", "d")):
        for stem in stems:
            image(root / "images" / split / f"{stem}.jpg", 32, 32)
    image(root / "images/train/a.png", 32, 32)  # a.jpg's label too
    yolo_label(root / "labels/train/a.txt", "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n")  # a malformed line
    yolo_label(root / "labels/train/b.txt", "2 0.5 0.5 0.2 0.2\n0 1.5 0.5 0.2 0.2\n\n")  # class 2; x 1.5
    yolo_label(root / "labels/train/z.txt", "0 0.5 0.5 0.2 0.2\n")  # no image
    yolo_label(root / "labels/val/d.txt", "1 0.1 0.1 0.9 0.1 0.9 0.9\n0 0.5 0.5 0.2 0.2\n")  # a polygon and a box
    (root / "classes.txt").write_text("cat\ndog\n")  # as labelImg writes it
    data_yaml = convert_yolo(root)
    assert data_yaml == root / "data.yaml"
    data = check_det_dataset(str(data_yaml))
    assert data["names"] == {0: "cat", 1: "dog"}
    assert (data["train"], data["val"]) == (str(root / "images/train"), str(root / "images/val"))
    assert yaml.safe_load(data_yaml.read_text())["summary"] == {
        "images": 5,  # a.jpg, a.png, b, c, d
        "background": 1,  # c
        "boxes": 6,  # well-formed lines: a.txt:1 (read for a.jpg and a.png), b.txt:1 and :2, d.txt:1 and :2
        "no label": 1,
        "malformed line": 2,  # a.txt:2, read for a.jpg and for a.png
        "class out of range": 1,
        "outside [0, 1]": 1,
        "polygon line": 1,
        "mixed lines": 1,  # d.txt: Ultralytics would skip d as corrupt
        "shared label": 1,
        "label without image": 1,
        "unreadable image": 0,
        "train images": 4,
        "val images": 1,
    }
    assert any("b.txt:1': class 2 is outside the 2 names" in m for m in logged)
    assert any("labels/train/z.txt' belongs to no image" in m for m in logged)
    assert any("d.txt' mixes box and polygon lines" in m for m in logged)
    assert (root / "labels/train/b.txt").read_text() == "2 0.5 0.5 0.2 0.2\n0 1.5 0.5 0.2 0.2\n\n"  # untouched
    convert_yolo(root)  # its own yaml may be replaced
    data_yaml.write_text("path: .\n")
    with pytest.raises(ValueError, match="did not write it"):
        convert_yolo(root)


def test_yolo_roboflow_layout_and_obb(tmp_path, capsys):
    root = tmp_path / "rf"
    for split in ("train", "valid", "test"):
        for i in range(2):
            image(root / split / "images" / f"{split}{i}.jpg", 32, 32)
            yolo_label(root / split / "labels" / f"{split}{i}.txt", "1 0.1 0.1 0.4 0.1 0.4 0.4 0.1 0.4\n")
    (names := tmp_path / "my.names").write_text("ship\nplane\n")
    assert entrypoint(["convert", "yolo", str(root), "--names", str(names), "--out", str(tmp_path / "rf.yaml")]) == 0
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]) == tmp_path / "rf.yaml"
    data = check_det_dataset(str(tmp_path / "rf.yaml"))
    assert data["names"] == {0: "ship", 1: "plane"}
    assert [data[k] for k in ("train", "val", "test")] == [str(root / s / "images") for s in ("train", "valid", "test")]
    text = (tmp_path / "rf.yaml").read_text()
    assert "an OBB dataset" in text and yaml.safe_load(text)["summary"]["test images"] == 2
    assert not (root / "data.yaml").exists()


def test_yolo_flat_layout_gets_image_lists(tmp_path, logged):
    root = tmp_path / "flat"
    for i in range(20):
        image(root / "images" / f"{i:02d}.png", 16, 16)
        yolo_label(root / "labels" / f"{i:02d}.txt", f"{i % 3} 0.5 0.5 0.5 0.5\n")
    data_yaml = convert_yolo(root, val=0.25, seed=0)
    data = check_det_dataset(str(data_yaml))
    assert data["names"] == {0: "class0", 1: "class1", 2: "class2"}  # from the largest class id
    assert any("class0..class2; pass --names" in m for m in logged)
    assert (data["train"], data["val"]) == (str(root / "train.txt"), str(root / "val.txt"))
    train, val = ((root / f"{s}.txt").read_text().splitlines() for s in ("train", "val"))
    assert len(val) == 5 and len(train) == 15 and sorted(train + val) == [f"./images/{i:02d}.png" for i in range(20)]
    assert all((root / line).is_file() for line in train + val)
    assert val == sorted(f"./{k}" for k in val_split([f"images/{i:02d}.png" for i in range(20)], 0.25, 0))
    convert_yolo(root, val=0.25, seed=1)
    assert (root / "val.txt").read_text().splitlines() != val
    convert_yolo(root, val=0.25, seed=0)
    assert (root / "val.txt").read_text().splitlines() == val


def test_yolo_labels_beside_the_images(tmp_path, capsys, logged):
    """labelImg's YOLO format (each .txt beside its image, classes.txt) and CVAT's YOLO 1.1 export (obj.names, a folder
    obj_<subset>_data per subset): Ultralytics reads only images/ + labels/, so --out gets them, the source untouched."""
    src = tmp_path / "labelimg-yolo"
    for stem, text in (
        ("a", "0 0.5 0.5 0.2 0.2\n"),
        ("b", "1 0.3 0.3 0.1 0.1\n"),
        ("c", None),
        ("d", "0 0.4 0.4 0.2 0.2\n"),
    ):
        image(src / f"{stem}.jpg", 64, 48)
        if text:
            yolo_label(src / f"{stem}.txt", text)
    yolo_label(src / "orphan.txt", "0 0.5 0.5 0.1 0.1\n")
    (src / "classes.txt").write_text("bolt\nnut\n")
    before = sorted(p.name for p in src.iterdir())
    assert entrypoint(["convert", "yolo", str(src)]) == 2  # no --out: one line saying why
    assert "--out NEW_FOLDER" in capsys.readouterr().err and sorted(p.name for p in src.iterdir()) == before
    data_yaml = convert_yolo(src, out=tmp_path / "out", val=0.25)
    data = check_det_dataset(str(data_yaml))
    assert data["names"] == {0: "bolt", 1: "nut"} and sorted(p.name for p in src.iterdir()) == before
    assert (tmp_path / "out" / "labels" / "b.txt").read_text() == "1 0.3 0.3 0.1 0.1\n"
    assert (tmp_path / "out" / "images" / "a.jpg").resolve() == (src / "a.jpg").resolve()
    summary = yaml.safe_load(data_yaml.read_text())["summary"]
    assert (summary["images"], summary["boxes"], summary["no label"], summary["train images"]) == (4, 3, 1, 3)
    assert any("1 label files beside no image are not used" in m for m in logged)
    assert convert_yolo(src, out=tmp_path / "out", val=0.25) == data_yaml  # again: its own output is replaced

    cvat = tmp_path / "cvat-yolo"
    for subset, stems in (("obj_Train_data", "t1 t2 t3"), ("obj_Validation_data", "v1")):
        for stem in stems.split():
            image(cvat / subset / f"{stem}.jpg", 64, 48)
            yolo_label(cvat / subset / f"{stem}.txt", "0 0.5 0.5 0.2 0.2\n")
    (cvat / "obj.names").write_text("person\n")
    (cvat / "obj.data").write_text("classes = 1\ntrain = data/train.txt\nnames = data/obj.names\n")
    data = yaml.safe_load(convert_yolo(cvat, out=tmp_path / "cvat-out").read_text())
    assert (data["train"], data["val"], data["names"]) == ("images/train", "images/val", {0: "person"})
    assert (data["summary"]["train images"], data["summary"]["val images"]) == (3, 1)
    assert (tmp_path / "cvat-out" / "labels" / "val" / "v1.txt").is_file()


def test_yolo_bad_input(tmp_path, capsys):
    def refused(*args) -> str:
        assert entrypoint(["convert", "yolo", *map(str, args)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        return err

    assert "does not exist" in refused(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    assert "not a YOLO-format dataset" in refused(tmp_path / "plain")
    (tmp_path / "noimg" / "images").mkdir(parents=True)
    assert "no image under" in refused(tmp_path / "noimg")
    image(tmp_path / "nolabel" / "images" / "a.png")
    assert "no class names" in refused(tmp_path / "nolabel")
    image(tmp_path / "theirs" / "images" / "a.png")
    yolo_label(tmp_path / "theirs" / "labels" / "a.txt", "0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "theirs" / "train.txt").write_text("/somewhere/a.png\n")
    assert "exist already" in refused(tmp_path / "theirs", "--val", "0.5")
    assert (tmp_path / "theirs" / "train.txt").read_text() == "/somewhere/a.png\n"


def roboflow_yolo(root: Path, names_text: str) -> Path:
    """A Roboflow 'YOLOv8' export: its data.yaml (`names_text`, nc 3) and train/valid/test, no label of class 0."""
    for i, split in enumerate(("train", "valid", "test")):
        image(root / split / "images" / f"{split}.jpg", 32, 32)
        yolo_label(root / split / "labels" / f"{split}.txt", f"{1 + i % 2} 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(
        f"train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 3\n{names_text}\n"
        "roboflow:\n  workspace: ws\n  project: p\n  version: 1\n"
    )
    return root


@pytest.mark.parametrize(
    "names_text", ["names: ['bird', 'cat', 'dog']", "names:\n  0: bird\n  1: cat\n  2: dog"], ids=["list", "dict"]
)
def test_yolo_roboflow_export_keeps_its_yaml_names(tmp_path, logged, names_text):
    root = roboflow_yolo(tmp_path / "rf", names_text)
    before = (root / "data.yaml").read_text()
    data = check_det_dataset(str(convert_yolo(root, out=tmp_path / "rf.yaml")))
    assert data["names"] == {0: "bird", 1: "cat", 2: "dog"}  # bird, used by no label, keeps its index
    assert any(f"class names from '{root / 'data.yaml'}'" in m for m in logged)
    assert (root / "data.yaml").read_text() == before
    (root / "classes.txt").write_text("x\ny\nz\n")  # the dataset's yaml comes before a names file, --names before both
    assert check_det_dataset(str(convert_yolo(root, out=tmp_path / "rf.yaml")))["names"][0] == "bird"
    convert_yolo(root, names=["a", "b", "c"], out=tmp_path / "rf.yaml")
    assert yaml.safe_load((tmp_path / "rf.yaml").read_text())["names"] == {0: "a", 1: "b", 2: "c"}


def test_yolo_other_yaml_names_and_bad_ones(tmp_path):
    root = roboflow_yolo(tmp_path / "rf", "names: [bird, cat, dog]")
    (root / "data.yaml").rename(root / "b.yaml")
    (root / "a.yaml").write_text("roboflow: {version: 1}\n")  # no names: the next yaml by name gives them
    assert check_det_dataset(str(convert_yolo(root, out=root / "a_checked.yaml")))["names"][0] == "bird"
    (root / "b.yaml").write_text("names: [bird, cat, dog, fish]\n")  # a_checked.yaml, ours, comes first but is skipped
    assert check_det_dataset(str(convert_yolo(root, out=root / "a_checked.yaml")))["names"][3] == "fish"
    for text, why in [
        ("names: [bird, cat\n", "YAML syntax error"),
        ("- bird\n- cat\n", "not a valid YAML mapping"),
        ("names: bird cat dog\n", "neither a list nor"),
        ("names: {0: bird, 2: dog}\n", "neither a list nor"),
        ("names: [bird, cat, bird]\n", "appear more than once"),
    ]:
        (root / "b.yaml").write_text(text)
        with pytest.raises(ValueError, match=why) as e:
            convert_yolo(root, out=tmp_path / "x.yaml")
        assert str(root / "b.yaml") in str(e.value) and "\n" not in str(e.value)


def test_yolo_cli_keeps_the_exports_own_yaml(tmp_path, capsys):
    root = roboflow_yolo(tmp_path / "rf", "names: [bird, cat, dog]")
    before = (root / "data.yaml").read_text()
    assert entrypoint(["convert", "yolo", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dataset's own yaml" in err
    assert f"data={root / 'data.yaml'}" in err and "--out" in err and "remove it" not in err
    assert (root / "data.yaml").read_text() == before
    assert check_det_dataset(str(root / "data.yaml"))["train"] == str(root / "train" / "images")  # usable as it is
