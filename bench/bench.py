"""Side-by-side distillation benchmark on an embedded synthetic dataset (run by hand; results go to bench/README.md).

The same student, the same data, epochs, batch, image size and seeds, trained:
    plain      Ultralytics, no teacher
    fi         Ultralytics' own feature imitation (distill_model=teacher) at its default dis=6.0
    fi_best    the same at the best dis of a sweep on the first seed, its default included (the peer, tuned fairly)
    ld         LD on the main region only
    ld_vlr     LD on the main region and the VLR
    full       LD + VLR + classification KD (ultrald's defaults; since 0.5 distill_schedule=auto, cosine at the teacher's
               schedule: a `full` run cached before 0.5 ran constant, and the cache does not see a default change)
    full_const full with the terms at constant weight (distill_schedule=constant): `full` before 0.5
    full_fi    full + Ultralytics' feature imitation at the best dis
    minimal    the minimal logit-distillation recipe (cfg=minimal): LD and KD on the positives, student-score weights
    full_o2m   full on the one-to-many branch only (ld_o2o=0), for end-to-end students (YOLOv10, YOLO26)
    full_own   full with the student's own label assignment, pinned (assign=student: the default)
    full_lad   full with the teacher's label assignment (LAD) for the whole run (assign=teacher)
    full_lad_half  the same, handed back to the student's own assignment after half the epochs (assign_until=0.5)
    full_mix   full with the assignment ranked by the mean of the teacher's and the student's predictions (assign=mix)
    full_cos   full with every term decayed along a half cosine to 0.01 (distill_schedule=cosine, YOLOv6)
    full_close full with the terms off for the last close_mosaic epochs (distill_schedule=close_mosaic, RTMDet)
    full_branch     reg_max=1 students: full + LD on a training-only DFL branch (dfl_branch=True), box-level term kept
    full_branch_kl  the same without the box-level term (ld_box=0): LD on the branch only
    full_box2       reg_max=1 students: full with the box-level term at ld_box=2 (default 0.5)

    python bench/bench.py                          # the documented run (hours on a 2-core CPU)
    python bench/bench.py --tiny                   # a minute: checks the pipeline end to end
    python bench/bench.py --configs plain,full --seeds 0 --jobs 1
    python bench/bench.py --data digits            # any embedded dataset: shapes, shapes-obb, digits, crowd, photo ...
    python bench/bench.py --data shapes-obb --configs plain,full,full_ald_l1,full_no_ald   # the angle terms
    python bench/bench.py --configs plain,full,t2 --variant t2=full:ld_temp=2,ld=8   # a variant of a config, for tuning

Each run is its own subprocess (clean timing and peak memory); `--jobs` runs that many at once. Results are cached per
run in OUT/runs/<config>-s<seed>/summary.json, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in {None, ""}:  # run as a script (python bench/X.py): import its package, the repository's bench/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ultrald.cfg import LD_DEFAULTS, recipe

SHAPES = recipe("shapes")  # the training settings, shared with the demo (ultrald/cfg/recipes/shapes.yaml)
FI_DEFAULT_DIS = 6.0  # Ultralytics' default feature-imitation weight
CONFIGS = {  # name -> (trainer, extra overrides)
    "plain": ("plain", {}),
    "fi": ("fi", {"dis": FI_DEFAULT_DIS}),
    "fi_best": ("fi", {}),  # dis from the sweep
    "ld": ("ld", {"kd": 0.0, "vlr": False}),
    "ld_vlr": ("ld", {"kd": 0.0}),
    "full": ("ld", {}),
    "full_fi": ("ld", {}),  # dis from the sweep
    # OBB datasets only: the angle term
    "full_ald_l1": ("ld", {"ald_type": "l1"}),
    "full_no_ald": ("ld", {"ald": 0.0}),
    "minimal": ("ld", {k: v for k, v in recipe("minimal").items() if k != "dis"}),
    "full_o2m": ("ld", {"ld_o2o": 0.0}),
    # teacher-guided label assignment (assign=, assign_until=)
    "full_own": ("ld", {"assign": "student"}),
    "full_lad": ("ld", {"assign": "teacher"}),
    "full_lad_half": ("ld", {"assign": "teacher", "assign_until": 0.5}),
    "full_mix": ("ld", {"assign": "mix"}),
    # the terms' schedule through the run (distill_schedule=)
    "full_cos": ("ld", {"distill_schedule": "cosine"}),
    "full_const": ("ld", {"distill_schedule": "constant"}),
    "full_close": ("ld", {"distill_schedule": "close_mosaic"}),
    # reg_max=1 students (YOLO26): the training-only DFL branch (dfl_branch=) and the box-level term's weight (ld_box=)
    "full_branch": ("ld", {"dfl_branch": True}),
    "full_branch_kl": ("ld", {"dfl_branch": True, "ld_box": 0.0}),
    "full_box2": ("ld", {"ld_box": 2.0}),
}
OBB_ONLY = {"full_ald_l1", "full_no_ald"}
# run when named: the one-to-one ablation of end-to-end students, the assignment ablations
OPTIONAL = {"full_o2m", "full_own", "full_lad", "full_lad_half", "full_mix", "full_cos", "full_const", "full_close"}
OPTIONAL |= {"full_branch", "full_branch_kl", "full_box2"}


# each dataset's size in the bench: images of its own side, as many as a 2-core CPU trains in minutes per run
BENCH_DATA = {
    "shapes": dict(imgsz=128, n_train=400, n_val=150),
    "shapes-obb": dict(imgsz=128, n_train=400, n_val=150),
    "digits": dict(imgsz=160, n_train=400, n_val=150),
    "crowd": dict(imgsz=192, n_train=400, n_val=150),
    "photo": dict(imgsz=160, n_train=400, n_val=150),
    "crowd-obb": dict(imgsz=192, n_train=400, n_val=150),
}


@dataclass
class Setup:
    """The benchmark's fixed settings (the same for every run); 0 sizes are the dataset's own (BENCH_DATA)."""

    data: str = "shapes"  # a benchmark dataset (bench.synthetic.SYNTHETIC); its task picks the models' head
    task: str = "detect"  # set from the dataset
    teacher_model: str = "yolov8-w25.yaml"  # YOLOv8n's size; on an OBB dataset the -obb counterpart
    student_model: str = SHAPES["model"]  # half its width
    epochs: int = SHAPES["epochs"]  # the short schedule; the teacher's own is --epochs 40
    teacher_epochs: int = 40
    n_train: int = 0
    n_val: int = 0
    imgsz: int = 0
    batch: int = SHAPES["batch"]
    optimizer: str = SHAPES["optimizer"]
    lr0: float = SHAPES["lr0"]
    warmup_epochs: float = SHAPES["warmup_epochs"]
    nbs: int = SHAPES["nbs"]  # = batch: an optimizer step every batch (Ultralytics' 64 would accumulate several)
    device: str = "cpu"
    threads: int = 1


def add_variant(text: str) -> str:
    """Register a variant 'NAME=BASE:key=value,key=value' of the config BASE in CONFIGS and return its name."""
    from ultralytics.cfg import smart_value

    name, sep, rest = text.partition("=")
    base, _, pairs = rest.partition(":")
    if not sep or base not in CONFIGS or name in CONFIGS:
        raise SystemExit(f"--variant '{text}': expected NAME=BASE:key=value,... with BASE one of {list(CONFIGS)}")
    overrides = dict(CONFIGS[base][1])
    for pair in filter(None, pairs.split(",")):
        k, eq, v = pair.partition("=")
        if not eq:
            raise SystemExit(f"--variant '{text}': '{pair}' is not key=value")
        overrides[k] = smart_value(v)
    CONFIGS[name] = (CONFIGS[base][0], overrides)
    return name


def train_args(setup: Setup, data: str, out: Path, name: str, model: str, epochs: int, seed: int) -> dict:
    """Ultralytics train overrides shared by every run."""
    return dict(
        task=setup.task,
        model=model,
        data=data,
        epochs=epochs,
        imgsz=setup.imgsz,
        batch=setup.batch,
        device=setup.device,
        optimizer=setup.optimizer,
        lr0=setup.lr0,
        warmup_epochs=setup.warmup_epochs,
        nbs=setup.nbs,
        seed=seed,
        deterministic=False,
        workers=0,
        plots=False,
        project=str(out / "runs"),
        name=name,
        exist_ok=True,
    )


def run_one(spec: dict) -> dict:
    """Train one run in this process (called in a subprocess) and return its summary."""
    import torch

    torch.set_num_threads(spec["threads"])
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.models.yolo.obb import OBBTrainer
    from ultralytics.utils.torch_utils import get_flops

    from ultrald import trainer_for
    from ultrald.compare import read_results
    from ultrald.distill.criterion import schedule_criterion

    if spec["trainer"] == "val":  # a given teacher: evaluate it on the bench's val split
        from ultralytics import YOLO

        a = spec["args"]
        model = YOLO(spec["teacher"])
        m = model.val(data=a["data"], imgsz=a["imgsz"], batch=a["batch"], device=a["device"], plots=False)
        keys = ("metrics/mAP50-95(B)", "metrics/mAP50(B)")
        return {
            "mAP50-95": m.results_dict[keys[0]],
            "mAP50": m.results_dict[keys[1]],
            "params": sum(p.numel() for p in model.model.parameters()),
            "weights": str(Path(spec["teacher"]).resolve()),
        }
    obb = spec["args"].get("task") == "obb"
    plain_cls = OBBTrainer if obb else DetectionTrainer
    trainer_cls = trainer_for("obb" if obb else "detect") if spec["trainer"] == "ld" else plain_cls
    overrides = dict(spec["args"])
    if spec["trainer"] == "fi":
        overrides["distill_model"] = spec["teacher"]
    elif spec["trainer"] == "ld":  # the bench scores its teacher itself (its 'val' run), and a --tiny teacher scores 0
        overrides.update(teacher=spec["teacher"], teacher_min_map=0.0)
    trainer = trainer_cls(overrides=overrides)
    if spec["trainer"] == "ld":  # assign_until's hand-over, whether or not the trainer registers it (idempotent)
        trainer.add_callback("on_train_epoch_start", schedule_criterion)
    stamps: list[float] = []
    trainer.add_callback("on_train_batch_end", lambda t: stamps.append(time.perf_counter()))
    trainer.add_callback("on_train_epoch_start", lambda t: stamps.append(float("nan")))  # epoch boundary
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    steps = [b - a for a, b in zip(stamps, stamps[1:]) if a == a and b == b]  # within epochs, skipping their first
    rows = read_results(Path(trainer.save_dir) / "results.csv")
    metrics = trainer.validator.metrics.results_dict
    best = Path(trainer.best)
    from ultralytics.nn.tasks import load_checkpoint

    student = load_checkpoint(best)[0]
    cuda = torch.cuda.is_available() and "cpu" not in str(spec["args"]["device"])
    return {
        "mAP50-95": metrics["metrics/mAP50-95(B)"],  # OBB metrics carry the same keys
        "mAP50": metrics["metrics/mAP50(B)"],
        "curve": [r["metrics/mAP50-95(B)"] for r in rows],
        "sec_per_iter": statistics.median(steps) if steps else float("nan"),
        "train_seconds": seconds,
        "peak_mem_mb": (torch.cuda.max_memory_allocated() if cuda else peak_rss()) / 2**20,
        "params": sum(p.numel() for p in student.parameters()),
        "gflops": get_flops(student, spec["args"]["imgsz"]),
        "ckpt_bytes": best.stat().st_size,
        "weights_bytes": len(serialized(student.half().state_dict())),
        "save_dir": str(trainer.save_dir),
    }


def serialized(obj) -> bytes:
    """`obj` as torch.save writes it."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def peak_rss() -> int:
    """Peak resident memory of this process in bytes."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def launch(spec: dict, out: Path) -> dict:
    """Run one spec in a subprocess unless its summary is cached; return the summary."""
    run_dir = out / "runs" / spec["args"]["name"]
    summary_file = run_dir / "summary.json"
    if summary_file.is_file() and json.loads(summary_file.read_text()).get("spec") == spec:
        return json.loads(summary_file.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    partial = run_dir / "summary.partial.json"
    cmd = [sys.executable, __file__, "--one", json.dumps(spec), "--result", str(partial)]
    log = run_dir.with_suffix(".log")
    print(f"bench: {spec['args']['name']} ...", flush=True)
    with open(log, "w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0 or not partial.is_file():
        raise RuntimeError(f"run {spec['args']['name']} failed (exit {code}), see {log}")
    summary = {"spec": spec, **json.loads(partial.read_text())}
    summary_file.write_text(json.dumps(summary, indent=1))
    partial.unlink()
    print(f"bench: {spec['args']['name']}: mAP50-95 {summary['mAP50-95']:.4f}", flush=True)
    return summary


def spec_for(setup: Setup, data: str, out: Path, teacher: str, config: str, seed: int, **extra) -> dict:
    """The subprocess spec of one run."""
    trainer, overrides = CONFIGS[config]
    name = f"{config}-s{seed}" + "".join(f"-{k}{v}" for k, v in extra.items())
    args = {**train_args(setup, data, out, name, setup.student_model, setup.epochs, seed), **overrides, **extra}
    if trainer == "ld":  # named in the spec, so that a run cached under the old default (assign=student) is not reused
        args.setdefault("assign", LD_DEFAULTS["assign"])
    return {"trainer": trainer, "teacher": teacher, "args": args, "threads": setup.threads}


def last_epochs(run: dict, n: int = 5) -> float:
    """Mean val mAP50-95 of a run's last `n` epochs: steadier than one epoch's on a small benchmark."""
    return statistics.mean(run["curve"][-n:])


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value, NaN when a value is)."""
    if any(v != v for v in values):
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def report(setup: Setup, results: dict, teacher: dict, best_dis: float | None, out: Path, seeds: list[int]) -> str:
    """Write results.json, results.md and results.png; return the markdown."""
    plain = statistics.mean(r["mAP50-95"] for r in results["plain"])
    gap = teacher["mAP50-95"] - plain
    lines = [
        f"teacher `{teacher.get('weights') or setup.teacher_model}`: "
        f"mAP50-95 {teacher['mAP50-95']:.3f}, mAP50 {teacher['mAP50']:.3f}, "
        f"{teacher['params']:,} params; student `{setup.student_model}`; seeds {seeds}; "
        f"best dis of the sweep: {best_dis}",
        "",
        "| run | mAP50-95 | mAP50 | last-5-epoch mAP50-95 | gap recovered | s/iter | peak MB | params | GFLOPs "
        "| weights bytes | ckpt bytes |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    table = {}
    for name, runs in results.items():
        m, s = mean_std([r["mAP50-95"] for r in runs])
        m50, s50 = mean_std([r["mAP50"] for r in runs])
        l5, sl5 = mean_std([last_epochs(r) for r in runs])
        rec = [(r["mAP50-95"] - plain) / gap if gap > 0 else float("nan") for r in runs]
        rm, rs = mean_std(rec)
        it = statistics.mean(r["sec_per_iter"] for r in runs)
        mem = statistics.mean(r["peak_mem_mb"] for r in runs)
        r0 = runs[0]
        label = f"{name} (dis={best_dis})" if name in {"fi_best", "full_fi"} else name
        lines.append(
            f"| {label} | {m:.4f} ± {s:.4f} | {m50:.4f} ± {s50:.4f} | {l5:.4f} ± {sl5:.4f} | "
            f"{rm:+.2f} ± {rs:.2f} | {it:.3f} | {mem:.0f} | {r0['params']:,} | {r0['gflops']:.2f} | "
            f"{r0['weights_bytes']:,} | {r0['ckpt_bytes']:,} |"
        )
        table[name] = {
            "mAP50-95": [m, s],
            "mAP50": [m50, s50],
            "last5_mAP50-95": [l5, sl5],
            "gap_recovered": [rm, rs],
            "sec_per_iter": it,
            "peak_mem_mb": mem,
            "params": r0["params"],
            "gflops": r0["gflops"],
            "weights_bytes": r0["weights_bytes"],
            "ckpt_bytes": r0["ckpt_bytes"],
            "per_seed": [r["mAP50-95"] for r in runs],
            "per_seed_mAP50": [r["mAP50"] for r in runs],
            "per_seed_last5": [last_epochs(r) for r in runs],
            "runs": [r["save_dir"] for r in runs],
        }
    md = "\n".join(lines) + "\n"
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(
        json.dumps(
            {
                "setup": asdict(setup),
                "seeds": seeds,
                "teacher": teacher,
                "best_dis": best_dis,
                "table": table,
                "machine": machine(),
            },
            indent=1,
        )
    )
    plot(results, teacher, out / "results.png", f"{setup.data}, {setup.student_model}")
    return md


def plot(results: dict, teacher: dict, file: Path, title: str) -> None:
    """Mean mAP50-95 per epoch of each configuration, with the teacher's final value as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), tight_layout=True)
    for name, runs in results.items():
        curves = [r["curve"] for r in runs]
        n = min(len(c) for c in curves)
        ax.plot(range(1, n + 1), [statistics.mean(c[i] for c in curves) for i in range(n)], label=name)
    ax.axhline(teacher["mAP50-95"], color="k", ls="--", lw=1, label="teacher")
    ax.set(xlabel="epoch", ylabel="mAP50-95 (val), mean over seeds", title=f"ultrald bench: {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(file, dpi=120)
    plt.close(fig)


def machine() -> str:
    """One line about the machine the benchmark ran on."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, default=None, help="where the dataset is drawn (default: Ultralytics')")
    p.add_argument("--configs", help="comma-separated (default: every config that applies to the dataset's task)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--dis-sweep", type=float, nargs="*", default=[0.25, 1.0, 3.0], help="dis values tried on seed 0")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (each gets --threads torch threads)")
    p.add_argument("--out", type=Path, help="results folder (default: bench/out/DATA)")
    p.add_argument("--teacher", type=Path, help="a teacher checkpoint trained on the same data (skips training one)")
    p.add_argument("--tiny", action="store_true", help="a minute-long smoke run of the whole pipeline")
    p.add_argument("--variant", action="append", default=[], help="NAME=BASE:key=value,... a config with other keys")
    for k, v in asdict(Setup()).items():
        if k != "task":
            p.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    a = p.parse_args(argv)
    if a.one:
        a.result.write_text(json.dumps(run_one(json.loads(a.one))))
        return 0

    from bench.synthetic import SYNTHETIC

    if a.data not in SYNTHETIC:
        raise SystemExit(f"--data {a.data}: known datasets are {list(SYNTHETIC)}")
    setup = Setup(**{k: getattr(a, k) for k in asdict(Setup()) if k != "task"}, task=SYNTHETIC[a.data].task)
    for k, v in BENCH_DATA[setup.data].items():
        setattr(setup, k, getattr(setup, k) or v)
    variants = [add_variant(v) for v in a.variant]
    if a.tiny:
        setup = Setup(
            data=setup.data, task=setup.task, student_model=setup.student_model, teacher_model=setup.teacher_model,
            epochs=1, teacher_epochs=1, n_train=16, n_val=8, imgsz=64, batch=8, nbs=8, threads=1,
        )  # fmt: skip
        a.dis_sweep = a.dis_sweep[:1]
    default = [c for c in CONFIGS if c not in OBB_ONLY | OPTIONAL and c not in variants] + variants
    configs = [c for c in a.configs.split(",") if c] if a.configs else default
    if setup.task != "obb" and OBB_ONLY & set(configs):
        raise SystemExit(f"configs {sorted(OBB_ONLY & set(configs))} compare the angle term: they need an OBB dataset")
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configs {sorted(unknown)}; known: {list(CONFIGS)}")
    out = a.out or Path(__file__).parent / "out" / setup.data
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.utils import DATASETS_DIR

    from bench.synthetic import generate_named
    from ultrald.models import resolve_model
    from ultrald.utils import ensure_offline_fonts

    ensure_offline_fonts()
    if setup.task == "obb":  # the rotated counterparts of the models: yolov8-w125.yaml -> yolov8-obb-w125.yaml
        setup.teacher_model, setup.student_model = (
            re.sub(r"^([a-z0-9]+)-w(\d+)", r"\1-obb-w\2", m) for m in (setup.teacher_model, setup.student_model)
        )
    setup.student_model, teacher_yaml = resolve_model(setup.student_model), resolve_model(setup.teacher_model)
    folder = (a.data_dir or DATASETS_DIR) / f"ultrald-{setup.data}-bench-{setup.imgsz}-{setup.n_train}"
    sizes = dict(n_train=setup.n_train, n_val=setup.n_val, imgsz=setup.imgsz)
    data = str(generate_named(setup.data, folder, **sizes))

    teacher_spec = {
        "trainer": "val" if a.teacher else "plain",
        "teacher": str(a.teacher.resolve()) if a.teacher else None,
        "threads": setup.threads,
        "args": train_args(setup, data, out, "teacher", teacher_yaml, setup.teacher_epochs, 0),
    }
    if a.teacher and not a.teacher.is_file():
        raise SystemExit(f"--teacher {a.teacher} does not exist")
    teacher = launch(teacher_spec, out)
    teacher_pt = teacher.get("weights") or str(Path(teacher["save_dir"]) / "weights" / "best.pt")

    def run_all(specs: list[dict]) -> list[dict]:
        with ThreadPoolExecutor(a.jobs) as pool:
            return list(pool.map(lambda s: launch(s, out), specs))

    best_dis = None
    if {"fi_best", "full_fi"} & set(configs):
        values = [d for d in a.dis_sweep if d != FI_DEFAULT_DIS]
        specs = [spec_for(setup, data, out, teacher_pt, "fi_best", a.seeds[0], dis=d) for d in values]
        if "fi" in configs:  # Ultralytics' default weight competes too: its seed-0 run is the 'fi' config's
            values, specs = (
                [*values, FI_DEFAULT_DIS],
                [*specs, spec_for(setup, data, out, teacher_pt, "fi", a.seeds[0])],
            )
        sweep = run_all(specs)
        best_dis = values[max(range(len(sweep)), key=lambda i: sweep[i]["mAP50-95"])]
    runs = []  # (config, spec)
    for config in configs:
        for seed in a.seeds:
            if config == "fi_best" and best_dis == FI_DEFAULT_DIS:  # the default won: those are the 'fi' runs
                runs.append((config, spec_for(setup, data, out, teacher_pt, "fi", seed)))
            else:
                extra = {"dis": best_dis} if config in {"fi_best", "full_fi"} else {}
                runs.append((config, spec_for(setup, data, out, teacher_pt, config, seed, **extra)))
    unique = list({spec["args"]["name"]: spec for _, spec in runs}.values())  # a run shared by configs trains once
    summaries = dict(zip((spec["args"]["name"] for spec in unique), run_all(unique)))
    results: dict[str, list[dict]] = {}
    for config, spec in runs:
        results.setdefault(config, []).append(summaries[spec["args"]["name"]])
    if "plain" not in results:
        raise SystemExit("the 'plain' configuration is needed as the reference")
    md = report(setup, results, teacher, best_dis, out, a.seeds)
    print(f"\n{md}\nwritten to {out}/results.md, results.json, results.png ({machine()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
