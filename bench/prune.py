"""Benchmark: one-shot global magnitude pruning at several sparsities, each with recovery fine-tuning.

    nice -n 5 env HF_HUB_OFFLINE=1 .venv/bin/python bench/prune.py [MODEL_DIR] \\
        [--sparsities 0.3 0.5 0.7] [--recover-epochs 1]

Sparsity 0 is the control: the same recovery epoch with nothing pruned (does "recovery" just train more?).

Without MODEL_DIR it first fine-tunes bench/recipes/techniques-text.yaml (MiniLM, 400 train rows)
into bench/results/prune/base. Prints, per sparsity, the test accuracy right after pruning and after
recovery, parameters, non-zero parameters, weights on disk (plain and gzip'd) and CPU latency; the
full reports go to bench/results/prune/sP/prune.json. Runs on one torch thread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import honed

OUT = Path(__file__).resolve().parent / "results" / "prune"
RECIPE = Path(__file__).resolve().parent / "recipes" / "techniques-text.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=None, help="a fine-tuned model folder (default: train one)")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--recover-epochs", type=int, default=1)
    parser.add_argument(
        "--base-epochs", type=int, default=3, help="epochs of the base fine-tune when MODEL is not given"
    )
    parser.add_argument("--out", type=Path, default=OUT, help="results folder (default bench/results/prune)")
    parser.add_argument(
        "--scope", default="global", choices=["global", "layer"], help="global or per-layer magnitude ranking"
    )
    args = parser.parse_args()
    out = args.out
    torch.set_num_threads(1)
    model = Path(args.model) if args.model else out / "base" / "model"
    if not (model / "honed.json").is_file():
        honed.fit(RECIPE, quiet=True, output_dir=str(out / "base"), train__epochs=args.base_epochs, overwrite=True)
    rows = []
    for sparsity in args.sparsities:
        result = honed.prune(
            model,
            sparsity,
            scope=args.scope,
            recover_epochs=args.recover_epochs,
            output=out / f"s{sparsity:g}",
            overwrite=True,
            quiet=True,
        )
        before, after = result["before"], result["after"]
        rec = result.get("recovered", {"test_accuracy": float("nan")})  # --recover-epochs 0: none
        rows.append(
            {
                "sparsity": sparsity,
                "acc_base": before["test_accuracy"],
                "acc_pruned": after["test_accuracy"],
                "acc_recovered": rec["test_accuracy"],
                "params": after["params"],
                "nonzero_base": before["nonzero_params"],
                "nonzero": after["nonzero_params"],
                "weights_mb": after["weights_mb"],
                "gzip_mb_base": before["weights_gzip_mb"],
                "gzip_mb": after["weights_gzip_mb"],
                "latency_ms_base": before["latency_ms"],
                "latency_ms": after["latency_ms"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(
        f"{'sparsity':>8} {'acc base':>8} {'pruned':>7} {'recov.':>7} {'params':>10} "
        f"{'non-zero':>10} {'MB':>6} {'gzip MB':>12} {'ms/ex base->pruned':>19}"
    )
    for r in rows:
        print(
            f"{r['sparsity']:>8.1f} {r['acc_base']:>8.4f} {r['acc_pruned']:>7.4f} "
            f"{r['acc_recovered']:>7.4f} {r['params']:>10,} "
            f"{r['nonzero']:>10,} {r['weights_mb']:>6.1f} {r['gzip_mb_base']:>5.1f}->{r['gzip_mb']:<5.1f} "
            f"{r['latency_ms_base']:>8.2f}->{r['latency_ms']:.2f}"
        )
    (out / "summary.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
