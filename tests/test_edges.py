"""Edge distributions across reg_max: decode, DFL two-bin targets, bin resampling, KL to a target, box-level LD."""

import math

import pytest
import torch

from ultrald.distill.edges import (
    BOX_TYPES,
    box_distill,
    edge_target,
    expected_edges,
    kl_to_target,
    ltrb_iou,
    resample_bins,
    two_bin_target,
)
from ultrald.distill.losses import kl_distill


def test_expected_edges_hand_values():
    logits = torch.tensor([[0.0, math.log(3)], [1.0, 1.0]])  # p = [1/4, 3/4] -> 0.75; uniform -> 0.5
    assert expected_edges(logits).tolist() == pytest.approx([0.75, 0.5], abs=1e-6)
    four = torch.tensor([0.1, 0.2, 0.3, 0.4]).log()  # 0.2 + 0.6 + 1.2
    assert expected_edges(four).item() == pytest.approx(2.0, abs=1e-6)


def test_expected_edges_reg_max_1_is_the_raw_distance():
    raw = torch.tensor([[[-0.5], [3.7], [0.0], [12.25]]])  # (1, 4, 1), unbounded like YOLO26's Identity "DFL"
    out = expected_edges(raw)
    assert out.shape == (1, 4)
    assert out.tolist() == [[-0.5, 3.700000047683716, 0.0, 12.25]]


def test_two_bin_target_hand_values():
    edges = torch.tensor([2.3, 0.0, -1.0, 1.0, 3.0, 10.0])
    expected = [
        [0, 0, 0.7, 0.3],
        [1, 0, 0, 0],
        [1, 0, 0, 0],  # clamped at 0
        [0, 1, 0, 0],
        [0, 0, 0.01, 0.99],  # reg_max - 1 is clamped to reg_max - 1.01, as DFLoss does
        [0, 0, 0.01, 0.99],
    ]
    out = two_bin_target(edges, 4)
    assert out.shape == (6, 4)
    torch.testing.assert_close(out, torch.tensor(expected), atol=1e-6, rtol=0)


def test_two_bin_target_keeps_the_expectation_in_range():
    x = torch.rand(32, 4, generator=torch.Generator().manual_seed(0)) * 14.99
    probs = two_bin_target(x, 16)
    assert (probs > 0).sum(-1).le(2).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(32, 4))
    torch.testing.assert_close(probs @ torch.arange(16.0), x)


def test_resample_identity_for_equal_bins():
    probs = torch.randn(5, 4, 16, generator=torch.Generator().manual_seed(1)).softmax(-1)
    assert torch.equal(resample_bins(probs, 16), probs)


def test_resample_hand_values():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    # bins 2 and 3 both lie beyond 3 student bins: each goes to [0, 0.01, 0.99]
    torch.testing.assert_close(resample_bins(probs, 3), torch.tensor([0.1, 0.207, 0.693]))
    torch.testing.assert_close(resample_bins(probs, 6), torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0, 0.0]))


def test_resample_16_to_8_preserves_the_mean_in_range():
    g = torch.Generator().manual_seed(2)
    probs = torch.zeros(10, 4, 16)
    probs[..., :7] = torch.rand(10, 4, 7, generator=g)  # support on bins 0..6 <= 8 - 1.01
    probs = probs / probs.sum(-1, keepdim=True)
    out = resample_bins(probs, 8)
    assert out.shape == (10, 4, 8)
    torch.testing.assert_close(out.sum(-1), torch.ones(10, 4))
    torch.testing.assert_close(expected_edges(out.log()), probs @ torch.arange(16.0))


def test_resample_beyond_range_clamps_like_dfl():
    probs = torch.zeros(16)
    probs[12] = 1.0
    out = resample_bins(probs, 8)
    torch.testing.assert_close(out, two_bin_target(torch.tensor(12.0), 8))
    torch.testing.assert_close(out, torch.tensor([0, 0, 0, 0, 0, 0, 0.01, 0.99]))


@pytest.mark.parametrize("temperature", [1.0, 3.0, 10.0])
def test_kl_to_target_equals_kl_distill_for_softmax_targets(temperature):
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(64, 4, 16, generator=g) * 3, torch.randn(64, 4, 16, generator=g) * 3
    torch.testing.assert_close(kl_to_target(s, t.softmax(-1), temperature), kl_distill(s, t, temperature))


def test_kl_to_target_zero_at_match_and_positive_otherwise():
    g = torch.Generator().manual_seed(4)
    s = torch.randn(64, 4, 16, generator=g)
    assert kl_to_target(s, s.softmax(-1), 1.0).abs().max().item() < 1e-6
    other = kl_to_target(torch.randn(64, 4, 16, generator=g), s.softmax(-1), 2.0)
    assert other.min().item() > 0


def test_kl_to_target_hand_values_with_zero_bins():
    q = torch.tensor([[0.8, 0.2, 0.0, 0.0]])
    s = torch.zeros(1, 4)  # p_s uniform
    t1 = 0.8 * math.log(0.8 / 0.25) + 0.2 * math.log(0.2 / 0.25)
    assert kl_to_target(s, q, 1.0).item() == pytest.approx(t1 / 4, abs=1e-6)
    # T = 2: q^(1/2) renormalised is [2/3, 1/3, 0, 0]; zero bins stay zero
    t2 = 2 / 3 * math.log(8 / 3) + 1 / 3 * math.log(4 / 3)
    assert kl_to_target(s, q, 2.0).item() == pytest.approx(t2 / 4 * 4, abs=1e-6)


def test_kl_to_target_gradient_at_t1():
    g = torch.Generator().manual_seed(5)
    s = torch.randn(8, 4, 16, generator=g, requires_grad=True)
    q = two_bin_target(torch.rand(8, 4, generator=g) * 14, 16)  # mostly zeros
    loss = kl_to_target(s, q, 1.0)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(s.grad).all()
    torch.testing.assert_close(s.grad, (s.detach().softmax(-1) - q) / 16)


def test_ltrb_iou_hand_values():
    a = torch.tensor([1.0, 1.0, 1.0, 1.0])  # x, y in [-1, 1], area 4
    assert ltrb_iou(a, a).item() == pytest.approx(1.0, abs=1e-6)
    b = torch.tensor([2.0, 1.0, 0.5, 1.0])  # 2.5 x 2 = 5; overlap 1.5 x 2 = 3; union 6
    assert ltrb_iou(a, b).item() == pytest.approx(0.5, abs=1e-6)
    c = torch.tensor([-0.5, 1.0, 2.0, 1.0])  # x in [0.5, 2], area 3; overlap 0.5 x 2 = 1; union 6
    assert ltrb_iou(a, c).item() == pytest.approx(1 / 6, abs=1e-6)
    d = torch.tensor([-2.0, 1.0, 3.0, 1.0])  # x in [2, 3]: disjoint
    assert ltrb_iou(a, d).item() == 0.0
    assert ltrb_iou(torch.zeros(4), torch.zeros(4)).item() == 0.0  # eps-safe on empty boxes


@pytest.mark.parametrize("kind", BOX_TYPES)
def test_box_distill_zero_at_match_positive_otherwise_and_accepted_by_the_cfg(kind):
    """Every kind `ld_box_type` accepts is a real loss: zero where the edges agree, positive where they differ."""
    from ultrald.cfg import LD_DEFAULTS, check_ld_args

    e = torch.rand(16, 4, generator=torch.Generator().manual_seed(6)) * 5 + 0.1
    assert box_distill(e, e.clone(), kind).abs().max().item() < 1e-6
    assert box_distill(e, e.flip(-1) + 0.5, kind).min().item() > 1e-3
    check_ld_args({**LD_DEFAULTS, "ld_box_type": kind})


def test_unknown_box_type_is_refused_by_the_cfg():
    from ultrald.cfg import LD_DEFAULTS, check_ld_args

    with pytest.raises(ValueError, match="'ld_box_type=l2' is not one of"):
        check_ld_args({**LD_DEFAULTS, "ld_box_type": "l2"})


def test_box_distill_hand_values_and_no_teacher_gradient():
    s = torch.tensor([[1.0, 1.0, 1.0, 1.0]], requires_grad=True)
    t = torch.tensor([[2.0, 1.0, 0.5, 1.0]], requires_grad=True)
    assert box_distill(s, t, "l1").item() == pytest.approx(0.375, abs=1e-6)  # (1 + 0 + 0.5 + 0) / 4
    assert box_distill(s, t, "iou").item() == pytest.approx(0.5, abs=1e-6)
    loss = box_distill(s, t, "l1+iou")
    assert loss.item() == pytest.approx(0.875, abs=1e-6)
    loss.sum().backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum().item() > 0


def test_edge_target_pairings():
    g = torch.Generator().manual_seed(7)
    t16 = torch.randn(3, 4, 16, generator=g, requires_grad=True)
    same = edge_target(t16, 16)
    torch.testing.assert_close(same, t16.detach().softmax(-1))
    assert not same.requires_grad
    torch.testing.assert_close(edge_target(t16, 8), resample_bins(t16.detach().softmax(-1), 8))
    t1 = torch.tensor([[[2.3], [0.0], [5.0], [1.5]]])  # reg_max=1 teacher: raw distances
    torch.testing.assert_close(edge_target(t1, 4), two_bin_target(t1.squeeze(-1), 4))
    assert edge_target(t16, 1) is None and edge_target(t1, 1) is None


def test_float16_inputs_give_float32():
    g = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 4, 16, generator=g).half()
    edges = (torch.rand(2, 4, generator=g) * 5 + 0.1).half()
    probs = logits.float().softmax(-1).half()
    outs = [
        expected_edges(logits),
        expected_edges(edges.unsqueeze(-1)),
        two_bin_target(edges, 16),
        resample_bins(probs, 8),
        resample_bins(probs, 16),
        kl_to_target(logits, probs, 2.0),
        ltrb_iou(edges, edges),
        edge_target(logits, 8),
        edge_target(edges.unsqueeze(-1), 16),
        *(box_distill(edges, edges.flip(-1), k) for k in BOX_TYPES),
    ]
    assert all(o.dtype == torch.float32 for o in outs)
