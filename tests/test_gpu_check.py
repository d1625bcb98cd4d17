"""bench/gpu_check.py at tiny sizes on the CPU (bfloat16 autocast as AMP): every configuration timed, the numerics
block complete and passing; and its numerics check failing on each kind of broken record."""

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "bench" / "gpu_check.py"
TERMS = ("ld_loss", "vlr_loss", "kd_loss")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """The JSON of one tiny run of the script (a subprocess, with conftest's offline single-thread environment)."""
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--out", str(out)]
    run = subprocess.run(cmd, check=False, capture_output=True, text=True, env=os.environ, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def gpu_check():
    """The script as a module of the bench package, for its check function."""
    from bench import gpu_check

    return gpu_check


def test_every_configuration_timed(report):
    assert set(report["runs"]) == {"plain", "fi", "ultrald"}
    for runs in report["runs"].values():
        assert set(runs) == {"fp32", "amp"}
        for r in runs.values():
            assert "error" not in r
            assert r["s_per_iter"] > 0 and r["s_per_iter_median"] > 0 and r["iterations"] == 2
            assert r["peak_mem_allocated"] is None  # CPU
            assert r["loss_items"] and all(math.isfinite(v) for v in r["loss_items"].values())
    assert set(TERMS) <= set(report["runs"]["ultrald"]["amp"]["loss_items"])
    assert "dis_loss" in report["runs"]["fi"]["amp"]["loss_items"]  # Ultralytics' feature term really ran
    for key in ("fp32", "amp"):
        assert set(report["ratios"][key]) == {"fi/plain", "ultrald/plain"}
        assert all(v > 0 for v in report["ratios"][key].values())
    assert report["target"]["ratio"] == report["ratios"]["amp"]["ultrald/plain"]
    assert report["target"]["met"] is None  # the target is for CUDA only
    s = report["settings"]
    assert s["device"] == "cpu" and s["torch"] and s["ultralytics"] and s["amp_dtype"] == "torch.bfloat16"
    assert s["accumulate"] == 1 and report["errors"] == []


def test_numerics_block(report):
    n = report["numerics"]
    assert n["passed"] and n["checks"] and all(n["checks"].values())
    assert n["amp"]["teacher_dtypes"] == {"boxes": "torch.bfloat16", "scores": "torch.bfloat16"}
    assert n["fp32"]["teacher_dtypes"] == {"boxes": "torch.float32", "scores": "torch.float32"}
    for record in (n["fp32"], n["amp"]):
        assert {f"term {k}" for k in TERMS} <= set(record["dtypes"])
        assert set(record["dtypes"].values()) == {"torch.float32"}
        assert {*TERMS, "total"} <= set(record["values"])
        assert all(math.isfinite(v) for v in record["values"].values())
    assert n["fp32"]["values"] != n["amp"]["values"]  # autocast really changed the computation
    assert 0 < n["rtol"] < 0.2 and set(n["rel_diff"]) == set(n["fp32"]["values"])


def failed(gpu_check, ref: dict, amp: dict, half="torch.bfloat16", rtol=0.15) -> set[str]:
    """The names of the checks that fail on these records."""
    result = gpu_check.check_numerics(ref, amp, half, rtol)
    assert result["passed"] == (not any(not ok for ok in result["checks"].values()))
    return {k for k, ok in result["checks"].items() if not ok}


def test_numerics_check_fails_on_broken_records(report, gpu_check):
    ref, amp = report["numerics"]["fp32"], report["numerics"]["amp"]
    assert failed(gpu_check, ref, amp) == set()

    nan = copy.deepcopy(amp)
    nan["values"]["kd_loss"] = math.nan
    assert failed(gpu_check, ref, nan) == {"every term finite", "kd_loss within rtol"}

    half_term = copy.deepcopy(amp)
    half_term["dtypes"]["term ld_loss"] = "torch.bfloat16"
    assert failed(gpu_check, ref, half_term) == {"every term float32"}

    fp32_teacher = copy.deepcopy(amp)
    fp32_teacher["teacher_dtypes"]["scores"] = "torch.float32"
    assert failed(gpu_check, ref, fp32_teacher) == {"teacher outputs in torch.bfloat16 under AMP"}

    skipped = copy.deepcopy(amp)
    skipped["dtypes"] = {k: v for k, v in skipped["dtypes"].items() if not k.startswith("term ")}
    assert failed(gpu_check, ref, skipped) == {"every distillation term computed"}

    off = {**copy.deepcopy(amp), "values": dict(ref["values"])}  # the float32 values, then the total 5 % off
    off["values"]["total"] *= 1.05
    assert failed(gpu_check, ref, off) == set()  # within bfloat16's 15.6 %
    assert failed(gpu_check, ref, off, rtol=0.0195) == {"total within rtol"}  # not within float16's 1.95 %
