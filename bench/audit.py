"""`honed audit` on the full Rotten Tomatoes corpus, and whether training on `honed clean`'s output helps.

Part 1 (cost and findings): `honed audit bench/recipes/audit-rt.yaml` on all 13,905 rows, all three
categories (fresh / rotten / plot: the plot synopses are the "different kind of row" the outlier
check must surface), split at random (so movies leak across splits, which the group check must
report), MiniLM embeddings at max_length 64. Run twice in fresh processes with one torch thread:
cold (empty embedding cache) and warm (embeddings cached). Wall time and peak RSS come from
/usr/bin/time; the findings come from audit.json.

Part 2 (does cleaning help?): the techniques benchmark's text task (bench/recipes/techniques-text.yaml:
fresh vs rotten, split by movie, 400 train / 160 val / 480 test rows, max_length 64, 3 epochs) is
materialised as files; `honed clean` (defaults: drop corrupt rows, copies, leaks and cleanlab's
label issues) cleans the train file; raw and cleaned train are each fine-tuned with 3 seeds
against the same val/test files, each run `honed train` in its own fresh process, alternating.

    HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python bench/audit.py            # both parts (~25 min)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/audit.py --part audit         # part 1 only
    HF_HUB_OFFLINE=1 .venv/bin/python bench/audit.py --part clean --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "results" / "audit"
AUDIT_RECIPE = BENCH / "recipes" / "audit-rt.yaml"
TRAIN_RECIPE = BENCH / "recipes" / "techniques-text.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def honed(*args: str, cache: Path | None = None) -> tuple[float, float, str]:
    """Run `honed ARGS` in a fresh process: (wall seconds, peak RSS MiB, stdout)."""
    env = {**ENV, **({"HONED_CACHE_DIR": str(cache)} if cache else {})}
    with tempfile.NamedTemporaryFile("r", suffix=".time") as timing:
        command = ["/usr/bin/time", "-f", "%e %M", "-o", timing.name, sys.executable, "-m", "honed.cli", *args]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise SystemExit(f"honed {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        wall, rss_kib = timing.read().split()[-2:]
    return float(wall), float(rss_kib) / 1024, done.stdout


def part_audit() -> dict:
    """Cold then warm audit of the full corpus; the findings that matter, from audit.json."""
    cache = Path(tempfile.mkdtemp(prefix="honed-audit-cache-"))
    runs = {}
    for name in ("cold", "warm"):
        folder = OUT / "full"
        runs[name] = honed(
            "audit",
            str(AUDIT_RECIPE),
            "data.labels=null",
            "--output",
            str(folder),
            "--overwrite",
            "--quiet",
            cache=cache,
        )
        print(f"audit {name}: {runs[name][0]:.1f} s, peak RSS {runs[name][1]:.0f} MiB", flush=True)
    report = json.loads((OUT / "full" / "audit.json").read_text())
    found = {f["name"]: f for f in report["findings"]}
    outliers = pd.DataFrame(found["outliers"]["rows"])
    labels = pd.DataFrame(found["label_issues"]["rows"])
    plot_total = sum(
        report["findings"][1]["data"]["counts"][s].get("plot", 0) for s in report["findings"][1]["data"]["counts"]
    )
    summary = {
        "rows": report["meta"]["rows"],
        "seconds_cold": runs["cold"][0],
        "peak_mib_cold": runs["cold"][1],
        "seconds_warm": runs["warm"][0],
        "peak_mib_warm": runs["warm"][1],
        "corrupt": found["corrupt"]["data"],
        "duplicates": found["duplicates"]["data"],
        "leakage": {k: v for k, v in found["leakage"]["data"].items() if k != "leaked_group_names"},
        "plot_rows": plot_total,
        "outlier_rows_by_reason_and_label": outliers.groupby(["reason", "label"]).size().to_dict()
        if len(outliers)
        else {},
        "plot_rows_flagged_any_outlier": int(outliers.loc[outliers["label"] == "plot", "row"].nunique())
        if len(outliers)
        else 0,
        "review_rows_flagged_length": int(
            ((outliers["label"] != "plot") & (outliers["reason"] == "length outlier")).sum()
        )
        if len(outliers)
        else 0,
        "label_issues": found["label_issues"]["data"],
        "label_issues_by_label": labels.groupby("label").size().to_dict() if len(labels) else {},
        "learning_curve": found["learning_curve"]["data"],
        "recommendations": [r for f in report["findings"] for r in f["recommendations"]],
    }
    summary["outlier_rows_by_reason_and_label"] = {
        f"{r} / {lab}": int(n) for (r, lab), n in summary["outlier_rows_by_reason_and_label"].items()
    }
    (OUT / "audit-summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def materialise() -> dict[str, Path]:
    """The techniques text task's split and subsets as files with the corpus's own columns."""
    from honed.assets import resolve_data_path
    from honed.data.build import load_tables
    from honed.recipe import load_recipe

    raw = pd.read_csv(resolve_data_path("asset:rotten-tomatoes", "data.train"), keep_default_na=False, na_values=[""])
    tables = load_tables(load_recipe(TRAIN_RECIPE))
    folder = OUT / "data"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, frame in tables.frames.items():
        paths[split] = folder / f"{split}.csv"
        raw.loc[frame.index].to_csv(paths[split], index=False)
    return paths


def part_clean(seeds: int) -> dict:
    paths = materialise()
    data = [
        f"data.train={paths['train']}",
        f"data.val={paths['val']}",
        f"data.test={paths['test']}",
        "data.max_rows={}",
    ]
    wall, rss, out = honed("clean", str(TRAIN_RECIPE), *data, "--output", str(OUT / "clean"), "--overwrite", "--quiet")
    print(out, flush=True)
    manifest = pd.read_csv(OUT / "clean" / "manifest.csv")
    variants = {"raw train": data, "cleaned train": [f"data.train={OUT / 'clean' / 'train.csv'}", *data[1:]]}
    scores: dict[str, list[float]] = {v: [] for v in variants}
    scratch = Path(tempfile.mkdtemp(prefix="honed-audit-runs-"))
    for seed in range(seeds):
        for name, overrides in variants.items():  # alternating: raw, clean, raw, clean, ...
            run_dir = scratch / f"{name.replace(' ', '-')}-s{seed}"
            took, _, _ = honed(
                "train",
                str(TRAIN_RECIPE),
                *overrides,
                f"seed={seed}",
                f"output_dir={run_dir}",
                "--quiet",
                "--overwrite",
            )
            accuracy = json.loads((run_dir / "results.json").read_text())["test_accuracy"]
            scores[name].append(accuracy)
            print(f"{name} seed {seed}: test accuracy {accuracy:.4f} ({took:.0f} s)", flush=True)
    summary = {
        "clean_seconds": wall,
        "clean_peak_mib": rss,
        "train_rows_raw": len(pd.read_csv(paths["train"])),
        "train_rows_clean": len(pd.read_csv(OUT / "clean" / "train.csv")),
        "manifest": manifest.groupby(["action", "reason"]).size().to_dict(),
        "scores": scores,
        "mean": {k: statistics.mean(v) for k, v in scores.items()},
        "sd": {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in scores.items()},
    }
    summary["manifest"] = {f"{a}: {r}": int(n) for (a, r), n in summary["manifest"].items()}
    (OUT / "clean-summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("audit", "clean", "all"), default="all")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.part in ("audit", "all"):
        print(json.dumps(part_audit(), indent=1, default=str), flush=True)
    if args.part in ("clean", "all"):
        print(json.dumps(part_clean(args.seeds), indent=1), flush=True)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
