"""`yolo-ld demo` end to end at a tiny size: `compare` on the drawn shapes with the shapes recipe, then reused."""

import json

import pytest
import yaml

from ultrald.cfg import recipe
from ultrald.demo import DemoConfig, run


@pytest.mark.slow
def test_demo_tiny(tmp_path):
    cfg = DemoConfig(
        epochs=1,
        teacher_epochs=1,
        teacher_min_map=0,  # one epoch on 16 images teaches nothing measurable
        n_train=16,
        n_val=8,
        imgsz=64,
        batch=8,
        project=str(tmp_path / "demo"),
        data_dir=str(tmp_path / "data"),
    )
    report = run(cfg)
    project = tmp_path / "demo"
    assert [(r["kind"], r["seed"]) for r in report["runs"]] == [("ultrald", 0), ("plain", 0)]
    assert report["teacher"]["params"] > report["runs"][0]["params"] == report["runs"][1]["params"] > 0
    assert all(0 <= r["mAP50-95"] <= r["mAP50"] <= 1 and r["seconds"] > 0 for r in report["runs"])
    assert (project / "compare.png").stat().st_size > 1000
    assert json.loads((project / "compare.json").read_text())["runs"][0]["kind"] == "ultrald"
    assert (project / "compare.md").read_text().startswith("| run | seed | params | mAP50-95 |")

    # every run of the demo, the teacher's too, trains with the shapes recipe (the benchmark's settings)
    shapes = recipe("shapes")
    for args_yaml in [*project.glob("*/args.yaml")]:
        args = yaml.safe_load(args_yaml.read_text())
        assert (args["optimizer"], args["lr0"], args["warmup_epochs"]) == (
            shapes["optimizer"], shapes["lr0"], shapes["warmup_epochs"]
        ), args_yaml
        assert (args["imgsz"], args["batch"], args["nbs"]) == (64, 8, 8), args_yaml
    assert len(list(project.glob("*/args.yaml"))) == 3  # teacher stage, distilled, plain

    again = run(cfg)  # same settings: nothing is trained again
    assert again["runs"] == report["runs"] and again["teacher"] == report["teacher"]
