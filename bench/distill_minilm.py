"""Issue 16's goal at the baseline's size: can MiniLM, the naive recipe's own model, reach naive + 3 points on
the climb benchmark's Rotten Tomatoes split when it learns from the climb's best single model, all-mpnet-base-v2?

The same split and transfer pool as bench/distill.py (by movie; 4,000 training reviews, val 1,266, test 2,666,
max_length 64; the pool: the 4,866 other training-side reviews, never a val or test review or movie).

- Teacher: all-mpnet-base-v2 fine-tuned with the naive recipe (HF Trainer's defaults), seed 42, trained once.
- `naive`: MiniLM with the naive recipe, the climb's baseline (its per-seed scores are the pairs).
- `T2-a1-eN-transfer`: MiniLM with the naive recipe for N epochs on the 4,000 reviews plus the pool, every
  row's target the teacher's soft labels (`distill`, T 2, alpha 1: Hinton et al.'s transfer set; the pool's
  stored label is the teacher's prediction and unused at alpha 1).
- `alone-eN-transfer`: its control, the same rows and epochs without distill (the pool with the teacher's hard
  labels: self-training), so the difference is what the soft labels add.

Each run is `honed train` in a fresh process, kept as bench/results/distill-minilm/<variant>-s<seed>.json, and a
stored run is skipped, so the benchmark resumes. Two workers of one thread each run side by side.

    nice -n 10 env HF_HUB_OFFLINE=1 .venv/bin/python bench/distill_minilm.py --workers 2
    .venv/bin/python bench/distill_minilm.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from distill import BENCH, chosen, honed_train, label_pool, write_data  # noqa: E402
from distill import run_one as stored_run  # noqa: E402

OUT = BENCH / "results" / "distill-minilm"
TEACHER = OUT / "runs" / "teacher-mpnet"
TRANSFER = OUT / "data" / "train_transfer.csv"  # not committed: bench/results/.gitignore's data/
MPNET = "sentence-transformers/all-mpnet-base-v2"
DISTIL = f"techniques=[{{name: distill, teacher: {TEACHER / 'model'}, temperature: 2, alpha: 1}}]"
VARIANTS = {  # name -> the overrides of the naive MiniLM recipe
    "naive": [],
    "T2-a1-e3-transfer": [f"data.train={TRANSFER}", "train.epochs=3", DISTIL],
    "alone-e3-transfer": [f"data.train={TRANSFER}", "train.epochs=3"],
}


def teacher(recipe: Path) -> dict:
    """The MPNet teacher's results (trained once, both threads) and the transfer CSV its predictions label."""
    if not (TEACHER / "results.json").is_file():
        os.environ["OMP_NUM_THREADS"] = "2"
        try:
            honed_train(recipe, TEACHER, ["seed=42", f"model.name={MPNET}"])
        finally:
            os.environ["OMP_NUM_THREADS"] = "1"
    label_pool(TEACHER / "model", TRANSFER)
    results = json.loads((TEACHER / "results.json").read_text())
    (OUT / "teacher.json").write_text(json.dumps(results, indent=1))  # committed (runs/ is not), for --report
    return results


def run_one(recipe: Path, name: str, seed: int) -> dict:
    stored = (OUT / f"{name}-s{seed}.json").is_file()
    results = stored_run(recipe, name, seed, OUT, VARIANTS)
    if not stored:
        print(f"{name} s{seed}: val {results['val_accuracy']:.4f} test {results['test_accuracy']:.4f}, "
              f"{results['process_seconds']:.0f} s", flush=True)
    return results


def report() -> str:
    teacher_results = json.loads((OUT / "teacher.json").read_text())
    runs = {(r["variant"], r["seed"]): r for r in (json.loads(p.read_text()) for p in sorted(OUT.glob("*-s*.json")))}
    naive = {s: r["test_accuracy"] for (v, s), r in runs.items() if v == "naive"}
    lines = [f"teacher ({MPNET}, seed 42): val {teacher_results['val_accuracy']:.4f}, "
             f"test {teacher_results['test_accuracy']:.4f}",
             "| MiniLM | seeds | val per seed | test per seed | test mean ± std | Δ test vs naive (paired) | "
             "Δ test vs its control | process s (mean) |", "|---|---|---|---|---|---|---|---|"]
    for name in VARIANTS:
        seeds = sorted(s for v, s in runs if v == name)
        if not seeds:
            continue
        tests = [runs[name, s]["test_accuracy"] for s in seeds]
        vals = [runs[name, s]["val_accuracy"] for s in seeds]
        spread = f" ± {statistics.stdev(tests):.4f}" if len(tests) > 1 else ""
        control = name.replace("T2-a1-", "alone-") if name.startswith("T2-") else None
        cells = [_paired(tests, seeds, naive) if name != "naive" else "",
                 _paired(tests, seeds, {s: r["test_accuracy"] for (v, s), r in runs.items() if v == control})
                 if control else ""]
        seconds = statistics.mean(runs[name, s]["process_seconds"] for s in seeds)
        lines.append(f"| {name} | {','.join(map(str, seeds))} | {' / '.join(f'{v:.4f}' for v in vals)} | "
                     f"{' / '.join(f'{t:.4f}' for t in tests)} | {statistics.mean(tests):.4f}{spread} | "
                     f"{cells[0]} | {cells[1]} | {seconds:.0f} |")
    return "\n".join(lines)


def _paired(tests: list[float], seeds: list[int], other: dict[int, float]) -> str:
    pairs = [t - other[s] for t, s in zip(tests, seeds, strict=True) if s in other]
    if not pairs:
        return ""
    spread = f" ± {statistics.stdev(pairs):.4f}" if len(pairs) > 1 else ""
    return f"{statistics.mean(pairs):+.4f}{spread} (n={len(pairs)})"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    p.add_argument("--seeds", default="42,43,44", help="comma-separated student seeds")
    p.add_argument("--workers", type=int, default=2, help="runs side by side, one torch thread each")
    p.add_argument("--report", action="store_true", help="only print the table from the stored results")
    args = p.parse_args(argv)
    names = chosen(args.variants, VARIANTS)
    if not args.report:
        os.environ["OMP_NUM_THREADS"] = "1"
        recipe = write_data()
        started = time.perf_counter()
        print(f"teacher: test {teacher(recipe)['test_accuracy']:.4f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        jobs = [(name, int(seed)) for name in names for seed in args.seeds.split(",")]
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            list(pool.map(lambda job: run_one(recipe, *job), jobs))
    print(report())


if __name__ == "__main__":
    main()
