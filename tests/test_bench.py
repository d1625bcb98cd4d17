"""bench/bench.py end to end at a tiny size: every run trains, and the table is well formed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ANY_TEACHER

BENCH = Path(__file__).parent.parent / "bench" / "bench.py"


@pytest.mark.slow
def test_bench_tiny(tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(BENCH),
        "--tiny",
        "--configs",
        "plain,fi_best,ld,full",
        "--seeds",
        "0",
        "1",
        "--out",
        str(out),
        "--data-dir",
        str(tmp_path / "data"),
        "--jobs",
        "1",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = (out / "results.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| run |"))
    rows = [line for line in lines[header + 2 :] if line.startswith("|")]
    assert [r.split("|")[1].strip() for r in rows] == ["plain", "fi_best (dis=0.25)", "ld", "full"]
    assert all(len(r.split("|")) == len(lines[header].split("|")) for r in rows)
    table = json.loads((out / "results.json").read_text())["table"]
    assert set(table) == {"plain", "fi_best", "ld", "full"}
    for row in table.values():
        assert len(row["per_seed"]) == 2 and row["sec_per_iter"] > 0 and row["params"] > 0
    # a distilled student is the plain student: same parameters, FLOPs and weight bytes
    for key in ("params", "gflops", "weights_bytes"):
        assert table["full"][key] == table["plain"][key] == table["fi_best"][key], key
    assert (out / "results.png").stat().st_size > 1000


def test_grad_scale_reports_every_term_on_the_logits_it_trains(untrained_teacher_pt, shapes_yaml, tmp_path):
    import torch

    teacher_pt = untrained_teacher_pt  # any valid teacher: the test is about which logits each term reaches
    from bench.grad_scale import grad_scale

    ckpt = torch.load(teacher_pt, weights_only=False)  # a student that is not the teacher: its weights perturbed
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ckpt["model"].parameters():
            p.add_((torch.randn(p.shape, generator=g) * 0.05).to(p.dtype))
    student = tmp_path / "student.pt"
    torch.save(ckpt, student)
    rows = grad_scale(str(student), str(teacher_pt), str(shapes_yaml), batches=1, imgsz=64, batch=4)
    assert list(rows) == ["box_loss", "cls_loss", "dfl_loss", "ld_loss", "vlr_loss", "kd_loss"]
    for name in ("dfl_loss", "ld_loss"):  # edge distributions only
        assert rows[name][1] > 0 and rows[name][2] == 0, name
    for name in ("cls_loss", "kd_loss"):  # class logits only
        assert rows[name][1] == 0 and rows[name][2] > 0, name


@pytest.mark.slow
def test_cost_splits_a_step_into_its_labelled_parts(teacher_pt, shapes_yaml, student_yaml, tmp_path):
    from bench.cost import cost

    r = cost(str(teacher_pt), warmup=1, data=str(shapes_yaml), model=str(student_yaml), imgsz=64, batch=8,
             project=str(tmp_path), **ANY_TEACHER)  # fmt: skip
    assert r["iterations"] == 5  # 48 images in batches of 8, the first one left out
    for part in ("ultrald teacher forward", "ultralytics loss", "ultrald terms", "ultrald VLR region", "ultrald LD",
                 "ultrald KD"):  # fmt: skip
        assert r[part] > 0, part
    # the parts of ultrald's terms lie inside it, and the labelled parts inside the step
    assert r["ultrald VLR region"] + r["ultrald LD"] + r["ultrald KD"] <= r["ultrald terms"]
    assert 0 < r["student"] < r["step"]


def _results(folder: Path, teacher: float, table: dict[str, list[float]]) -> Path:
    """A bench results.json with per-seed mAP50-95 `table` (the other columns copy it)."""
    folder.mkdir(parents=True)
    rows = {c: {"per_seed": v, "per_seed_last5": v, "per_seed_mAP50": v} for c, v in table.items()}
    setup = {"n_train": 4, "n_val": 2, "imgsz": 64, "epochs": 1, "teacher_epochs": 2}
    results = {"setup": setup, "teacher": {"mAP50-95": teacher}, "table": rows, "best_dis": 3.0, "seeds": [0, 1]}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_report_pairs_by_seed_and_takes_the_worst_case(tmp_path):
    a = _results(tmp_path / "a", 0.5, {"plain": [0.1, 0.3], "full": [0.3, 0.4], "extra": [0.2, 0.2]})
    b = _results(tmp_path / "b", 0.6, {"plain": [0.2, 0.2], "full": [0.1, 0.4]})
    held = _results(tmp_path / "h", 0.4, {"plain": [0.0, 0.2], "full": [0.2, 0.3]})
    cmd = [sys.executable, str(BENCH.parent / "report.py"), str(a), str(b), str(held), "--held-out", "h"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    tuned, held_out = run.stdout.split("### Held out")
    # gap paired by seed: a/full (0.3-0.1)/(0.5-0.1)=0.5, (0.4-0.3)/(0.5-0.3)=0.5; b/full -0.25, 0.5
    assert "| full | 0.350 ± 0.071 | 0.300 / 0.400 | 0.350 ± 0.071 | 0.350 ± 0.071 | 0.500 ± 0.000 |" in tuned
    assert "| b | +0.050 (1/2) |" in tuned  # full - plain on b: -0.1, +0.2
    assert "| full | +0.50 | +0.13 | +0.13 | -0.25 |" in tuned  # worst dataset mean, worst seed
    assert "| extra | -0.12 | — | -0.12 (on 1 of 2) | -0.50 (on 1 of 2) |" in tuned  # gaps +0.25, -0.5; b lacks it
    assert "| h | +0.150 (2/2) |" in held_out
    assert "| full | +0.50 | +0.50 | +0.50 |" in held_out  # gaps 0.2/0.4, 0.1/0.2
    # a seed whose plain student reached the teacher has no gap to recover: left out, and said so
    long = _results(tmp_path / "long", 0.5, {"plain": [0.2, 0.6], "full": [0.35, 0.7]})
    run = subprocess.run([*cmd[:2], str(long)], capture_output=True, text=True, timeout=60)
    assert (
        "| full | 0.525 ± 0.247 | 0.350 / 0.700 | 0.525 ± 0.247 | 0.525 ± 0.247 | 0.500 ± 0.000 (1 seeds) |"
        in run.stdout
    )
    assert "| full | +0.50 | +0.50 | +0.50 |" in run.stdout
