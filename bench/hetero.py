"""Issue 15's heterogeneous text ensembles on the climb benchmark's split (bench/results/climb-rt/data: Rotten
Tomatoes split by movie, 4,000 training reviews, val 1,266, test 2,666, max_length 64). Members:

- three MiniLM fine-tunes (seeds 0-2 of one climb configuration on disk, `l1 head 1e-4`, whose val scores equal
  the baseline's to four decimals) and, once the climb has trained it, all-mpnet-base-v2 (MPNet: another
  architecture, 5x the size);
- TF-IDF (word and character n-grams) + logistic regression (`kind: sklearn, pipeline: tfidf_logreg`);
- a TextCNN and a BiLSTM over MiniLM's frozen word-piece embeddings (`model.source: textrnn`), 5 epochs.

Each member's val and test probabilities are computed once and kept in bench/results/hetero/probs/ (shared
with bench/soup.py for the climb's runs), so a re-run resumes. The combinations are computed from those
probabilities: soft voting (the mean), Caruana's greedy selection with replacement on val (AutoGluon's
default weighting), and blending (a logistic regression fitted on the members' val probabilities). Each is
compared with the best single member by val on the test rows (paired bootstrap), with the members' CPU cost.

    nice -n 10 env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/hetero.py
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from soup import accuracy, bootstrap  # noqa: E402  (bench/soup.py)

BENCH = Path(__file__).resolve().parent
CLIMB = BENCH / "results" / "climb-rt"
OUT = BENCH / "results" / "hetero"
RECIPE = CLIMB / "best_recipe.yaml"
MINILM = [CLIMB / "runs" / "c-fe38bc0562" / f"pair-{i}" / "model" for i in range(3)]
MPNET = CLIMB / "runs" / "c-305a75b751" / "pair-0" / "model"
TEXTRNN = {
    "textcnn": ["model.name=textcnn", "model.args={filters: 100, widths: [3, 4, 5]}"],
    "bilstm": ["model.name=bilstm", "model.args={hidden: 256, layers: 1}"],
}


def frames() -> tuple[dict, list[str]]:
    from honed.data.build import load_tables
    from honed.recipe import load_recipe

    tables = load_tables(load_recipe(RECIPE))
    return tables.frames, list(tables.labels.names)


def model_probs(name: str, folder: Path, data: dict) -> dict:
    """{val, test, ms}: a saved model folder's probabilities (cached) and its ms per test example."""
    climb_run = folder.parent.parent.name + "-" + folder.parent.name
    shared = BENCH / "results" / "soup" / "probs" / f"{climb_run}.npz"  # bench/soup.py's copy of a climb run's
    cache = shared if CLIMB in folder.parents else OUT / "probs" / f"{name}.npz"
    if cache.is_file():
        saved = np.load(cache)
        return {"val": saved["val"], "test": saved["test"], "ms": float(saved["ms"])}
    from honed.inference import load_predictor

    predictor = load_predictor(folder)  # a fine-tune or an sklearn member: columns in its labels' order
    val = predictor.predict_proba(data["val"])
    start = time.perf_counter()
    test = predictor.predict_proba(data["test"])
    ms = (time.perf_counter() - start) * 1000 / len(data["test"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, val=val, test=test, ms=ms)
    return {"val": val, "test": test, "ms": ms}


def tfidf_folder(data: dict, labels: list[str]) -> Path:
    from honed.ensemble.classical import fit_sklearn_member
    from honed.ensemble.spec import MemberSpec
    from honed.recipe import load_recipe

    folder = OUT / "runs" / "tfidf"
    if not (folder / "sklearn.json").is_file():
        member = MemberSpec(name="tfidf", kind="sklearn", pipeline="tfidf_logreg")
        fit_sklearn_member(member, data["train"], tuple(labels), load_recipe(RECIPE), folder, overwrite=True)
    return folder


def textrnn_folder(variant: str) -> Path:
    """`honed train` of the climb's baseline recipe as a TextCNN/BiLSTM (fresh process, skipped when saved)."""
    run_dir = OUT / "runs" / variant
    if not (run_dir / "model" / "honed.json").is_file():
        command = [sys.executable, "-m", "honed.cli", "train", str(RECIPE), "--quiet", "--overwrite",
                   f"output_dir={run_dir}", "model.source=textrnn", "optim.lr=1e-3", "train.epochs=5",
                   "train.checkpoint_every_steps=null", *TEXTRNN[variant]]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        subprocess.run(command, check=True, env=env, cwd=BENCH.parent)
    return run_dir / "model"


def caruana(val: list[np.ndarray], y: np.ndarray, rounds: int = 25) -> np.ndarray:
    """Greedy forward selection with replacement (Caruana et al. 2004): member weights maximising val accuracy
    (ties broken by log loss)."""
    counts = np.zeros(len(val))
    total = np.zeros_like(val[0])
    for _ in range(rounds):
        mixes = [(total + v) / (counts.sum() + 1) for v in val]
        best = max(range(len(val)), key=lambda i: (accuracy(mixes[i], y),
                                                   float(np.mean(np.log(mixes[i][np.arange(len(y)), y] + 1e-12)))))
        counts[best] += 1
        total += val[best]
    return counts / counts.sum()


def blend(val: list[np.ndarray], test: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    meta = LogisticRegression(max_iter=1000).fit(np.hstack(val), y)
    return meta.predict_proba(np.hstack(test))


def combine(members: dict[str, dict], y: dict) -> list[tuple[str, np.ndarray, float]]:
    """(name, test probabilities, ms per example) of every combination worth a line."""
    names = list(members)
    groups = {"3 MiniLM seeds": [n for n in names if n.startswith("minilm")], "all members": names,
              "MiniLM s0 + TF-IDF + TextCNN + BiLSTM": [n for n in names if n in ("minilm-s0", "tfidf", "textcnn",
                                                                                 "bilstm")]}
    if "mpnet" in members:
        groups["mpnet + 3 MiniLM"] = ["mpnet", *groups["3 MiniLM seeds"]]
        groups["mpnet + TF-IDF"] = ["mpnet", "tfidf"]
    rows = []
    for label, group in groups.items():
        val, test = [members[n]["val"] for n in group], [members[n]["test"] for n in group]
        ms = sum(members[n]["ms"] for n in group)
        rows.append((f"soft vote: {label}", np.mean(test, axis=0), ms))
        weights = caruana(val, y["val"])
        used = [n for n, w in zip(group, weights, strict=True) if w > 0]
        rows.append((f"greedy selection: {label} (uses {', '.join(used)})",
                     np.tensordot(weights, np.asarray(test), axes=1), sum(members[n]["ms"] for n in used)))
        rows.append((f"blend (LR on val probabilities): {label}", blend(val, test, y["val"]), ms))
    return rows


def main() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    data, labels = frames()
    y = {s: np.asarray([labels.index(v) for v in data[s]["label"]]) for s in ("val", "test")}
    folders = {f"minilm-s{i}": f for i, f in enumerate(MINILM)}
    folders["tfidf"] = tfidf_folder(data, labels)
    folders.update({v: textrnn_folder(v) for v in TEXTRNN})
    if (MPNET / "honed.json").is_file():
        folders["mpnet"] = MPNET
    members = {name: model_probs(name, folder, data) for name, folder in folders.items()}
    best = max(members, key=lambda n: accuracy(members[n]["val"], y["val"]))
    best_correct = members[best]["test"].argmax(1) == y["test"]
    print(f"val {len(y['val'])} rows, test {len(y['test'])} rows; best member by val: {best}")
    for name, m in members.items():
        print(f"| {name} | {accuracy(m['val'], y['val']):.4f} | {accuracy(m['test'], y['test']):.4f} | "
              f"{m['ms']:.2f} ms |")
    for name, probs, ms in combine(members, y):
        d = bootstrap(probs.argmax(1) == y["test"], best_correct)
        print(f"| {name} | {accuracy(probs, y['test']):.4f} | {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}] | {ms:.1f} ms |")
    disagree = {f"{a}/{b}": float(np.mean(members[a]["test"].argmax(1) != members[b]["test"].argmax(1)))
                for a, b in itertools.combinations(members, 2)}
    print("test disagreement between members:", json.dumps({k: round(v, 3) for k, v in disagree.items()}))


if __name__ == "__main__":
    main()
