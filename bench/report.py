"""One table over several `bench.py` results: per dataset and seed, and the worst case over datasets.

    python bench/report.py bench/out/shapes bench/out/digits bench/out/crowd --ref full --held-out photo > table.md

Each folder is a `bench.py --out` (its results.json). For each dataset: the teacher, then each configuration's
mAP50-95 of best.pt (mean ± sample std over seeds, and per seed), the mean of its last five epochs, mAP50, and the
fraction of the teacher gap it recovers, paired by seed: (run − plain) / (teacher − plain) of the same seed. Then
the reference configuration (`--ref`) against every other one, paired by seed: its mean difference and on how many
seeds it wins; and the worst case of each configuration over the datasets (held-out sets reported apart).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def mean_std(values: list[float | None]) -> str:
    """'mean ± std' of the values that are not None (std 0 for one), saying how many there were if some are None."""
    known = [v for v in values if v is not None]
    if not known:
        return "—"
    sd = statistics.stdev(known) if len(known) > 1 else 0.0
    return f"{statistics.mean(known):.3f} ± {sd:.3f}" + ("" if len(known) == len(values) else f" ({len(known)} seeds)")


def load(folder: Path) -> dict:
    """Return a bench results.json with each row's per-seed gap recovered (paired with plain of the same seed).

    A seed whose plain student reached the teacher has no gap to recover: its gap is None, not a ratio whose sign flips.
    """
    r = json.loads((folder / "results.json").read_text())
    teacher, table = r["teacher"]["mAP50-95"], r["table"]
    plain = table["plain"]["per_seed"]
    for row in table.values():
        row["gap"] = [(v - p) / (teacher - p) if teacher > p else None for v, p in zip(row["per_seed"], plain)]
    return r


def dataset_table(name: str, r: dict) -> list[str]:
    """Markdown lines of one dataset's table."""
    s = r["setup"]
    lines = [
        f"**{name}** ({s['n_train']} train / {s['n_val']} val images of {s['imgsz']} px, {s['epochs']} student "
        f"epochs; teacher {r['teacher']['mAP50-95']:.3f} mAP50-95, {s['teacher_epochs']} epochs; seeds {r['seeds']})",
        "",
        "| run | mAP50-95 (best.pt) | per seed | last 5 epochs | mAP50 | gap recovered |",
        "|---|---|---|---|---|---|",
    ]
    for config, row in r["table"].items():
        label = f"{config} (dis={r['best_dis']})" if config in {"fi_best", "full_fi"} else config
        lines.append(
            f"| {label} | {mean_std(row['per_seed'])} | {' / '.join(f'{v:.3f}' for v in row['per_seed'])} | "
            f"{mean_std(row['per_seed_last5'])} | {mean_std(row['per_seed_mAP50'])} | {mean_std(row['gap'])} |"
        )
    return lines


def paired(results: dict[str, dict], ref: str) -> list[str]:
    """Markdown lines: the reference against each configuration, paired by seed, per dataset."""
    configs = list(dict.fromkeys(c for r in results.values() for c in r["table"] if c != ref))
    lines = [
        f"`{ref}` minus each configuration, mAP50-95 of best.pt paired by seed: mean difference (wins / seeds)",
        "",
        "| dataset | " + " | ".join(configs) + " |",
        "|---|" + "---|" * len(configs),
    ]
    for name, r in results.items():
        cells = []
        for c in configs:
            if ref not in r["table"] or c not in r["table"]:
                cells.append("—")
                continue
            d = [a - b for a, b in zip(r["table"][ref]["per_seed"], r["table"][c]["per_seed"])]
            cells.append(f"{statistics.mean(d):+.3f} ({sum(x > 0 for x in d)}/{len(d)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def worst_case(results: dict[str, dict]) -> list[str]:
    """Markdown lines: each configuration's mean gap recovered per dataset and its worst dataset and seed."""
    names = list(results)
    configs = list(dict.fromkeys(c for r in results.values() for c in r["table"]))
    lines = [
        "Gap recovered, mean over seeds per dataset; worst dataset mean and worst single seed",
        "",
        "| run | " + " | ".join(names) + " | worst dataset | worst seed |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for c in configs:
        means, seeds = [], []
        for n in names:
            gaps = [g for g in results[n]["table"].get(c, {}).get("gap", []) if g is not None]
            means.append(statistics.mean(gaps) if gaps else None)
            seeds += gaps
        cells = [f"{m:+.2f}" if m is not None else "—" for m in means]
        known = [m for m in means if m is not None]
        partial = "" if len(known) == len(names) else f" (on {len(known)} of {len(names)})"  # not comparable
        worst = f"{min(known):+.2f}{partial} | {min(seeds):+.2f}{partial}" if known else "— | —"
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {worst} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print the tables."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--ref", default="full", help="the configuration compared with every other one")
    p.add_argument("--held-out", nargs="*", default=[], help="datasets (folder names) reported apart")
    a = p.parse_args(argv)
    results = {f.name: load(f) for f in a.folders}
    tuned = {k: v for k, v in results.items() if k not in a.held_out}
    held = {k: v for k, v in results.items() if k in a.held_out}
    out = []
    for group, title in ((tuned, "Datasets the defaults were chosen on"), (held, "Held out until the defaults froze")):
        if not group:
            continue
        out += [f"### {title}", ""]
        for name, r in group.items():
            out += [*dataset_table(name, r), ""]
        out += [*paired(group, a.ref), "", *worst_case(group), ""]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
