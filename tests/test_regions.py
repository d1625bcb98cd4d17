"""VLR selection on hand-built boxes and grids, against hand values and a loop-by-loop reference."""

import math
import statistics

import pytest
import torch
from ultralytics.utils.tal import make_anchors

from ultrald.distill.regions import hbb_overlaps, obb_overlaps, virtual_anchors, vlr_weights


def grid(sizes, strides):
    """Anchor points (A, 2) in pixels, strides (A, 1) and level sizes for square levels of `sizes` cells."""
    feats = [torch.zeros(1, 1, n, n) for n in sizes]
    points, stride = make_anchors(feats, torch.tensor(strides, dtype=torch.float32), 0.5)
    return points * stride, stride, [n * n for n in sizes]


def detect_vlr(points, strides, sizes, gt, mask, fg, alpha=0.25, scale=5.0):
    """VLR weights for xyxy boxes, as the detection criterion computes them."""
    iou, diou = hbb_overlaps(points, strides, gt, scale)
    return vlr_weights(iou, diou, (gt[..., :2] + gt[..., 2:]) / 2, points, sizes, mask, fg, alpha)


def iou_diou(a, b):
    """IoU and DIoU of two xyxy boxes, written out from the definitions."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    iou = inter / union
    rho2 = ((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) ** 2 + ((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) ** 2
    c2 = (max(a[2], b[2]) - min(a[0], b[0])) ** 2 + (max(a[3], b[3]) - min(a[1], b[1])) ** 2
    return iou, iou - rho2 / c2


def reference_vlr(points, strides, sizes, gt, mask, fg, alpha, scale):
    """Loop-by-loop VLR: per image, box and grid point, as section 4 of the method note describes it."""
    b, n = gt.shape[:2]
    out = torch.zeros(b, len(points))
    for i in range(b):
        for j in range(n):
            if not mask[i, j, 0]:
                continue
            g = gt[i, j].tolist()
            anchors = [
                (x - s * scale / 2, y - s * scale / 2, x + s * scale / 2, y + s * scale / 2)
                for (x, y), s in zip(points.tolist(), strides.view(-1).tolist())
            ]
            ious = [iou_diou(a, g) for a in anchors]
            cx, cy = (g[0] + g[2]) / 2, (g[1] + g[3]) / 2
            cand, start = [], 0
            for size in sizes:
                level = range(start, start + size)
                nearest = sorted(level, key=lambda k: math.dist(points[k].tolist(), (cx, cy)))[:9]
                cand += [ious[k][0] for k in nearest]
                start += size
            thr = statistics.mean(cand) + statistics.stdev(cand)
            for k, (iou, diou) in enumerate(ious):
                if alpha * thr <= diou < thr and not fg[i, k]:
                    out[i, k] = max(out[i, k].item(), iou)
    return out


def test_virtual_anchors():
    points, strides, _ = grid([2], [8])
    torch.testing.assert_close(virtual_anchors(points, strides, 2.0)[0], torch.tensor([-4.0, -4.0, 12.0, 12.0]))


def test_hand_built_box_selects_the_four_cells_it_covers():
    """A 16x16 box over 2x2 cells of a stride-8 grid with cell-sized anchors (scale=1).

    The 4 covered cells have IoU 1/4, the other 5 of the 9 nearest have IoU 0: thr = 1/9 + std = 0.2429. The covered
    cells have DIoU = 1/4 - 32/512 = 0.1875, inside [0.25 thr, thr): the VLR is exactly those 4 cells, weight 1/4.
    """
    points, strides, sizes = grid([4], [8])
    gt, mask = torch.tensor([[[0.0, 0.0, 16.0, 16.0]]]), torch.ones(1, 1, 1, dtype=torch.bool)
    fg = torch.zeros(1, 16, dtype=torch.bool)
    w = detect_vlr(points, strides, sizes, gt, mask, fg, alpha=0.25, scale=1.0)
    expected = torch.zeros(1, 16)
    expected[0, [0, 1, 4, 5]] = 0.25  # row-major cells (0,0), (1,0), (0,1), (1,1)
    torch.testing.assert_close(w, expected)

    fg[0, 5] = True  # a positive of the assigner leaves the VLR
    expected[0, 5] = 0
    torch.testing.assert_close(detect_vlr(points, strides, sizes, gt, mask, fg, 0.25, 1.0), expected)

    # alpha * thr = 0.8 * 0.2429 > 0.1875: the band is empty
    assert detect_vlr(points, strides, sizes, gt, mask, fg, alpha=0.8, scale=1.0).sum() == 0


def test_matches_reference_on_random_boxes():
    g = torch.Generator().manual_seed(0)
    points, strides, sizes = grid([8, 4, 2], [8, 16, 32])  # a 64 px image
    xy = torch.rand(3, 4, 2, generator=g) * 44
    wh = torch.rand(3, 4, 2, generator=g) * 30 + 4
    gt = torch.cat((xy, xy + wh), -1)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)[..., None]
    fg = torch.rand(3, len(points), generator=g) < 0.1
    got = detect_vlr(points, strides, sizes, gt, mask, fg, alpha=0.25, scale=5.0)
    want = reference_vlr(points, strides, sizes, gt, mask, fg, alpha=0.25, scale=5.0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert got[0].gt(0).sum() > 3 and got[1].gt(0).sum() > 0  # the band is not empty here
    assert got[2].sum() == 0  # the image without boxes selects nothing
    assert got[fg].sum() == 0  # positives excluded


@pytest.mark.parametrize("n", [0, 2])
def test_images_without_boxes_select_nothing(n):
    points, strides, sizes = grid([4, 2], [8, 16])
    gt, mask = torch.zeros(2, n, 4), torch.zeros(2, n, 1, dtype=torch.bool)
    w = detect_vlr(points, strides, sizes, gt, mask, torch.zeros(2, len(points), dtype=torch.bool))
    assert w.shape == (2, len(points)) and w.sum() == 0 and torch.isfinite(w).all()


def rotated_square(x, y, side, angle):
    """Shapely polygon of a square of `side` centred at (x, y), turned by `angle`."""
    from shapely import affinity
    from shapely.geometry import box

    return affinity.rotate(box(x - side / 2, y - side / 2, x + side / 2, y + side / 2), angle, use_radians=True)


def test_obb_overlaps_match_exact_polygon_iou():
    """IoU of each box with the square anchor turned to the box's angle, against shapely's exact polygons."""
    from shapely import affinity
    from shapely.geometry import box

    g = torch.Generator().manual_seed(0)
    points, strides, _ = grid([8, 4], [8, 16])
    gt = torch.cat(
        (
            torch.rand(2, 3, 2, generator=g) * 64,
            torch.rand(2, 3, 2, generator=g) * 30 + 5,
            torch.rand(2, 3, 1, generator=g) * 3.1 - 0.7,
        ),
        -1,
    )
    iou, diou = obb_overlaps(points, strides, gt, scale=2.0)
    assert iou.shape == diou.shape == (2, 3, len(points)) and (diou <= iou + 1e-6).all()
    for i, j in [(0, 0), (0, 2), (1, 1)]:
        x, y, w, h, r = gt[i, j].tolist()
        poly = affinity.rotate(box(x - w / 2, y - h / 2, x + w / 2, y + h / 2), r, use_radians=True)
        for k in range(0, len(points), 7):
            anchor = rotated_square(*points[k].tolist(), 2.0 * strides[k].item(), r)
            exact = poly.intersection(anchor).area / poly.union(anchor).area
            assert iou[i, j, k].item() == pytest.approx(exact, abs=1e-4)


def test_obb_overlaps_unrotated_equal_hbb_and_invariant_to_turning_the_scene():
    g = torch.Generator().manual_seed(1)
    points, strides, _ = grid([8], [8])
    xywh = torch.cat((torch.rand(1, 4, 2, generator=g) * 64, torch.rand(1, 4, 2, generator=g) * 30 + 5), -1)
    xyxy = torch.cat((xywh[..., :2] - xywh[..., 2:] / 2, xywh[..., :2] + xywh[..., 2:] / 2), -1)
    rotated = obb_overlaps(points, strides, torch.cat((xywh, torch.zeros(1, 4, 1)), -1), 3.0)
    for a, b in zip(rotated, hbb_overlaps(points, strides, xyxy, 3.0)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    phi = 0.6  # turn points and boxes about the origin: the overlaps do not change
    turn = torch.tensor([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
    gt = torch.cat((xywh[..., :2] @ turn.T, xywh[..., 2:], torch.full((1, 4, 1), phi)), -1)
    for a, b in zip(obb_overlaps(points @ turn.T, strides, gt, 3.0), rotated):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
