"""Issue 15's cheap members, measured on the quickstart split (Rotten Tomatoes, split by movie, 4,000
training reviews, max_length 64): the TF-IDF + logistic regression ensemble member alone (fitted and
predicted through honed's `kind: sklearn` code path, on the same rows a fine-tune sees) for three split
seeds, with its CPU cost; and the assembled all-mpnet-base-v2 loading offline and predicting (load
seconds, ms per example at batch 32 against MiniLM's, untrained heads: a cost check, not accuracy).

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python bench/members.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from honed.data.build import load_tables  # noqa: E402
from honed.ensemble.classical import fit_sklearn_member  # noqa: E402
from honed.ensemble.spec import MemberSpec  # noqa: E402
from honed.inference import load_predictor  # noqa: E402
from honed.recipe import load_recipe  # noqa: E402

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "quickstart.yaml"


def tfidf(seed: int, scratch: Path) -> tuple[float, float, float]:
    """(test accuracy, fit seconds, predict ms/example) of the tfidf_logreg member on the seed's split."""
    recipe = load_recipe(RECIPE, {"seed": seed})
    tables = load_tables(recipe)
    train, test = tables.frames["train"], tables.frames["test"]
    start = time.perf_counter()
    member = MemberSpec(name="tfidf", kind="sklearn", pipeline="tfidf_logreg")
    folder = fit_sklearn_member(member, train, tables.labels.names, recipe, scratch / f"s{seed}", overwrite=True)
    fit_s = time.perf_counter() - start
    predictor = load_predictor(folder)
    start = time.perf_counter()
    predicted = predictor.predict(test)
    ms = (time.perf_counter() - start) * 1000 / len(test)
    return float(np.mean(np.asarray(predicted) == test["label"].to_numpy())), fit_s, ms


def forward_cost(name: str, texts: list[str]) -> tuple[float, float]:
    """(load seconds, ms per example at batch 32) of a text model with a fresh 2-class head."""
    import torch

    from honed.data.labels import LabelMap
    from honed.models.build import build_model

    start = time.perf_counter()
    recipe = load_recipe(RECIPE, {"model.name": name})
    model = build_model(recipe, LabelMap.from_labels(["fresh", "rotten"])).eval()
    load_s = time.perf_counter() - start
    batch = model.preprocess(texts[:32], truncation=True, max_length=64, padding=True, return_tensors="pt")
    timings = []
    with torch.no_grad():
        for _ in range(3):
            start = time.perf_counter()
            logits = model(**batch)
            timings.append((time.perf_counter() - start) * 1000 / 32)
    assert torch.isfinite(logits).all()
    return load_s, statistics.median(timings)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        rows = [tfidf(seed, Path(scratch)) for seed in (42, 43, 44)]
    accs = [r[0] for r in rows]
    print(
        "TF-IDF + LR (tfidf_logreg defaults) test accuracy per split seed 42/43/44: "
        + ", ".join(f"{a:.4f}" for a in accs)
        + f"; mean {statistics.mean(accs):.4f} ± {statistics.stdev(accs):.4f}"
    )
    print(
        f"  fit {statistics.median(r[1] for r in rows):.1f} s on 4,000 reviews; predict "
        f"{statistics.median(r[2] for r in rows):.3f} ms/example"
    )
    texts = load_tables(load_recipe(RECIPE)).frames["test"]["x"].tolist()
    for name in ("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-mpnet-base-v2"):
        load_s, ms = forward_cost(name, texts)
        print(f"{name}: loads offline in {load_s:.1f} s, forward {ms:.1f} ms/example (batch 32, max_length 64)")


if __name__ == "__main__":
    main()
