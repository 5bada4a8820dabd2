"""Calibration and report cost: ECE/NLL before and after temperature scaling, and report time.

One small MiniLM fine-tune per seed on the techniques text task (bench/recipes/techniques-text.yaml:
Rotten Tomatoes, fresh vs rotten, split by movie, 400 train / 160 val / 480 test rows, max_length
64, 3 epochs), one torch thread. The temperature is fitted on val by `honed train` itself (saved as
model/calibration.json); ECE (15 equal-width bins) and NLL are measured on test, which the
temperature never saw. The report's cost is timed the way `train` pays it: building the report
from logits already computed, then writing report.json + report.html (model inference excluded,
since train reuses its final evaluation's logits).

    HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python bench/calibration.py            # 1 seed, ~3-4 min on one core
    HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python bench/calibration.py --seeds 2 --write
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
RECIPE = BENCH / "recipes" / "techniques-text.yaml"
RESULTS_MD = BENCH / "RESULTS.md"


def one_seed(seed: int, folder: Path) -> dict[str, float]:
    """Train, then read the run's calibration figures and time a rebuild of its report."""
    import honed
    from honed.data.build import load_tables
    from honed.evaluate.report import write_report
    from honed.evaluate.run_report import read_history, report_from_outputs
    from honed.inference.logits import logits_for

    run = honed.fit(str(RECIPE), seed=seed, output_dir=str(folder / f"run-s{seed}"), quiet=True)
    saved = json.loads((run.run_dir / "report.json").read_text(encoding="utf-8"))["calibration"]
    tables = load_tables(run.recipe)
    outputs = {
        s: (
            logits_for(run.model, run.labels, run.recipe, tables.frames[s]),
            torch.tensor(run.labels.encode(tables.frames[s]["label"])),
        )
        for s in ("val", "test")
    }
    started = time.perf_counter()
    report = report_from_outputs(run.recipe, run.labels, tables.frames, outputs, read_history(run.run_dir), run.metrics)
    built = time.perf_counter()
    write_report(folder / f"report-s{seed}", report)
    written = time.perf_counter()
    return {
        "seed": seed,
        "test_accuracy": run.metrics["test_accuracy"],
        "temperature": saved["temperature"],
        "ece": saved["ece"],
        "ece_calibrated": saved["ece_calibrated"],
        "nll": saved["nll"],
        "nll_calibrated": saved["nll_calibrated"],
        "build_s": built - started,
        "write_s": written - built,
        "train_wall_s": run.metrics["wall_seconds"],
        "html_kb": (folder / f"report-s{seed}" / "report.html").stat().st_size / 1024,
    }


def table(rows: list[dict[str, float]]) -> str:
    lines = [
        (
            "| seed | test acc | T (fit on val) | test ECE before | test ECE after | test NLL before | test NLL after "
            "| report build s | report write s | train wall s | report.html KiB |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['test_accuracy']:.4f} | {r['temperature']:.3f} | "
            f"{r['ece']:.4f} | {r['ece_calibrated']:.4f} | "
            f"{r['nll']:.4f} | {r['nll_calibrated']:.4f} | {r['build_s']:.2f} | {r['write_s']:.2f} | "
            f"{r['train_wall_s']:.0f} | {r['html_kb']:.0f} |"
        )
    if len(rows) > 1:
        mean = {k: statistics.mean(r[k] for r in rows) for k in rows[0] if k != "seed"}
        lines.append(
            f"| mean | {mean['test_accuracy']:.4f} | {mean['temperature']:.3f} | "
            f"{mean['ece']:.4f} | {mean['ece_calibrated']:.4f} | "
            f"{mean['nll']:.4f} | {mean['nll_calibrated']:.4f} | {mean['build_s']:.2f} | {mean['write_s']:.2f} | "
            f"{mean['train_wall_s']:.0f} | {mean['html_kb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1")
    parser.add_argument("--write", action="store_true", help="print the markdown table for bench/RESULTS.md to append")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for seed in range(args.seeds):
            rows.append(one_seed(seed, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
