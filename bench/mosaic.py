"""Multi-label images on constructed 2x2 mosaics of real Fashion-MNIST images (asset:fashion-mnist-mosaic;
see honed/mosaics.py): MobileNetV2 fine-tuned with per-label thresholds tuned on val, against the same
models at 0.5 thresholds and two baselines.

One fixed split (recipes/multilabel-fashion-mosaic.yaml's: seed 42, val carved at random from the train
mosaics; 4,000 train / 1,000 val / 2,000 test mosaics, the test ones built from Fashion-MNIST's test images
only), written once as CSV files so every seed trains on the same rows. Contenders:

- frequency: every row gets each label's training frequency (the better of cutting it at 0.5 and
  predicting every label), the floor any model must clear;
- logistic regression on the 56x56 pixels, one per label, thresholds tuned on val (and at 0.5);
- `honed.fit` on the recipe (MobileNetV2 from ImageNet weights, 64 px, 2 epochs), seeds 0..N-1, scored
  on test with the thresholds it tuned on val and, paired on the same model and rows, 0.5 for every label.

Reported: test micro-F1, macro-F1, mAP and exact-set accuracy per contender, per-label F1 of the fine-tune,
and the paired difference tuned minus 0.5 (mean ± std over seeds, and a paired bootstrap over test rows per
seed). Finished runs are kept under bench/results/mosaic/ and skipped when re-run.

    nice -n 15 env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/mosaic.py [--seeds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "multilabel-fashion-mosaic.yaml"
OUT = ROOT / "bench" / "results" / "mosaic"
KEYS = ("micro_f1", "macro_f1", "map", "exact")


def fixed_split() -> tuple[dict[str, Path], tuple[str, ...]]:
    """The recipe's split (seed 42) as train/val/test CSV files (absolute image path, labels), and the labels."""
    from honed.data.build import load_tables
    from honed.data.labels import LABELS
    from honed.recipe import load_recipe

    paths = {split: OUT / "split" / f"{split}.csv" for split in ("train", "val", "test")}
    names_file = OUT / "split" / "labels.json"
    if all(p.is_file() for p in paths.values()) and names_file.is_file():
        return paths, tuple(json.loads(names_file.read_text()))
    tables = load_tables(load_recipe(RECIPE))
    paths["train"].parent.mkdir(parents=True, exist_ok=True)
    for split, path in paths.items():
        frame = tables.frames[split]
        pd.DataFrame({"path": frame["x"], "labels": frame[LABELS].map("|".join)}).to_csv(path, index=False)
    names_file.write_text(json.dumps(list(tables.labels.names)))
    return paths, tables.labels.names


def truth(frame: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    sets = [set(str(c).split("|")) if isinstance(c, str) else set() for c in frame["labels"]]
    return np.asarray([[n in s for n in names] for s in sets], dtype=np.float64)


def scores(probs: np.ndarray, true: np.ndarray, names: tuple[str, ...], thresholds=None) -> dict[str, float]:
    """honed's label-set metrics plus exact-set accuracy (the predicted set is the true set)."""
    from honed.metrics import label_set_metrics

    cut = np.full(len(names), 0.5) if thresholds is None else np.asarray(thresholds)
    exact = float(((probs >= cut) == (true > 0.5)).all(axis=1).mean())
    return {**label_set_metrics(probs, true, names, thresholds), "exact": exact}


def frequency(frames: dict[str, pd.DataFrame], names: tuple[str, ...]) -> dict[str, float]:
    """Each label's training frequency for every test row: cut at 0.5, or every label predicted (0.0)."""
    rates = truth(frames["train"], names).mean(axis=0)
    test = truth(frames["test"], names)
    probs = np.tile(rates, (len(test), 1))
    return max((scores(probs, test, names, [cut] * len(names)) for cut in (0.5, 1e-9)), key=lambda s: s["micro_f1"])


def pixels(frame: pd.DataFrame) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p), dtype=np.float32).ravel() / 255.0 for p in frame["path"]])


def pixel_lr(frames: dict[str, pd.DataFrame], names: tuple[str, ...]) -> dict[str, object]:
    """One logistic regression per label on the raw pixels; thresholds tuned on val, and at 0.5."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from honed.metrics import best_thresholds

    cached = OUT / "pixel-lr.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    x = {k: pixels(f) for k, f in frames.items()}
    y = {k: truth(f, names) for k, f in frames.items()}
    model = OneVsRestClassifier(LogisticRegression(C=0.1, max_iter=1000)).fit(x["train"], y["train"])
    cut = list(best_thresholds(model.predict_proba(x["val"]), y["val"]))
    probs = model.predict_proba(x["test"])
    result = {"tuned": scores(probs, y["test"], names, cut), "half": scores(probs, y["test"], names), "thresholds": cut}
    cached.write_text(json.dumps(result, indent=1))
    return result


def finetune(paths: dict[str, Path], names: tuple[str, ...], seed: int) -> dict[str, object]:
    """honed.fit on the recipe and the split files, this seed; test scores with its tuned thresholds and at 0.5
    (test probabilities kept as .npy beside the result, for the paired bootstrap)."""
    import honed
    from honed.inference.predict import predict_frame

    cached = OUT / f"finetune-seed{seed}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    run = honed.fit(str(RECIPE), overrides={"seed": seed, "output_dir": str(OUT / f"run-seed{seed}"),
                                            "data.train": str(paths["train"]), "data.val": str(paths["val"]),
                                            "data.test": str(paths["test"]), "data.max_rows": {}},
                    overwrite=True, quiet=True)
    test = pd.read_csv(paths["test"])
    probs = predict_frame(run.model_dir, test["path"].tolist())[[f"prob_{n}" for n in names]].to_numpy()
    np.save(OUT / f"test-probs-seed{seed}.npy", probs)
    thresholds = list(run.labels.thresholds)
    result = {"tuned": scores(probs, truth(test, names), names, thresholds),
              "half": scores(probs, truth(test, names), names, None), "thresholds": thresholds,
              "reported_test_micro_f1": run.metrics["test_micro_f1"], "train_seconds": run.metrics["train_seconds"],
              "load_average": os.getloadavg()[0], "torch_threads": _threads()}
    cached.write_text(json.dumps(result, indent=1))
    return result


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def bootstrap(probs: np.ndarray, true: np.ndarray, thresholds: list[float], rounds: int = 1000) -> dict[str, tuple]:
    """Paired bootstrap over test rows of micro- and macro-F1, tuned thresholds minus 0.5: (mean, 2.5%, 97.5%)."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    tuned, half = probs >= np.asarray(thresholds), probs >= 0.5
    diffs: dict[str, list[float]] = {"micro": [], "macro": []}
    for _ in range(rounds):
        i = rng.integers(0, len(true), len(true))
        for average, found in diffs.items():
            found.append(f1_score(true[i], tuned[i], average=average, zero_division=0)
                         - f1_score(true[i], half[i], average=average, zero_division=0))
    return {k: (float(np.mean(d)), float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5)))
            for k, d in diffs.items()}


def _line(name: str, s: dict[str, float]) -> str:
    return f"{name}: " + ", ".join(f"{k} {s[k]:.4f}" for k in KEYS)


def report(runs: list[dict], names: tuple[str, ...], test: np.ndarray) -> None:
    """Per seed: both threshold rules, per-label F1 and the bootstrap; then the paired means over seeds."""
    for seed, run in enumerate(runs):
        print(_line(f"MobileNetV2 seed {seed}, tuned thresholds", run["tuned"]) + f" ({run['train_seconds']:.0f} s "
              f"training; thresholds {', '.join(f'{t:.2f}' for t in run['thresholds'])})")
        print(_line(f"MobileNetV2 seed {seed}, 0.5 thresholds", run["half"]))
        print("  per-label F1 tuned / 0.5: " + ", ".join(
            f"{n} {run['tuned'][f'f1_{n}']:.3f} / {run['half'][f'f1_{n}']:.3f}" for n in names))
        boot = bootstrap(np.load(OUT / f"test-probs-seed{seed}.npy"), test, run["thresholds"])
        for k, (mean, low, high) in boot.items():
            print(f"  {k}-F1 tuned - 0.5, paired bootstrap over test rows: {mean:+.4f} (95% {low:+.4f} .. {high:+.4f})")
    for k in KEYS[:2] + KEYS[3:]:
        diffs = [run["tuned"][k] - run["half"][k] for run in runs]
        spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        print(f"{k}: tuned {statistics.mean(r['tuned'][k] for r in runs):.4f} vs 0.5 "
              f"{statistics.mean(r['half'][k] for r in runs):.4f}; paired difference {statistics.mean(diffs):+.4f} "
              f"± {spread:.4f} over {len(diffs)} seeds")
    print(f"map (threshold-free): {statistics.mean(r['tuned']['map'] for r in runs):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    paths, names = fixed_split()
    frames = {k: pd.read_csv(p) for k, p in paths.items()}
    test = truth(frames["test"], names)
    sizes = pd.Series(test.sum(axis=1)).value_counts(normalize=True).sort_index()
    print(f"split { {k: len(f) for k, f in frames.items()} }; test label-set sizes: "
          + ", ".join(f"{int(k)} {v:.3f}" for k, v in sizes.items()) + "; test label rates: "
          + ", ".join(f"{n} {r:.3f}" for n, r in zip(names, test.mean(axis=0))))
    print(_line("frequency baseline", frequency(frames, names)))
    lr = pixel_lr(frames, names)
    print(_line("pixel logistic regression, val-tuned thresholds", lr["tuned"]))
    print(_line("pixel logistic regression, 0.5 thresholds", lr["half"]))
    report([finetune(paths, names, seed) for seed in range(args.seeds)], names, test)


if __name__ == "__main__":
    main()
