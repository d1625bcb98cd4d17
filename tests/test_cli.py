"""`yolo-ld` argument parsing, help and special commands."""

import pytest

from ultrald.cfg import RECIPES
from ultrald.cli import entrypoint, parse_args


def test_parse_keys_values_modes_and_bare_booleans(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("ld: 2.0\nkd_temp: 4.0\nepochs: 3\n")
    mode, o = parse_args(
        [
            "train",
            "model=yolov8n.yaml",
            "teacher=t.pt",
            f"cfg={recipe}",
            "epochs=5",
            "ld_temp = 8",
            "--vlr=False",
            "obb",
            "amp",
        ]
    )
    assert mode == "train"
    assert o == {
        "model": "yolov8n.yaml",
        "teacher": "t.pt",
        "ld": 2.0,
        "kd_temp": 4.0,
        "epochs": 5,
        "ld_temp": 8,
        "vlr": False,
        "task": "obb",
        "amp": True,
    }


@pytest.mark.parametrize(
    "argv, match",
    [
        (["train", "teachr=t.pt"], r"'teachr' is not a valid yolo-ld argument. Similar: \['teacher'"),
        (["train", "ld"], r"'ld' needs a value, i.e. 'ld=16.0'"),
        (["train", "bogus"], "'bogus' is not a valid yolo-ld argument"),
    ],
)
def test_bad_arguments(argv, match):
    with pytest.raises(SyntaxError, match=match):
        parse_args(argv)


def test_errors_exit_2_with_a_message(capsys):
    assert entrypoint(["train", "model=yolov8n.yaml", "teacher=missing.pt", "data=x.yaml"]) == 2
    assert "teacher='missing.pt' does not exist" in capsys.readouterr().err
    assert entrypoint(["model=yolov8n.yaml"]) == 2
    assert "a mode is required" in capsys.readouterr().err
    assert entrypoint(["predict", "model=missing.pt"]) == 2
    assert "model='missing.pt' does not exist" in capsys.readouterr().err


def test_help_lists_every_distillation_key_with_its_default(capsys):
    from ultrald.cfg import LD_DEFAULTS

    assert entrypoint(["help"]) == 0
    out = capsys.readouterr().out
    for k, v in LD_DEFAULTS.items():
        assert f"{k}={v}" in out
    for argv in (["train", "--help"], ["compare", "-h"], ["val", "help"]):  # help after a mode, as `yolo` takes it
        assert entrypoint(argv) == 0 and capsys.readouterr().out == out


def test_cfg_prints_ultralytics_and_ultrald_keys(capsys):
    assert entrypoint(["cfg"]) == 0
    out = capsys.readouterr().out
    assert "lr0:" in out and "ld_temp: 1.0" in out and "dis: 0.0" in out


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_hold_only_valid_keys(name):
    from ultrald.cfg import check_ld_args, ld_cfg

    mode, o = parse_args(["train", f"cfg={name}", "teacher=t.pt", "epochs=3"])
    assert mode == "train" and o["teacher"] == "t.pt" and o["epochs"] == 3  # the command line wins
    assert "model" in o or name == "minimal"  # a method recipe, for any pair
    check_ld_args(ld_cfg(o))
    assert parse_args(["train", f"cfg=cfg/{name}.yaml"])[1] == parse_args(["train", f"cfg={name}"])[1]  # old paths


def test_unknown_recipe_is_a_one_line_error(capsys):
    assert entrypoint(["train", "cfg=nope", "model=yolov8n.yaml"]) == 2
    assert "cfg='nope' is neither a recipe" in capsys.readouterr().err
