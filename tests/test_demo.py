"""`yolo-ld demo` end to end at a tiny size: table, plot, and a teacher reused by the next demo."""

import json

from ultrald.demo import DemoConfig, run


def test_demo_tiny(tmp_path, capsys):
    cfg = DemoConfig(
        epochs=1,
        teacher_epochs=1,
        n_train=16,
        n_val=8,
        imgsz=64,
        batch=8,
        project=str(tmp_path / "demo"),
        data_dir=str(tmp_path / "data"),
    )
    rows = run(cfg)
    assert [r["run"] for r in rows] == ["teacher", "student-plain", "student-ld"]
    assert rows[0]["params"] > rows[1]["params"] == rows[2]["params"] > 0
    assert all(0 <= r["mAP50-95"] <= r["mAP50"] <= 1 and r["seconds"] > 0 for r in rows)
    project = tmp_path / "demo"
    assert (project / "map.png").stat().st_size > 1000
    assert json.loads((project / "results.json").read_text())[2]["run"] == "student-ld"
    assert (project / "results.md").read_text().startswith("| run | params | mAP50-95 |")

    again = run(cfg)  # same settings: the teacher is not trained again
    assert again[0]["run"] == "teacher (reused)" and again[0]["params"] == rows[0]["params"]
