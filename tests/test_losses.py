"""LD / KD loss math against hand-computed values and the properties of section 7 of the method note."""

import math

import pytest
import torch

from ultrald.distill.losses import binary_kd, class_kd, kl_distill

KL_HAND = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # KL([3/4, 1/4] || [1/2, 1/2]) = 0.130812...


def test_kl_distill_hand_values():
    s, t = torch.zeros(1, 2), torch.tensor([[math.log(3), 0.0]])  # p_t = [3/4, 1/4], p_s = [1/2, 1/2]
    assert kl_distill(s, t, 1.0).item() == pytest.approx(KL_HAND / 2, abs=1e-6)  # mean over K = 2 bins
    assert kl_distill(s, 2 * t, 2.0).item() == pytest.approx(KL_HAND / 2 * 4, abs=1e-6)  # same p_t, times T^2


def test_binary_kd_hand_values():
    s, t = torch.zeros(1, 2), torch.full((1, 2), math.log(3))  # sigmoid: p_t = 3/4, p_s = 1/2 per class
    assert binary_kd(s, t, 1.0).item() == pytest.approx(2 * KL_HAND, abs=1e-6)  # summed over the 2 classes
    assert binary_kd(s[:, :1], 2 * t[:, :1], 2.0).item() == pytest.approx(4 * KL_HAND, abs=1e-6)


@pytest.mark.parametrize("fn", [kl_distill, binary_kd])
def test_zero_iff_equal_and_nonnegative(fn):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 4, 16, generator=g) * 3
    assert fn(z, z.clone(), 10.0).abs().max().item() < 1e-5
    other = fn(torch.randn(64, 4, 16, generator=g), z, 10.0)
    assert (other >= -1e-6).all() and (other > 1e-4).all()


def test_kl_invariant_to_constant_shift():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(32, 16, generator=g), torch.randn(32, 16, generator=g)
    shift = torch.randn(32, 1, generator=g) * 5
    torch.testing.assert_close(kl_distill(s + shift, t - shift, 10.0), kl_distill(s, t, 10.0), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 10.0])
def test_kl_gradient_is_t_times_ps_minus_pt_over_k(temperature):
    g = torch.Generator().manual_seed(2)
    k = 16
    s = torch.randn(8, k, generator=g).requires_grad_()
    t = torch.randn(8, k, generator=g).requires_grad_()
    kl_distill(s, t, temperature).sum().backward()
    ps, pt = (s.detach() / temperature).softmax(-1), (t.detach() / temperature).softmax(-1)
    torch.testing.assert_close(s.grad, temperature * (ps - pt) / k, atol=1e-6, rtol=1e-5)
    assert t.grad is None  # the teacher is detached


def test_binary_kd_gradient():
    g = torch.Generator().manual_seed(3)
    s, t, temperature = torch.randn(8, 5, generator=g).requires_grad_(), torch.randn(8, 5, generator=g), 2.0
    binary_kd(s, t, temperature).sum().backward()
    expected = temperature * ((s.detach() / temperature).sigmoid() - (t / temperature).sigmoid())
    torch.testing.assert_close(s.grad, expected, atol=1e-6, rtol=1e-5)


def test_softmax_kd_is_zero_with_one_class_but_binary_is_not():
    s, t = torch.zeros(4, 1), torch.ones(4, 1) * 3
    assert class_kd(s, t, 2.0, "softmax").abs().max() == 0
    assert (class_kd(s, t, 2.0, "binary") > 0).all()


def test_float32_under_autocast():
    """Low-precision logits (AMP) are softened and compared in float32."""
    g = torch.Generator().manual_seed(4)
    s, t = (torch.randn(256, 4, 16, generator=g) * 4).bfloat16(), (torch.randn(256, 4, 16, generator=g) * 4).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ld, kd = kl_distill(s, t, 10.0), binary_kd(s, t, 2.0)
    assert ld.dtype == kd.dtype == torch.float32
    torch.testing.assert_close(ld, kl_distill(s.float(), t.float(), 10.0))
    torch.testing.assert_close(kd, binary_kd(s.float(), t.float(), 2.0))


@pytest.mark.parametrize("kind", ["sin2", "l1"])
def test_angle_distill_zero_at_equal_periodic_and_pulls_towards_teacher(kind):
    from ultrald.distill.losses import angle_distill

    t = torch.linspace(-math.pi / 4, 3 * math.pi / 4, 9)
    assert angle_distill(t, t, kind).abs().max() < 1e-6
    assert angle_distill(t + math.pi, t, kind).abs().max() < 1e-5  # a box turned by pi is the same box
    s = (t + 0.3).requires_grad_()
    loss = angle_distill(s, t, kind)
    torch.testing.assert_close(loss, angle_distill(s.detach() - math.pi, t, kind), atol=1e-5, rtol=1e-5)
    loss.sum().backward()
    assert (s.grad > 0).all()  # gradient descent moves the student angle down, towards the teacher
    expected = math.sin(0.3) ** 2 if kind == "sin2" else 0.3
    assert loss[0].item() == pytest.approx(expected, abs=1e-6)
    # wrapped: a student 0.3 rad past a half turn is 0.3 rad away, on the other side
    assert angle_distill(t[:1] + math.pi - 0.3, t[:1], kind).item() == pytest.approx(expected, abs=1e-5)
