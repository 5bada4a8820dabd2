"""Which accuracy technique helps on which data: a plain fine-tune baseline, then each technique alone.

Two tasks, each a recipe in bench/recipes/: Rotten Tomatoes (MiniLM, fresh vs rotten, split by
movie, a training subset, max_length 64) and a Fashion-MNIST subset (MobileNetV2 at 64 px). Every
variant changes one thing against the task's baseline (a few dotted overrides) and keeps the same
data, epochs and seeds. Each run is `honed train` in its own fresh process; its results.json is
copied to bench/results/techniques/<task>/<variant>-s<seed>.json, so an interrupted benchmark
resumes where it stopped (finished runs are skipped) and the table can be rebuilt at any time.

The table gives mean +- sample std over the seeds of test accuracy and macro-F1, the difference of
the means to the baseline, and whether that difference is larger than the seeds' spread (the
larger of the two stds): only then is a technique reported as helping (or hurting).

Every run uses one torch thread, so the two tasks can run side by side on a 2-core machine.
Full measurement (about an hour on 2 CPU cores):
    HF_HUB_OFFLINE=1 .venv/bin/python bench/techniques.py --task text &
    HF_HUB_OFFLINE=1 .venv/bin/python bench/techniques.py --task image; wait
    HF_HUB_OFFLINE=1 .venv/bin/python bench/techniques.py --report --write
One task or a few variants:  ... bench/techniques.py --task text --variants baseline,ema
Only rebuild the table:      ... bench/techniques.py --report
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS_DIR = BENCH / "results" / "techniques"
RESULTS_MD = BENCH / "RESULTS.md"
THREADS = 1  # torch threads per run: the text and image tasks run side by side, one core each
RECIPES = {"text": BENCH / "recipes" / "techniques-text.yaml", "image": BENCH / "recipes" / "techniques-image.yaml"}

# variant -> dotted overrides, per task; each variant is one technique alone on top of the baseline
VARIANTS: dict[str, dict[str, list[str]]] = {
    "text": {
        "baseline": [],
        "one-cycle schedule": ["schedule.name=one_cycle"],
        "layer-wise LR decay 0.8": ["optim.layer_decay=0.8"],
        "head warm-up 1 epoch": ["techniques=[{name: head_warmup, epochs: 1}]"],
        "gradual unfreezing 3 stages": ["techniques=[{name: gradual_unfreezing, every: 1, stages: 3}]"],
        "fine_tune preset": ["preset=fine_tune"],
        "label smoothing 0.1": ["loss.label_smoothing=0.1"],
        "class-weighted CE (balanced)": ["loss={name: weighted_cross_entropy, weights: balanced}"],
        "focal loss gamma 2": ["loss={name: focal, gamma: 2.0}"],
        "EMA 0.99": ["techniques=[{name: ema, decay: 0.99}]"],
        "word dropout 0.1": ["augment.text=[{name: word_dropout, p: 0.1}]"],
        "aux masked-LM 0.1 decayed": ["techniques=[{name: aux_mlm, weight: 0.1, decay: true}]"],
    },
    "image": {
        "baseline": [],
        "flip + resized crop": ["augment.image=[{name: flip}, {name: resized_crop, scale: 0.6}]"],
        "TrivialAugmentWide": ["augment.image=[{name: trivialaugment}]"],
        "mixup 0.2": ["techniques=[{name: mixup, alpha: 0.2}]"],
        "cutmix 1.0": ["techniques=[{name: cutmix, alpha: 1.0}]"],
        "EMA 0.99": ["techniques=[{name: ema, decay: 0.99}]"],
        "aux rotation 0.1 decayed": ["techniques=[{name: aux_rotation, weight: 0.1, decay: true}]"],
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    p.add_argument("--task", choices=["text", "image", "all"], default="all")
    p.add_argument("--variants", default="", help="comma-separated variant names (default: all of the task's)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per variant")
    p.add_argument("--report", action="store_true", help="only print the table from the stored results")
    p.add_argument("--write", action="store_true", help="append the table to bench/RESULTS.md")
    p.add_argument("--list", action="store_true", help="list the variants and their overrides")
    return p.parse_args(argv)


def result_path(task: str, variant: str, seed: int) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in variant.lower()).strip("-")
    return RESULTS_DIR / task / f"{slug}-s{seed}.json"


def run_one(task: str, variant: str, seed: int, scratch: Path) -> dict:
    """`honed train` in a fresh process; returns its results.json (plus the wall time)."""
    out = result_path(task, variant, seed)
    if out.is_file():
        return json.loads(out.read_text())
    run_dir = scratch / f"{task}-{out.stem}"
    command = [
        sys.executable,
        "-m",
        "honed.cli",
        "train",
        str(RECIPES[task]),
        "--quiet",
        "--overwrite",
        f"seed={seed}",
        f"output_dir={run_dir}",
        *VARIANTS[task][variant],
    ]
    started = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{task}/{variant}/seed {seed} failed:\n{done.stderr[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text())
    results.update(
        variant=variant,
        seed=seed,
        task=task,
        overrides=VARIANTS[task][variant],
        process_seconds=time.perf_counter() - started,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return results


def summarise(task: str, seeds: int) -> list[dict]:
    """Per variant: mean/std of test accuracy and macro-F1 over the stored seeds, delta to baseline."""
    rows = []
    for variant in VARIANTS[task]:
        found = [json.loads(p.read_text()) for s in range(seeds) if (p := result_path(task, variant, s)).is_file()]
        if not found:
            continue
        acc = [r["test_accuracy"] for r in found]
        f1 = [r["test_macro_f1"] for r in found]
        rows.append(
            {
                "variant": variant,
                "n": len(found),
                "acc": statistics.mean(acc),
                "acc_sd": _sd(acc),
                "f1": statistics.mean(f1),
                "f1_sd": _sd(f1),
                "seconds": statistics.mean(r["process_seconds"] for r in found),
            }
        )
    base = next((r for r in rows if r["variant"] == "baseline"), None)
    for row in rows:
        if base is not None:
            row["d_acc"], row["d_f1"] = row["acc"] - base["acc"], row["f1"] - base["f1"]
            spread = max(row["acc_sd"], base["acc_sd"])
            row["verdict"] = (
                "-"
                if row is base
                else ("helps" if row["d_acc"] > spread else "hurts" if row["d_acc"] < -spread else "no clear effect")
            )
    return rows


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def table(task: str, rows: list[dict]) -> str:
    lines = [
        (
            f"| {task} variant | test accuracy | Δ acc | test macro-F1 | Δ F1 "
            "| verdict (Δ acc vs seed spread) | s/run | seeds |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['acc']:.4f} ± {r['acc_sd']:.4f} | {r.get('d_acc', 0):+.4f} | "
            f"{r['f1']:.4f} ± {r['f1_sd']:.4f} "
            f"| {r.get('d_f1', 0):+.4f} | {r.get('verdict', '')} | {r['seconds']:.0f} | {r['n']} |"
        )
    return "\n".join(lines)


def machine() -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}, load {load:.1f}; "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tasks = ["text", "image"] if args.task == "all" else [args.task]
    if args.list:
        for task in tasks:
            for variant, overrides in VARIANTS[task].items():
                print(f"{task}\t{variant}\t{' '.join(overrides) or '(recipe as is)'}")
        return
    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    started = time.perf_counter()
    if not args.report:
        with tempfile.TemporaryDirectory(prefix="honed-bench-") as scratch:
            for task in tasks:
                variants = wanted or list(VARIANTS[task])
                unknown = [v for v in variants if v not in VARIANTS[task]]
                if unknown:
                    raise SystemExit(f"--variants: unknown {task} variant '{unknown[0]}'; see --list")
                for seed in range(args.seeds):  # seed-major: a partial run still covers every variant
                    for variant in variants:
                        r = run_one(task, variant, seed, Path(scratch))
                        print(
                            f"{task:5s} {variant:32s} seed {seed}: test acc {r['test_accuracy']:.4f} "
                            f"F1 {r['test_macro_f1']:.4f} ({r['process_seconds']:.0f} s)",
                            flush=True,
                        )
    text = "\n\n".join(table(task, summarise(task, args.seeds)) for task in tasks)
    print(text)
    if args.write:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        section = (
            f"\n## Techniques, each alone against a plain fine-tune (`bench/techniques.py`), {stamp}\n\n"
            f"Command: `bench/techniques.py --task text` and `--task image` side by side (one torch thread each), "
            f"then `bench/techniques.py --report --write`  \n"
            f"Machine: {machine()}; {time.perf_counter() - started:.0f} s this invocation.  \n"
            f"Recipes: bench/recipes/techniques-*.yaml; per-run results: bench/results/techniques/.\n\n{text}\n"
        )
        with RESULTS_MD.open("a", encoding="utf-8") as handle:
            handle.write(section)


if __name__ == "__main__":
    main()
