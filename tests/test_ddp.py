"""Multi-GPU paths without GPUs: the distillation terms do not depend on the number of ranks (2 gloo CPU processes),
and the DDP launch script Ultralytics generates for an LDTrainer round-trips in a fresh process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import IMGSZ

DISTILL = ("ld_loss", "vlr_loss", "kd_loss")


def setup_models(yaml_path: str):
    """The same eval-mode student and perturbed frozen teacher in every process (seeded)."""
    from types import SimpleNamespace

    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import DetectionModel

    from ultrald.cfg import LD_DEFAULTS
    from ultrald.distill.teacher import TeacherHead, load_teacher

    torch.manual_seed(0)
    student = DetectionModel(yaml_path, nc=3, verbose=False)
    teacher = DetectionModel(yaml_path, nc=3, verbose=False)
    teacher.load_state_dict(student.state_dict())
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
    student.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **LD_DEFAULTS})
    return student.eval(), TeacherHead(load_teacher(teacher))  # eval: per-image forward, same with any batch split


def full_batch():
    """4 images with 2, 1, 3 and 1 boxes of 3 classes."""
    g = torch.Generator().manual_seed(0)
    idx = torch.tensor([0, 0, 1, 2, 2, 2, 3], dtype=torch.float32)
    xy, wh = torch.rand(7, 2, generator=g) * 0.5 + 0.25, torch.rand(7, 2, generator=g) * 0.3 + 0.1
    cls = torch.randint(0, 3, (7, 1), generator=g).float()
    return {
        "img": torch.rand(4, 3, IMGSZ, IMGSZ, generator=g),
        "batch_idx": idx,
        "cls": cls,
        "bboxes": torch.cat((xy, wh), 1),
    }


def images(batch, keep):
    """The sub-batch of the images in `keep`, renumbered."""
    sel = torch.isin(batch["batch_idx"], torch.tensor(keep, dtype=torch.float32))
    remap = {k: i for i, k in enumerate(keep)}
    return {
        "img": batch["img"][keep],
        "batch_idx": torch.tensor([remap[int(i)] for i in batch["batch_idx"][sel]]),
        "cls": batch["cls"][sel],
        "bboxes": batch["bboxes"][sel],
    }


def distill_items(student, teacher, batch):
    from ultrald.distill.criterion import LDDetectionLoss

    _, items = LDDetectionLoss(student, teacher)(student(batch["img"]), batch)
    return {k: items[k].item() for k in DISTILL}


def worker(rank, world, init_file, yaml_path, out_dir):
    os.environ.setdefault("YOLO_OFFLINE", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        student, teacher = setup_models(yaml_path)
        items = distill_items(student, teacher, images(full_batch(), [rank * 2, rank * 2 + 1]))
        Path(out_dir, f"{rank}.json").write_text(json.dumps(items))
        dist.barrier()  # no rank tears gloo down while the other still talks to it (a SIGABRT in CI once)
    finally:
        dist.destroy_process_group()


def test_two_ranks_average_to_the_full_batch(tmp_path, student_yaml):
    single = distill_items(*setup_models(str(student_yaml)), full_batch())
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(student_yaml), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    for k in DISTILL:
        assert single[k] > 0
        assert (ranks[0][k] + ranks[1][k]) / 2 == pytest.approx(single[k], rel=1e-4), k
    # without the all-reduced normaliser the halves would not average to the whole (the images differ in boxes)
    local = [distill_items(*setup_models(str(student_yaml)), images(full_batch(), keep)) for keep in ([0, 1], [2, 3])]
    assert (local[0]["ld_loss"] + local[1]["ld_loss"]) / 2 != pytest.approx(single["ld_loss"], rel=1e-3)


def test_ddp_launch_script_round_trips(tmp_root, untrained_teacher_pt, student_yaml, shapes_yaml):
    """Ultralytics' generated DDP script rebuilds the LDTrainer from the pickled class and args in a new process."""
    from ultralytics.utils.dist import generate_ddp_file

    from ultrald import LDTrainer

    trainer = LDTrainer(
        overrides=dict(
            model=str(student_yaml),
            teacher=str(untrained_teacher_pt),
            data=str(shapes_yaml),
            epochs=1,
            imgsz=IMGSZ,
            ld=0.7,
            vlr_scale=4.0,
            project=str(tmp_root / "runs"),
            name="ddp",
            exist_ok=True,
        )
    )
    script = Path(generate_ddp_file(trainer))
    try:
        code = script.read_text().replace(
            "    trainer.train()",
            "    a = trainer.args\n"
            "    print('REBUILT', type(trainer).__module__, type(trainer).__name__,\n"
            "          a.teacher, a.ld, a.vlr_scale, a.dis)",
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=300)
    finally:
        script.unlink(missing_ok=True)
        script.with_suffix(".pt").unlink(missing_ok=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"REBUILT ultrald.engine.trainer LDTrainer {untrained_teacher_pt} 0.7 4.0 0.0" in out.stdout


def test_in_memory_teacher_refused_for_multi_gpu(shapes_yaml, student_yaml, untrained_teacher_pt, tmp_path):
    from ultralytics import YOLO

    from ultrald import LDTrainer
    from ultrald.distill.teacher import TeacherError

    trainer = LDTrainer(
        overrides=dict(
            model=str(student_yaml),
            teacher=YOLO(str(untrained_teacher_pt)),
            data=str(shapes_yaml),
            project=str(tmp_path),
        )
    )
    trainer.ddp = True  # what device=0,1 sets on a machine with 2 GPUs
    with pytest.raises(TeacherError, match="multi-GPU training needs teacher= as a checkpoint path"):
        trainer.train()
