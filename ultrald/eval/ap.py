"""How mAP is computed for VOC (`metric=voc`) and DOTA (`metric=dota`): one matcher and one AP, on boxes or polygons.

Both references are the same procedure: py-faster-rcnn's `voc_eval` (VOC, axis-aligned boxes) and the DOTA devkit's
`dota_evaluation_task1` (`voc_eval` on exact polygon IoU). Per class and IoU threshold:

1. Detections are taken in descending score order. Ties keep the order of the images, then the detector's (a stable
   sort, as pycocotools; the references' `np.argsort(-confidence)` leaves their order to quicksort).
2. Each goes to the object of its image with the highest IoU (the first on equal IoU). IoU above the threshold
   (strictly, `ovmax > ovthresh`) with an object not yet taken: a true positive, and the object is taken; with a taken
   one: a false positive; with a difficult one: neither (it stays in the curve, repeating the point before it, as in the
   references, which moves no AP). No object above the threshold: a false positive.
3. recall = cumulated tp / non-difficult objects; precision = cumulated tp / (tp + fp).
4. AP07 is VOC2007's 11-point AP at the references' recall points np.arange(0, 1.1, 0.1), float rounding included:
   0.3, 0.6 and 0.7 are 0.30000000000000004, 0.6000000000000001, 0.7000000000000001, so a recall of exactly 0.3 does not
   reach the fourth point. AP is VOC2010+'s area under the precision envelope.
5. mAP is the mean over the classes that have ground truth. Deliberately unlike the references (which divide by zero),
   a class without ground truth has AP nan and is left out of the mean.

VOC boxes are continuous pixels (ultrald.data.voc), so their plain IoU is `voc_eval`'s IoU with its +1 widths."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import numpy as np

RECALL_POINTS = np.arange(0.0, 1.1, 0.1)  # the references' 11 points, float rounding included


def ap07(recall: np.ndarray, precision: np.ndarray) -> float:
    """Return VOC2007's 11-point AP: the mean over RECALL_POINTS t of the best precision at recall >= t (0 if none)."""
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    return float(sum(precision[recall >= t].max(initial=0.0) for t in RECALL_POINTS) / 11)


def ap_area(recall: np.ndarray, precision: np.ndarray) -> float:
    """Return VOC2010+'s AP: the area under the precision envelope (precision made non-increasing in recall)."""
    r = np.concatenate(([0.0], recall, [1.0]))
    p = np.maximum.accumulate(np.concatenate(([0.0], precision, [0.0]))[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(((r[steps + 1] - r[steps]) * p[steps + 1]).sum())


def match(ious: np.ndarray, scores: np.ndarray, difficult: np.ndarray, thrs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Match one image's N detections of a class to its M objects (steps 1-2 above) at T IoU thresholds: ious (N, M),
    scores (N,), difficult (M,), thrs (T,) -> boolean tp, fp (N, T) in the detections' order."""
    tp, fp = np.zeros((len(scores), len(thrs)), bool), np.ones((len(scores), len(thrs)), bool)
    if not ious.shape[1]:
        return tp, fp
    best, taken = ious.argmax(1), np.zeros((len(thrs), ious.shape[1]), bool)
    for k in np.argsort(-np.asarray(scores, float), kind="stable"):
        j = best[k]
        hit = ious[k, j] > thrs
        tp[k] = hit & ~taken[:, j] & (not difficult[j])
        fp[k] = ~hit if difficult[j] else ~tp[k]  # a hit on a difficult object is neither
        taken[:, j] |= hit
    return tp, fp


def average_precision(
    dets: Mapping[str, tuple],
    gts: Mapping[str, tuple],
    iou: Callable[[np.ndarray, np.ndarray], np.ndarray],
    classes: Iterable[int],
    thrs: Iterable[float] = (0.5,),
) -> dict[int, dict]:
    """Return class -> {AP07 (T,), AP (T,) (nan without ground truth), gt, difficult, dets} by the rules above. dets:
    image -> (boxes (N, K), scores (N,), classes (N,)); gts: image -> (boxes (M, K), classes (M,), difficult (M,)), the
    evaluated images in their order; iou(boxes (N, K), boxes (M, K)) -> (N, M); thrs: IoU thresholds (T,)."""
    thrs = np.asarray(tuple(thrs), float)
    found, npos, ndiff = {c: [] for c in classes}, Counter(), Counter()  # found: class -> per image: (scores, tp, fp)
    for image, (g_boxes, g_cls, g_diff) in gts.items():
        g_cls, g_diff = np.asarray(g_cls), np.asarray(g_diff, bool)
        npos.update(g_cls[~g_diff].tolist())
        ndiff.update(g_cls[g_diff].tolist())
        d_boxes, d_scores, d_cls = dets.get(image, (None, (), np.zeros(0)))
        for c in np.unique(d_cls):
            if int(c) in found:
                k, g = d_cls == c, g_cls == c
                found[int(c)].append((d_scores[k], *match(iou(d_boxes[k], g_boxes[g]), d_scores[k], g_diff[g], thrs)))
    out, none = {}, (np.zeros(0), np.zeros((0, len(thrs))), np.zeros((0, len(thrs))))
    for c, parts in found.items():
        scores, tp, fp = (np.concatenate(x) for x in zip(*parts)) if parts else none
        order = np.argsort(-scores, kind="stable")
        tp, fp = tp[order].cumsum(0), fp[order].cumsum(0)
        recall, precision = tp / max(npos[c], 1), tp / np.maximum(tp + fp, np.finfo(float).eps)
        aps = [(ap07(recall[:, t], precision[:, t]), ap_area(recall[:, t], precision[:, t])) for t in range(len(thrs))]
        aps = np.array(aps).reshape(-1, 2) if npos[c] else np.full((len(thrs), 2), np.nan)
        out[c] = {"AP07": aps[:, 0], "AP": aps[:, 1], "gt": npos[c], "difficult": ndiff[c], "dets": len(scores)}
    return out


def means(classes: Mapping[str, dict], keys: Iterable[str]) -> dict[str, float]:
    """Return the mean of each key over the classes that have ground truth (0.0 when none has)."""
    scored = [r for r in classes.values() if r["gt"]]
    return {k: float(np.mean([r[k] for r in scored])) if scored else 0.0 for k in keys}


def class_table(title: str, classes: Mapping[str, dict], columns: Mapping[str, str], mean: Mapping[str, float]) -> str:
    """Return a table of one row per class (gt, difficult, dets, then `columns`: header -> key) and a row of means."""
    fmt = lambda v: f"{'-':>9}" if math.isnan(v) else f"{v:9.4f}"  # nan: no ground truth
    totals = {k: sum(r[k] for r in classes.values()) for k in ("gt", "difficult", "dets")}
    rows = [title, f"{'class':>20} {'gt':>7} {'difficult':>9} {'dets':>8} " + " ".join(f"{h:>9}" for h in columns)]
    for name, r in (*classes.items(), ("mean", {**totals, **mean})):
        values = " ".join(fmt(r[k]) for k in columns.values())
        rows.append(f"{name:>20} {r['gt']:>7} {r['difficult']:>9} {r['dets']:>8} {values}")
    return "\n".join(rows)
