"""Every named option is one registry entry: the config check accepts exactly the registered values, and every
function handed an unknown one raises KeyError naming the key, instead of falling through to another form."""

import pytest
import torch

from ultrald.cfg import CHOICES, LD_DEFAULTS, check_ld_args
from ultrald.distill.criterion import KD_REGIONS, MAIN_WEIGHTS
from ultrald.distill.edges import BOX_FORMS, box_distill
from ultrald.distill.losses import ANGLE_FORMS, KD_FORMS, angle_distill, class_kd
from ultrald.registry import Registry


def test_registry_names_key_and_allowed_values():
    r = Registry("kd_type", binary=1, softmax=2)
    assert r["softmax"] == 2
    with pytest.raises(KeyError, match=r"'kd_type=l2' is not one of \('binary', 'softmax'\)"):
        r["l2"]


@pytest.mark.parametrize(
    "call, key",
    [
        (lambda: class_kd(torch.zeros(2, 3), torch.zeros(2, 3), 1.0, "sigmoid"), "kd_type"),
        (lambda: angle_distill(torch.zeros(2), torch.zeros(2), "l2"), "ald_type"),
        (lambda: box_distill(torch.ones(2, 4), torch.ones(2, 4), "giou"), "ld_box_type"),
    ],
)
def test_functions_refuse_an_unknown_form(call, key):
    with pytest.raises(KeyError, match=f"'{key}="):
        call()


def test_each_registered_form_is_what_the_function_computes():
    s, t = torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[1.0, 0.0, -1.0]])
    for kind, fn in KD_FORMS.items():
        assert torch.equal(class_kd(s, t, 2.0, kind), fn(s, t, 2.0))
    assert not torch.allclose(class_kd(s, t, 2.0, "binary"), class_kd(s, t, 2.0, "softmax"))
    d = torch.tensor([0.3, 3.0])  # 3.0 rad wraps to 3 - pi for 'l1'
    assert torch.allclose(angle_distill(d, torch.zeros(2), "sin2"), d.sin() ** 2)
    assert torch.allclose(angle_distill(d, torch.zeros(2), "l1"), torch.tensor([0.3, torch.pi - 3.0]))
    a, b = torch.tensor([[1.0, 1.0, 1.0, 1.0]]), torch.tensor([[1.0, 1.0, 3.0, 1.0]])  # 2x2 box vs 4x2 box
    assert torch.allclose(box_distill(a, b, "l1"), torch.tensor([0.5]))
    assert torch.allclose(box_distill(a, b, "iou"), torch.tensor([0.5]), atol=1e-6)
    assert torch.allclose(box_distill(a, b, "l1+iou"), torch.tensor([1.0]), atol=1e-6)


@pytest.mark.parametrize("key", list(CHOICES))
def test_config_accepts_exactly_the_registered_values(key):
    for value in CHOICES[key]:
        check_ld_args({**LD_DEFAULTS, key: value})
    with pytest.raises(ValueError, match=f"'{key}=nope' is not one of"):
        check_ld_args({**LD_DEFAULTS, key: "nope"})


def test_the_check_reads_the_registries_the_criterion_uses():
    assert CHOICES["main_weight"] is MAIN_WEIGHTS and CHOICES["kd_region"] is KD_REGIONS
    assert CHOICES["kd_type"] is KD_FORMS and CHOICES["ald_type"] is ANGLE_FORMS and CHOICES["ld_box_type"] is BOX_FORMS
    assert MAIN_WEIGHTS["target"].floor == 1.0 and all(MAIN_WEIGHTS[k].floor < 1e-3 for k in ("student", "teacher"))


def test_every_term_is_weighted_by_real_keys():
    from ultrald.distill.criterion import TERMS, LDDetectionLoss, LDOBBLoss

    assert set(LDOBBLoss.names) == set(TERMS) and set(LDDetectionLoss.names) < set(TERMS)  # OBB adds ald_loss only
    assert all(k in LD_DEFAULTS for term in TERMS.values() for k in term.weights)


def test_a_term_is_added_in_one_place(tmp_path, monkeypatch):
    """Registering a term and naming it is all a new column takes: the criterion computes, normalises and logs it."""
    from types import SimpleNamespace

    from conftest import tiny_yaml
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import DetectionModel

    from ultrald.distill.criterion import TERMS, LDDetectionLoss, Term, by_main
    from ultrald.distill.teacher import TeacherHead, load_teacher

    half = Term(("ld",), "main", lambda b: TERMS["ld_loss"].compute(b) / 2, by_main)
    monkeypatch.setitem(TERMS, "half_ld_loss", half)

    class Extended(LDDetectionLoss):
        names = (*LDDetectionLoss.names, "half_ld_loss")

    torch.manual_seed(0)
    student = DetectionModel(str(tiny_yaml(tmp_path / "s.yaml", 0.0625)), nc=3, verbose=False)
    teacher = DetectionModel(str(tiny_yaml(tmp_path / "t.yaml", 0.125)), nc=3, verbose=False)
    student.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS})
    crit = Extended(student, TeacherHead(load_teacher(teacher)))
    img = torch.rand(2, 3, 64, 64)
    batch = dict(img=img, batch_idx=torch.tensor([0.0, 1.0]), cls=torch.tensor([[0.0], [1.0]]),
                 bboxes=torch.tensor([[0.3, 0.3, 0.3, 0.3], [0.6, 0.6, 0.4, 0.3]]))  # fmt: skip
    loss, items = crit(student(img), batch)
    assert len(loss) == 3 + 4 and list(items)[-4:] == [*LDDetectionLoss.names, "half_ld_loss"]
    assert items["ld_loss"] > 0 and torch.allclose(items["half_ld_loss"], items["ld_loss"] / 2)


def test_the_distillation_config_is_checked_frozen_and_what_the_criterion_reads(tmp_path):
    import dataclasses
    from types import SimpleNamespace

    from conftest import tiny_yaml
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import DetectionModel

    from ultrald.cfg import distill_config
    from ultrald.distill.criterion import LDDetectionLoss, build_criterion
    from ultrald.distill.teacher import TeacherHead, load_teacher

    cfg = distill_config({"ld": 3.0, "epochs": 5})  # Ultralytics' keys are not ultrald's settings
    assert cfg.ld == 3.0 and cfg.kd == LD_DEFAULTS["kd"] and not hasattr(cfg, "epochs")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.ld = 1.0
    with pytest.raises(ValueError, match="'kd_type=x' is not one of"):
        distill_config({"kd_type": "x"})

    torch.manual_seed(0)
    student = DetectionModel(str(tiny_yaml(tmp_path / "s.yaml", 0.0625)), nc=3, verbose=False)
    teacher = DetectionModel(str(tiny_yaml(tmp_path / "t.yaml", 0.125)), nc=3, verbose=False)
    student.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS})  # ld=16 there
    img = torch.rand(2, 3, 64, 64)
    batch = dict(img=img, batch_idx=torch.tensor([0.0, 1.0]), cls=torch.tensor([[0.0], [1.0]]),
                 bboxes=torch.tensor([[0.3, 0.3, 0.3, 0.3], [0.6, 0.6, 0.4, 0.3]]))  # fmt: skip
    head = TeacherHead(load_teacher(teacher))
    _, items = build_criterion(student, head, LDDetectionLoss)(student(img), batch)
    _, off = build_criterion(student, head, LDDetectionLoss, distill_config({"ld": 0.0}))(student(img), batch)
    assert items["ld_loss"] > 0 and off["ld_loss"] == 0  # the config passed down wins over the model's args
