"""Issue 15's recurrent and convolutional text members alone, on the quickstart split (Rotten Tomatoes, split
by movie, 4,000 training reviews, 1,500 test rows, max_length 64): a BiLSTM and a TextCNN over MiniLM's
word-piece embeddings (`model.source: textrnn`), with the embedding table frozen (the default) or tuned.

Each run is `honed train recipes/quickstart.yaml` with model overrides, in its own fresh process; its
results.json (plus the process's wall seconds) is kept as bench/results/textrnn/<variant>-s<seed>.json, and a
variant already there is skipped, so an interrupted benchmark resumes. The table reads the stored files.

    nice -n 10 env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/textrnn.py
    .venv/bin/python bench/textrnn.py --variants bilstm,textcnn --seeds 42,43
    .venv/bin/python bench/textrnn.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RECIPE = BENCH.parent / "recipes" / "quickstart.yaml"
RESULTS_DIR = BENCH / "results" / "textrnn"
EPOCHS = 5  # these small models see each review several times; MiniLM's quickstart runs 2 epochs
COMMON = ["model.source=textrnn", "optim.lr=1e-3", f"train.epochs={EPOCHS}", "train.checkpoint_every_steps=null"]

# variant -> overrides on top of the quickstart recipe (embeddings: MiniLM's, model.tokenizer's default)
VARIANTS: dict[str, list[str]] = {
    "bilstm": ["model.name=bilstm", "model.args={hidden: 256, layers: 1}"],
    "textcnn": ["model.name=textcnn", "model.args={filters: 100, widths: [3, 4, 5]}"],
    "bilstm-tuned": ["model.name=bilstm", "model.args={hidden: 256, layers: 1, freeze_embeddings: false}"],
    "textcnn-tuned": ["model.name=textcnn", "model.args={filters: 100, widths: [3, 4, 5], freeze_embeddings: false}"],
}


def result_path(variant: str, seed: int) -> Path:
    return RESULTS_DIR / f"{variant}-s{seed}.json"


def run_one(variant: str, seed: int, scratch: Path) -> dict:
    """`honed train` in a fresh process (skipped when its result is stored); returns the stored result."""
    out = result_path(variant, seed)
    if out.is_file():
        return json.loads(out.read_text())
    run_dir = scratch / f"{variant}-s{seed}"
    overrides = [*COMMON, *VARIANTS[variant], f"seed={seed}"]
    command = [sys.executable, "-m", "honed.cli", "train", str(RECIPE), "--quiet", "--overwrite",
               f"output_dir={run_dir}", *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=BENCH.parent)
    if done.returncode != 0:
        raise SystemExit(f"{variant} seed {seed} failed:\n{done.stderr[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text())
    log = (run_dir / "log.txt").read_text(encoding="utf-8")
    results.update(variant=variant, seed=seed, overrides=overrides, process_seconds=time.perf_counter() - started,
                   threads=env["OMP_NUM_THREADS"], built=next((ln for ln in log.splitlines() if "textrnn " in ln), ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return results


def table(variants: list[str], seeds: list[int]) -> str:
    """A markdown row per stored run: test accuracy, macro-F1, training and process seconds."""
    lines = ["| model | seed | test accuracy | test macro-F1 | best epoch | train s | process s |",
             "|---|---|---|---|---|---|---|"]
    for variant in variants:
        for seed in seeds:
            path = result_path(variant, seed)
            if not path.is_file():
                continue
            r = json.loads(path.read_text())
            lines.append(f"| {variant} | {seed} | {r['test_accuracy']:.4f} | {r['test_macro_f1']:.4f} | "
                         f"{r.get('best_epoch', '')} | {r['train_seconds']:.0f} | {r['process_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    p.add_argument("--seeds", default="42", help="comma-separated seeds (42: the quickstart's own split)")
    p.add_argument("--report", action="store_true", help="only print the table from the stored results")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if not args.report:
        with tempfile.TemporaryDirectory() as scratch:
            for variant in variants:
                for seed in seeds:
                    r = run_one(variant, seed, Path(scratch))
                    print(f"{variant} s{seed}: test accuracy {r['test_accuracy']:.4f}, "
                          f"{r['process_seconds']:.0f} s", flush=True)
    print(table(variants, seeds))


if __name__ == "__main__":
    main()
