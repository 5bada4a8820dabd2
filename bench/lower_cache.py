"""The frozen-feature cache for a frozen lower part: recipes/quickstart.yaml (MiniLM, Rotten Tomatoes
4,000 / 500 / 1,500 rows split by movie, max_length 64, batch 32) with the embeddings and the lower 4 of
6 blocks frozen (`{name: freeze, all_but_last: 2}`), train.cache_frozen_features off vs on.

Each run is `honed train` in a fresh process, alternating off, on, off, on ...; every finished run's
results.json (plus the process wall time and the cache-building seconds from its log) is kept in
bench/results/lower_cache/<name>.json and reused, so an interrupted benchmark resumes.

    nice -n 15 env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/lower_cache.py [--epochs 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RECIPE = BENCH.parent / "recipes" / "quickstart.yaml"
RESULTS = BENCH / "results" / "lower_cache"
FREEZE = "techniques=[{name: freeze, all_but_last: 2}]"  # embeddings + block.0 .. block.3 of 6
BUILT = re.compile(r"ran once for \d+ training rows in ([\d.]+) s \((\d+) MB kept\)")


def run(name: str, cached: bool, epochs: int) -> dict:
    """One `honed train` in a fresh process (the stored result when it exists)."""
    stored = RESULTS / f"{name}.json"
    if stored.is_file():
        return json.loads(stored.read_text())
    overrides = [FREEZE, f"train.epochs={epochs}", f"train.cache_frozen_features={cached}"]
    with tempfile.TemporaryDirectory(prefix="honed-lower-cache-") as scratch:
        out = Path(scratch) / "run"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "honed.cli", "train", str(RECIPE), "--quiet", "--overwrite",
                               f"output_dir={out}", *overrides], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        result = json.loads((out / "results.json").read_text())
        built = BUILT.search((out / "log.txt").read_text(encoding="utf-8"))
    result.update(name=name, cached=cached, overrides=overrides, process_seconds=time.perf_counter() - started,
                  cache_seconds=float(built.group(1)) if built else 0.0, cache_mb=int(built.group(2)) if built else 0)
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(result, indent=1))
    return result


def table(runs: list[dict]) -> str:
    """One row per run, then the medians side by side and the on/off ratios."""
    cols = ("train_seconds", "train_samples_per_s", "cache_seconds", "process_seconds", "test_accuracy")
    lines = ["| run | train s | samples/s | cache build s | process s | test acc |", "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['name']} | " + " | ".join(f"{r[c]:.4f}" if c == "test_accuracy" else f"{r[c]:.1f}"
                                                    for c in cols) + " |")
    med = {c: {on: statistics.median(r[c] for r in runs if r["cached"] == on) for on in (False, True)} for c in cols}
    lines.append("")
    for c in cols:
        ratio = med[c][True] / med[c][False] if med[c][False] else float("nan")
        lines.append(f"{c}: off {med[c][False]:.4g}, on {med[c][True]:.4g} (on/off {ratio:.3f})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    runs = []
    for repeat in range(args.repeats):
        for cached in (False, True):  # alternating, each in its own process
            r = run(f"{'on' if cached else 'off'}-e{args.epochs}-r{repeat}", cached, args.epochs)
            print(f"{r['name']}: train {r['train_seconds']:.0f} s, {r['train_samples_per_s']:.1f} samples/s, "
                  f"cache {r['cache_seconds']:.0f} s, process {r['process_seconds']:.0f} s, "
                  f"test acc {r['test_accuracy']:.4f}", flush=True)
            runs.append(r)
    print(table(runs))


if __name__ == "__main__":
    main()
