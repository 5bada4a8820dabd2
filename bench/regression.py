"""Regression on Whissell pleasantness: ridge on frozen mean-pooled MiniLM embeddings vs MiniLM fine-tuned.

One fixed split (recipes/regression-whissell.yaml's: seed 42, test 25% = 2,186 words, val 500, train
3,000 rows), written once as CSV files so every fine-tune seed trains on the same rows. The ridge
baseline embeds every word with the frozen MiniLM (mean over the attention mask), picks alpha on val
and scores test; the fine-tune runs `honed.fit` on the recipe with seeds 0..N-1 (init and data order
differ, the split does not); then the mean ensemble of those N models (`honed ensemble`, voting mean,
prefit members). Reported: test RMSE, R², Spearman per contender, the paired per-seed difference
(fine-tune minus ridge, mean ± std) and the ensemble against each member. Every finished run is kept under
bench/results/regression/ and skipped when re-run.

    nice -n 5 env OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python bench/regression.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "regression-whissell.yaml"
OUT = ROOT / "bench" / "results" / "regression"
KEYS = ("rmse", "r2", "spearman")


def fixed_split() -> dict[str, Path]:
    """The recipe's split (seed 42) as train/val/test CSV files (word, pleasantness)."""
    from honed.data.build import load_tables
    from honed.data.labels import TARGET
    from honed.recipe import load_recipe

    paths = {split: OUT / "split" / f"{split}.csv" for split in ("train", "val", "test")}
    if all(p.is_file() for p in paths.values()):
        return paths
    tables = load_tables(load_recipe(RECIPE))
    paths["train"].parent.mkdir(parents=True, exist_ok=True)
    for split, path in paths.items():
        frame = tables.frames[split]
        pd.DataFrame({"word": frame["x"], "pleasantness": frame[TARGET + "pleasantness"]}).to_csv(path, index=False)
    return paths


def embed(words: list[str]) -> np.ndarray:
    """Frozen MiniLM features: the mean of the last hidden states over real tokens."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from honed.assets import resolve_model_id

    path = resolve_model_id("sentence-transformers/all-MiniLM-L6-v2")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(words), 256):
            batch = tokenizer(words[i:i + 256], padding=True, truncation=True, max_length=16, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(out)


def scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from honed.metrics import regression_metrics

    return {k: v for k, v in regression_metrics(pred.reshape(-1, 1), true.reshape(-1, 1)).items() if k in KEYS}


def ridge(paths: dict[str, Path]) -> dict[str, float]:
    """Ridge on frozen embeddings; alpha chosen on val among a log grid, refit on train."""
    from sklearn.linear_model import Ridge

    cached = OUT / "ridge.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    frames = {k: pd.read_csv(p, keep_default_na=False) for k, p in paths.items()}
    x = {k: embed(f["word"].astype(str).tolist()) for k, f in frames.items()}
    y = {k: f["pleasantness"].to_numpy(dtype=float) for k, f in frames.items()}
    best = min((10.0 ** e for e in range(-2, 4)),
               key=lambda a: scores(y["val"], Ridge(alpha=a).fit(x["train"], y["train"]).predict(x["val"]))["rmse"])
    result = {"alpha": best, **scores(y["test"], Ridge(alpha=best).fit(x["train"], y["train"]).predict(x["test"]))}
    cached.write_text(json.dumps(result, indent=1))
    return result


def model_dir(seed: int) -> Path:
    return OUT / f"run-seed{seed}" / "model"  # not committed (bench/results/regression/.gitignore)


def finetune(paths: dict[str, Path], seed: int, need_model: bool = False) -> dict[str, float]:
    """honed.fit on the recipe and the fixed split files, this seed; test metrics from the run (run again when
    `need_model` and its model folder is gone, e.g. in a fresh checkout: the figures are then the new run's)."""
    import honed

    cached = OUT / f"finetune-seed{seed}.json"
    if cached.is_file() and (model_dir(seed).is_dir() or not need_model):
        return json.loads(cached.read_text())
    run = honed.fit(str(RECIPE), overrides={"seed": seed, "output_dir": str(OUT / f"run-seed{seed}"),
                                            "data.train": str(paths["train"]), "data.val": str(paths["val"]),
                                            "data.test": str(paths["test"]), "data.max_rows": {}},
                    overwrite=True, quiet=True)
    result = {k: run.metrics[f"test_{k}"] for k in KEYS} | {"train_seconds": run.metrics["train_seconds"]}
    cached.write_text(json.dumps(result, indent=1))
    return result


def ensemble(paths: dict[str, Path], seeds: int) -> dict[str, float]:
    """The mean of the seeds' predicted values (`honed ensemble`, voting mean over the saved models as prefit
    members) on the same split; test metrics."""
    from honed.ensemble import build_ensemble

    cached = OUT / f"ensemble-mean-{seeds}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    tree = yaml.safe_load(RECIPE.read_text())
    tree["data"].update(train=str(paths["train"]), val=str(paths["val"]), test=str(paths["test"]), max_rows={})
    tree |= {"output_dir": str(OUT / f"ensemble-mean-{seeds}"),
            "ensemble": {"method": "voting", "voting": "mean",
                         "members": [{"name": f"seed{i}", "prefit": str(model_dir(i))} for i in range(seeds)]}}
    result = build_ensemble(tree, overwrite=True, quiet=True)
    out = {k: result.metrics["ensemble"][f"test_{k}"] for k in KEYS}
    cached.write_text(json.dumps(out, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    paths = fixed_split()
    base = ridge(paths)
    print(f"ridge on frozen MiniLM (alpha {base['alpha']:g}): " + ", ".join(f"{k} {base[k]:.4f}" for k in KEYS))
    runs = [finetune(paths, seed, need_model=not (OUT / f"ensemble-mean-{args.seeds}.json").is_file())
            for seed in range(args.seeds)]
    for seed, run in enumerate(runs):
        print(f"fine-tuned MiniLM seed {seed}: " + ", ".join(f"{k} {run[k]:.4f}" for k in KEYS)
              + f" ({run['train_seconds']:.0f} s training)")
    for k in KEYS:
        diffs = [run[k] - base[k] for run in runs]
        spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        print(f"{k}: fine-tune {statistics.mean(r[k] for r in runs):.4f} vs ridge {base[k]:.4f}; "
              f"paired difference {statistics.mean(diffs):+.4f} ± {spread:.4f} over {len(diffs)} seeds")

    mixed = ensemble(paths, args.seeds)
    print(f"mean ensemble of the {args.seeds} fine-tunes: " + ", ".join(f"{k} {mixed[k]:.4f}" for k in KEYS))
    for k in KEYS:
        diffs = [mixed[k] - run[k] for run in runs]
        print(f"{k}: ensemble - member {statistics.mean(diffs):+.4f} (min {min(diffs):+.4f}, max {max(diffs):+.4f})")


if __name__ == "__main__":
    main()
