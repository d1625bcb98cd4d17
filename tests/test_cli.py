"""`yolo-ld` argument parsing, help and special commands."""

import pytest

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
        (["train", "ld"], r"'ld' needs a value, i.e. 'ld=1.5'"),
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


def test_cfg_prints_ultralytics_and_ultrald_keys(capsys):
    assert entrypoint(["cfg"]) == 0
    out = capsys.readouterr().out
    assert "lr0:" in out and "ld_temp: 10.0" in out and "dis: 0.0" in out
