"""Domain-adaptive pretraining with a larger in-domain corpus, on the techniques text task
(bench/recipes/techniques-text.yaml: MiniLM, Rotten Tomatoes fresh vs rotten split by movie,
400/160/480 rows, max_length 64, 3 epochs).

Corpus: the texts of recipes/quickstart.yaml's training split (4000 rows, labels unused), minus every
row whose movie appears in the techniques task's val or test split for any benchmarked seed (the
split is seeded, so each seed holds out other movies), minus any text equal to a held-out text.
`honed pretrain` runs masked-LM on it (pretrain.data = that corpus) for 1 epoch; the techniques
recipe is then fine-tuned from RUN_DIR/backbone for each seed and compared with the plain-MiniLM
baseline already stored by bench/techniques.py (bench/results/techniques/text/baseline-sN.json, same
recipe, same machine, 1 torch thread) - those baselines are reused, not re-run.

    HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python bench/pretrain.py --seeds 0 1 2 --rows 2000
    HF_HUB_OFFLINE=1 .venv/bin/python bench/pretrain.py --backbone-only bench/results/transfer/_models/dapt
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
REPO = BENCH.parent
TASK = BENCH / "recipes" / "techniques-text.yaml"
CORPUS_RECIPE = REPO / "recipes" / "quickstart.yaml"
BASELINES = BENCH / "results" / "techniques" / "text"
RESULTS = BENCH / "results" / "pretrain"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def build_corpus(seeds: list[int], rows: int, out: Path) -> dict:
    """Writes the pretraining texts to `out` (column text); returns the leak-check counts."""
    import pandas as pd

    from honed.data.build import load_tables
    from honed.recipe import load_recipe

    train = load_tables(load_recipe(str(CORPUS_RECIPE))).frames["train"]
    held_movies: set[str] = set()
    held_texts: set[str] = set()
    for seed in seeds:
        frames = load_tables(load_recipe(str(TASK), {"seed": seed})).frames
        for split in ("val", "test"):
            held_movies |= set(frames[split]["group"].astype(str))
            held_texts |= set(frames[split]["x"].astype(str))
    keep = train[~train["group"].astype(str).isin(held_movies) & ~train["x"].astype(str).isin(held_texts)]
    keep = keep.head(rows)
    assert not set(keep["x"].astype(str)) & held_texts and not set(keep["group"].astype(str)) & held_movies
    pd.DataFrame({"text": keep["x"].astype(str)}).to_csv(out, index=False)
    return {
        "quickstart_train_rows": len(train),
        "held_out_movies": len(held_movies),
        "held_out_texts": len(held_texts),
        "corpus_rows": len(keep),
        "overlap_texts": 0,
        "overlap_movies": 0,
    }


def honed(verb: str, recipe: Path, overrides: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).with_name("honed")), verb, str(recipe), *overrides, "--quiet", "--overwrite"],
        check=True,
        env=ENV,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=2000, help="at most this many corpus texts")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument(
        "--backbone-only",
        metavar="DIR",
        type=Path,
        help="only run the MLM and keep its run folder in DIR (DIR/backbone; e.g. for bench/transfer.py --part fusion)",
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="honed-pretrain-bench-") as tmp:
        scratch = Path(tmp)
        corpus = scratch / "corpus.csv"
        check = build_corpus(args.seeds, args.rows, corpus)
        print("corpus:", json.dumps(check), flush=True)
        run = args.backbone_only or scratch / "mlm"
        wall = honed(
            "pretrain",
            TASK,
            [
                f"output_dir={run}",
                f"pretrain.data={corpus}",
                "pretrain.epochs=1",
                f"pretrain.lr={args.lr}",
                "pretrain.batch_size=32",
            ],
        )
        summary = json.loads((run / "pretrain.json").read_text())
        mlm = {
            **check,
            **{k: summary[k] for k in ("objective", "rows", "steps", "loss_per_epoch")},
            "wall_s": round(wall, 1),
        }
        if not args.backbone_only:
            (RESULTS / "mlm.json").write_text(json.dumps(mlm, indent=1))
        print("mlm:", json.dumps(mlm), flush=True)
        if args.backbone_only:
            print(f"backbone kept in {run / 'backbone'}")
            return
        rows = []
        for seed in args.seeds:
            out = scratch / f"ft-{seed}"
            wall = honed(
                "train",
                TASK,
                [f"output_dir={out}", f"seed={seed}", f"model.name={run / 'backbone'}", "report.enabled=false"],
            )
            dapt = json.loads((out / "results.json").read_text())["test_accuracy"]
            base = json.loads((BASELINES / f"baseline-s{seed}.json").read_text())["test_accuracy"]
            row = {
                "seed": seed,
                "baseline_test_accuracy": base,
                "dapt_test_accuracy": dapt,
                "finetune_wall_s": round(wall, 1),
            }
            (RESULTS / f"dapt-s{seed}.json").write_text(json.dumps(row, indent=1))
            rows.append(row)
            print(json.dumps(row), flush=True)
    if rows:

        def mean(key: str) -> float:
            return sum(r[key] for r in rows) / len(rows)

        print(
            f"mean test accuracy: baseline {mean('baseline_test_accuracy'):.4f}, "
            f"after MLM {mean('dapt_test_accuracy'):.4f}"
        )


if __name__ == "__main__":
    main()
