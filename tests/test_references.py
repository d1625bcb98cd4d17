"""ultrald's protocols against their references on seeded synthetic inputs with score ties, duplicates and
difficult/crowd objects: COCO against pycocotools' COCOeval run directly; VOC against py-faster-rcnn's `voc_eval` and
DOTA against the devkit's `dota_evaluation_task1`, both re-implemented below from their published code (with a stable
sort for `np.argsort(-confidence)`, whose tie order is otherwise quicksort's). Each test prints its largest difference,
the figure README's evaluation section quotes."""

import contextlib
import io
import json

import numpy as np
import pytest
from shapely.geometry import Polygon

from ultrald.eval.ap import RECALL_POINTS, ap07, ap_area
from ultrald.eval.coco import COCO_KEYS, coco_detections, coco_evaluate, load_ground_truth
from ultrald.eval.dota import Detections, dota_evaluate
from ultrald.eval.dota import load_ground_truth as dota_ground_truth
from ultrald.eval.voc import voc_evaluate, voc_ground_truth

SEEDS = range(12)
TOLERANCE = 1e-6


# --- the references -------------------------------------------------------------------------------------------------


def reference_voc_ap(rec, prec, use_07_metric):
    """py-faster-rcnn's voc_ap."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec, mpre = np.concatenate(([0.0], rec, [1.0])), np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def voc_iou(bb, gt):
    """voc_eval's IoU of one 1-based inclusive box with (M, 4) of them: +1 pixel widths."""
    iw = np.maximum(np.minimum(gt[:, 2], bb[2]) - np.maximum(gt[:, 0], bb[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(gt[:, 3], bb[3]) - np.maximum(gt[:, 1], bb[1]) + 1.0, 0.0)
    inters = iw * ih
    uni = (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0) + (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0)
    return inters / (uni - inters)


def dota_iou(bb, gt):
    """dota_evaluation_task1's IoU: exact polygon IoU where the horizontal boxes overlap (+1 widths), else 0."""
    out = np.zeros(len(gt))
    for j, g in enumerate(gt):
        hbb = lambda p: (p[0::2].min(), p[1::2].min(), p[0::2].max(), p[1::2].max())
        if voc_iou(np.array(hbb(bb)), np.array([hbb(g)]))[0] > 0:
            a, b = Polygon(bb.reshape(4, 2)), Polygon(g.reshape(4, 2))
            out[j] = a.intersection(b).area / a.union(b).area
    return out


def reference_eval(dets, gts, iou, ovthresh=0.5):
    """voc_eval (and dota_evaluation_task1) for one class: dets [(image, score, box)], gts image -> (boxes, difficult).

    Returns (AP07, area AP); nan without ground truth (ultrald's deliberate deviation: the reference divides by 0).
    """
    npos = sum(int((~d).sum()) for _, d in gts.values())
    taken = {k: np.zeros(len(d), bool) for k, (_, d) in gts.items()}
    order = np.argsort(-np.array([s for _, s, _ in dets]), kind="stable")
    tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
    for d, k in enumerate(order):
        image, _, bb = dets[k]
        boxes, difficult = gts[image]
        ovmax = -np.inf
        if len(boxes):
            overlaps = iou(bb, boxes)
            ovmax, jmax = np.max(overlaps), np.argmax(overlaps)
        if ovmax > ovthresh:
            if not difficult[jmax]:
                if not taken[image][jmax]:
                    tp[d], taken[image][jmax] = 1.0, True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    if not npos:
        return float("nan"), float("nan")
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec, prec = tp / float(npos), tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return reference_voc_ap(rec, prec, True), reference_voc_ap(rec, prec, False)


# --- seeded inputs --------------------------------------------------------------------------------------------------


def scene(rng, n_images=8, n_classes=3):
    """Ground truth (image, class, xyxy 1-based inclusive int box, difficult) and detections (image, class, score,
    continuous xyxy box): jittered hits, exact copies, half boxes (IoU exactly 0.5), duplicates, misses, ties."""
    gts, dets = [], []
    for i in range(n_images):
        for _ in range(rng.integers(0, 7)):
            x0, y0 = rng.integers(1, 150, 2).tolist()
            w, h = rng.integers(4, 60, 2).tolist()
            gts.append((i, int(rng.integers(n_classes)), (x0, y0, x0 + w - 1, y0 + h - 1), rng.random() < 0.2))
    for i, c, (x0, y0, x1, y1), _ in gts:
        box = np.array([x0 - 1, y0 - 1, x1, y1], float)  # continuous pixels
        score = lambda: float(rng.choice(np.linspace(0.1, 1.0, 7)))  # 7 levels: many ties
        kind = rng.integers(6)
        if kind == 0:
            dets.append((i, c, score(), box))  # exact
        elif kind == 1:
            dets += [(i, c, s, box) for s in [score()] * 2]  # the same box twice, same score
        elif kind == 2:
            dets.append((i, c, score(), np.array([box[0], box[1], box[2], (box[1] + box[3]) / 2])))  # IoU 0.5
        elif kind in {3, 4}:
            dets.append((i, c, score(), box + rng.normal(0, 0.12 * (box[2] - box[0]), 4)))  # jittered
    for _ in range(3 * n_images):  # false positives, some on other classes' boxes
        i, c, (x0, y0) = int(rng.integers(n_images)), int(rng.integers(n_classes)), rng.uniform(0, 150, 2)
        dets.append((i, c, float(rng.random()), np.array([x0, y0, x0 + 20, y0 + 15])))
    return gts, dets


def of_image(dets, i):
    """The boxes, scores and classes of image i's detections, in their order."""
    mine = [d for d in dets if d[0] == i]
    return [d[3] for d in mine], [d[2] for d in mine], [d[1] for d in mine]


def rect(box, angle):
    """The 4 corners (8,) of a box rotated by `angle` about its centre."""
    x0, y0, x1, y1 = box
    c, corners = np.array([(x0 + x1) / 2, (y0 + y1) / 2]), np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], float)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return ((corners - c) @ rot.T + c).ravel()


# --- the comparisons ------------------------------------------------------------------------------------------------


def test_ap07_uses_the_reference_recall_points():
    """One image, five objects, three exact detections: recall 0.2, 0.4, 0.6 at precision 1.

    With exact decimals as recall points, 0.6 would count 7 points (AP 7/11 = 0.6364); the reference's
    np.arange(0, 1.1, 0.1) makes the 7th point 0.6000000000000001 > 0.6, so 6 points count: 6/11 = 0.5455.
    """
    assert RECALL_POINTS[6] > 0.6 and RECALL_POINTS[3] > 0.3
    rec, prec = np.array([0.2, 0.4, 0.6]), np.ones(3)
    assert ap07(rec, prec) == pytest.approx(6 / 11, abs=1e-15) == reference_voc_ap(rec, prec, True)
    # the area AP by hand: recall 1/3, 1/3, 2/3, 2/3 at precision 1, 1/2, 2/3, 1/2 -> 1/3 * 1 + 1/3 * 2/3 = 5/9
    rec, prec = np.array([1, 1, 2, 2]) / 3, np.array([1, 1 / 2, 2 / 3, 1 / 2])
    assert ap_area(rec, prec) == pytest.approx(5 / 9) == reference_voc_ap(rec, prec, False)
    assert ap07([], []) == ap_area(np.array([]), np.array([])) == 0.0


def write_voc(root, gts, n_images, names):
    """A VOCdevkit (VOC2007/Annotations) of the ground truth; the converted image paths under root/images/test."""
    (root / "VOC2007/Annotations").mkdir(parents=True)
    for i in range(n_images):
        objects = "".join(
            f"<object><name>{names[c]}</name><difficult>{int(d)}</difficult><bndbox><xmin>{b[0]}</xmin>"
            f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for image, c, b, d in gts
            if image == i
        )
        xml = f"<annotation><size><width>200</width><height>200</height></size>{objects}</annotation>"
        (root / f"VOC2007/Annotations/{i:06d}.xml").write_text(xml)
    return [str(root / f"images/test/VOC2007/{i:06d}.jpg") for i in range(n_images)]


def test_voc_agrees_with_voc_eval(tmp_path):
    """Ground truth read from VOC XMLs (1-based inclusive corners) by ultrald's reader; detections in continuous
    pixels, handed to voc_eval in its own convention (x + 1 for the first corner): the same IoU, the same APs."""
    names = {0: "cat", 1: "dog", 2: "bird"}
    worst = 0.0
    for seed in SEEDS:
        gts, dets = scene(np.random.default_rng(seed))
        root = tmp_path / str(seed)
        files = write_voc(root, gts, 8, names)
        gt = load_ground_truth(voc_ground_truth(files, str(root / "images/test"), root, names))
        records = [dict(zip(("boxes", "scores", "classes"), of_image(dets, i)), im_file=f) for i, f in enumerate(files)]
        ours = voc_evaluate(gt.dataset, coco_detections(records, dict(zip(files, range(8))), {0: 1, 1: 2, 2: 3}))
        for c in names:
            per_image = {i: [(b, d) for image, k, b, d in gts if image == i and k == c] for i in range(8)}
            ref_gts = {
                i: (np.array([b for b, _ in g], float).reshape(-1, 4), np.array([d for _, d in g], bool))
                for i, g in per_image.items()
            }
            ref_dets = [
                (i, s, np.array([b[0] + 1, b[1] + 1, b[2], b[3]]))
                for i, k, s, b in sorted(dets, key=lambda d: d[0])
                if k == c
            ]
            ref = reference_eval(ref_dets, ref_gts, voc_iou)
            mine = ours[c + 1]["AP07"], ours[c + 1]["AP"]
            assert np.allclose(mine, ref, atol=TOLERANCE, equal_nan=True), (seed, c, mine, ref)
            worst = max(worst, *(abs(a - b) for a, b in zip(mine, ref) if not np.isnan(a)))
    print(f"VOC: max |ultrald - voc_eval| over {len(SEEDS)} seeds x 3 classes x (AP07, AP) = {worst:.3g}")


def test_dota_agrees_with_dota_evaluation_task1(tmp_path):
    """The same scenes as rotated boxes: ground truth read from labelTxt files by ultrald's reader, polygon IoU."""
    names = ("plane", "ship", "harbor")
    worst = 0.0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        gts, dets = scene(rng)
        angles = rng.uniform(-np.pi / 2, np.pi / 2, len(gts))
        gts = [(i, c, rect(np.array(b, float) - (1, 1, 0, 0), a), d) for (i, c, b, d), a in zip(gts, angles)]
        dets = [(i, c, s, rect(b, rng.normal(0, 0.1) if rng.random() < 0.5 else 0.0)) for i, c, s, b in dets]
        folder = tmp_path / str(seed)
        folder.mkdir()
        for i in range(8):
            lines = [
                " ".join(map(repr, p.tolist())) + f" {names[c]} {int(d)}\n" for image, c, p, d in gts if image == i
            ]
            (folder / f"P{i}.txt").write_text("".join(lines))
        gt = dota_ground_truth(folder, [f"P{i}" for i in range(8)], names)
        detections = {f"P{i}": Detections(*of_image(dets, i)) for i in range(8)}
        ours = dota_evaluate(detections, gt, names, iou_thrs=(0.5, 0.75))
        for c, name in enumerate(names):
            ref_gts = {
                f"P{i}": (
                    np.array([p for image, k, p, _ in gts if image == i and k == c]).reshape(-1, 8),
                    np.array([d for image, k, _, d in gts if image == i and k == c], bool),
                )
                for i in range(8)
            }
            ref_dets = [(f"P{i}", s, p) for i, k, s, p in sorted(dets, key=lambda d: d[0]) if k == c]
            ref = [reference_eval(ref_dets, ref_gts, dota_iou, t)[0] for t in (0.5, 0.75)]
            mine = ours["classes"][name]["AP50"], ours["classes"][name]["AP75"]
            assert np.allclose(mine, ref, atol=TOLERANCE, equal_nan=True), (seed, name, mine, ref)
            worst = max(worst, *(abs(a - b) for a, b in zip(mine, ref) if not np.isnan(a)))
    print(
        f"DOTA: max |ultrald - dota_evaluation_task1| over {len(SEEDS)} seeds x 3 classes x (AP50, AP75) = {worst:.3g}"
    )


def test_coco_agrees_with_cocoeval():
    """ultrald's ground-truth loading, detection mapping and evaluation against a direct COCOeval: crowd regions,
    150 detections per image (COCO counts 100), score ties, duplicates, an image without detections."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    worst = 0.0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        gts, dets = scene(rng, n_images=6)
        images = [{"id": 100 + i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in range(6)]
        anns = [
            {"id": k, "image_id": 100 + i, "category_id": 3 * c + 5, "bbox": [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1]}
            | {"area": float((x1 - x0 + 1) * (y1 - y0 + 1)), "iscrowd": int(crowd)}
            for k, (i, c, (x0, y0, x1, y1), crowd) in enumerate(gts, 1)
        ]
        instances = {"images": images, "annotations": anns, "categories": [{"id": 3 * c + 5} for c in range(3)]}
        for i in range(5):  # 150 detections on images 0-4, none on image 5
            dets += [
                (i, int(rng.integers(3)), float(rng.choice([0.05, 0.3])), np.array([x, y, x + 30, y + 20]))
                for x, y in rng.uniform(0, 170, (150 - sum(d[0] == i for d in dets), 2))
            ]
        dets = [d for d in dets if d[0] != 5]
        records = [dict(zip(("boxes", "scores", "classes"), of_image(dets, i)), im_file=f"{i}.jpg") for i in range(6)]
        ours, _ = coco_evaluate(
            load_ground_truth(json.loads(json.dumps(instances))),
            coco_detections(records, {f"{i}.jpg": 100 + i for i in range(6)}, {0: 5, 1: 8, 2: 11}),
        )

        gt = COCO()
        gt.dataset = instances
        gt.createIndex()
        results = [
            {"image_id": 100 + i, "category_id": 3 * c + 5, "bbox": [*b[:2], *(b[2:] - b[:2])], "score": s}
            for i, c, s, b in sorted(dets, key=lambda d: d[0])
        ]
        e = COCOeval(gt, gt.loadRes(results), "bbox")
        with contextlib.redirect_stdout(io.StringIO()):
            e.evaluate()
            e.accumulate()
            e.summarize()
        diff = max(abs(ours[k] - v) for k, v in zip(COCO_KEYS, e.stats))
        assert diff <= TOLERANCE, (seed, ours, e.stats)
        worst = max(worst, diff)
    print(f"COCO: max |ultrald - COCOeval| over {len(SEEDS)} seeds x 12 numbers = {worst:.3g}")
