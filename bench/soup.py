"""Issue 15's model soups (Wortsman et al. 2022) on Rotten Tomatoes: the climb benchmark's MiniLM fine-tunes
(bench/results/climb-rt: one split by movie, 4,000 training reviews, val 10%, test 20%, max_length 64; the
same pretrained init, different seeds and hyperparameters) are the ingredients, as a tune study's trials
would be. Measured through honed's own soup code (honed/ensemble/soup.py):

- the greedy soup over every full-size MiniLM fine-tune on disk (sorted by val accuracy, each added when
  the average keeps or raises val accuracy) and the uniform soup of them all, against the best member by
  val and the soft-voting ensemble of every member (test accuracy, paired bootstrap on the test rows);
- per configuration with its three seeds on disk (the first CONFIGS by id): the uniform and greedy soup of
  the three seeds against the mean and the best-by-val of the seeds (paired per configuration);
- the cost: a soup is one model's forward; soft voting is one per member (ms per test example, 1 thread).

Every member's val/test probabilities and every soup's scores are kept in bench/results/soup/, so a re-run
resumes. `nice -n 10 env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/soup.py`

`bench/soup.py fmnist` does the same for the Fashion-MNIST climb's MobileNetV2 fine-tunes (bench/results/climb-
fmnist, kept in bench/results/soup-fmnist/), the three seeds of its first CONFIGS configurations (by id) only:
a CNN soup's batch-norm statistics are recomputed on training rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from honed.data.build import load_tables  # noqa: E402
from honed.ensemble.members import Member  # noqa: E402
from honed.ensemble.soup import ARCHITECTURE_KEYS, make_soup  # noqa: E402
from honed.inference import ModelPredictor, saved_recipe  # noqa: E402

BENCH = Path(__file__).resolve().parent
CLIMB = BENCH / "results" / "climb-rt"  # `bench/soup.py fmnist`: climb-fmnist and soup-fmnist
OUT = BENCH / "results" / "soup"
CONFIGS = 5  # configurations whose three-seed soups are made (each costs about 6 passes over val/test)


def ingredients(configs: int | None = None) -> list[Path]:
    """Every model folder of the climb whose architecture is the baseline's (full depth, one head); with
    `configs`, only the seeds of the first that many configurations (by id) with three seeds on disk."""
    folders = sorted(p for p in (CLIMB / "runs").glob("c-*/pair-*/model") if (p / "honed.json").is_file())
    shape = {k: saved_recipe(folders[0]).model.model_dump(mode="json").get(k) for k in ARCHITECTURE_KEYS}
    keep = []
    for folder in folders:
        model = saved_recipe(folder).model.model_dump(mode="json")
        if {k: model.get(k) for k in ARCHITECTURE_KEYS} == shape and model.get("keep_layers") is None:
            keep.append(folder)
    if configs is not None:
        seeds: dict[str, list[Path]] = {}
        for folder in keep:
            seeds.setdefault(folder.parent.parent.name, []).append(folder)
        keep = [f for _, group in sorted(seeds.items()) if len(group) == 3 for f in group][: 3 * configs]
    return keep


def name_of(folder: Path) -> str:
    return f"{folder.parent.parent.name}-{folder.parent.name}"


def member_probs(folder: Path, frames: dict) -> dict:
    """{val, test: probabilities, ms: per test example} of one member, cached on disk."""
    cache = OUT / "probs" / f"{name_of(folder)}.npz"
    if cache.is_file():
        saved = np.load(cache)
        return {"val": saved["val"], "test": saved["test"], "ms": float(saved["ms"])}
    predictor = ModelPredictor.load(folder)
    names = list(predictor.labels)
    val = predictor.proba_in(frames["val"], names)
    start = time.perf_counter()
    test = predictor.proba_in(frames["test"], names)
    ms = (time.perf_counter() - start) * 1000 / len(frames["test"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, val=val, test=test, ms=ms)
    return {"val": val, "test": test, "ms": ms}


def soup_scores(key: str, folders: list[Path], probs: list[dict], frames: dict, mode: str, y: dict) -> dict:
    """The soup of `folders` (greedy or uniform): its ingredients and val/test accuracy, cached by `key`."""
    cache = OUT / "soups" / f"{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    members = [Member(name_of(f), f) for f in folders]
    member_val = np.asarray([accuracy(p["val"], y["val"]) for p in probs])
    soup = make_soup(members, frames, member_val, mode, OUT / "models" / key)
    predictor = ModelPredictor.load(soup.folder)
    test = predictor.proba_in(frames["test"], list(predictor.labels))
    result = {"mode": mode, "members": [m.name for m in members], "ingredients": soup.ingredients,
              "val": soup.val_accuracy, "test": accuracy(test, y["test"]),
              "test_correct": (test.argmax(1) == y["test"]).tolist()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result))
    return result


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(probs.argmax(1) == y))


def bootstrap(a: np.ndarray, b: np.ndarray, rounds: int = 2000) -> tuple[float, float, float]:
    """Mean of a - b (per-row correctness) and its 95% paired bootstrap interval over the test rows."""
    rng = np.random.default_rng(0)
    diff = a.astype(float) - b.astype(float)
    means = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(rounds)]
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    import torch

    global CLIMB, OUT
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("climb", nargs="?", default="rt", choices=("rt", "fmnist"), help="whose fine-tunes")
    fmnist = parser.parse_args().climb == "fmnist"
    if fmnist:  # 80 fine-tunes on disk; the seeds of CONFIGS configurations fit a session on 2 cores
        CLIMB, OUT = BENCH / "results" / "climb-fmnist", BENCH / "results" / "soup-fmnist"
    torch.set_num_threads(1)
    folders = ingredients(CONFIGS if fmnist else None)
    frames = load_tables(saved_recipe(folders[0])).frames
    names = list(ModelPredictor.load(folders[0]).labels)
    y = {s: np.asarray([names.index(v) for v in frames[s]["label"]]) for s in ("val", "test")}
    probs = [member_probs(f, frames) for f in folders]
    print(f"{len(folders)} fine-tunes of {CLIMB.name}; val {len(y['val'])} rows, test {len(y['test'])} rows")
    everything(folders, probs, frames, y)
    per_config(folders, probs, frames, y)


def everything(folders: list[Path], probs: list[dict], frames: dict, y: dict) -> None:
    vals = [accuracy(p["val"], y["val"]) for p in probs]
    best = int(np.argmax(vals))
    best_correct = probs[best]["test"].argmax(1) == y["test"]
    vote = np.mean([p["test"] for p in probs], axis=0)
    vote_val = accuracy(np.mean([p["val"] for p in probs], axis=0), y["val"])
    print(f"best member by val: {name_of(folders[best])} val {vals[best]:.4f} test {best_correct.mean():.4f}")
    print(f"members' test accuracy: mean {statistics.mean(accuracy(p['test'], y['test']) for p in probs):.4f}, "
          f"max {max(accuracy(p['test'], y['test']) for p in probs):.4f}")
    ms = statistics.median(p["ms"] for p in probs)
    d = bootstrap(vote.argmax(1) == y["test"], best_correct)
    print(f"soft vote of all {len(probs)}: val {vote_val:.4f} test {accuracy(vote, y['test']):.4f}, minus best member "
          f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}], {ms * len(probs):.1f} ms/example")
    for mode in ("greedy", "uniform"):
        s = soup_scores(f"all-{mode}", folders, probs, frames, mode, y)
        d = bootstrap(np.asarray(s["test_correct"]), best_correct)
        print(f"{mode} soup of all ({len(s['ingredients'])} ingredients): val {s['val']:.4f} test {s['test']:.4f}, "
              f"minus best member {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}], {ms:.1f} ms/example")


def per_config(folders: list[Path], probs: list[dict], frames: dict, y: dict) -> None:
    configs: dict[str, list[int]] = {}
    for i, folder in enumerate(folders):
        configs.setdefault(folder.parent.parent.name, []).append(i)
    rows = {"greedy": [], "uniform": []}
    complete = [(config, index) for config, index in sorted(configs.items()) if len(index) == 3]
    for config, index in complete[:CONFIGS]:
        tests = [accuracy(probs[i]["test"], y["test"]) for i in index]
        best = tests[int(np.argmax([accuracy(probs[i]["val"], y["val"]) for i in index]))]
        for mode in rows:
            s = soup_scores(f"{config}-{mode}", [folders[i] for i in index], [probs[i] for i in index], frames, mode, y)
            rows[mode].append((s["test"] - statistics.mean(tests), s["test"] - best))
            print(f"{config} {mode}: seeds {', '.join(f'{t:.4f}' for t in tests)} -> soup {s['test']:.4f} "
                  f"({len(s['ingredients'])} of 3)")
    for mode, diffs in rows.items():
        if len(diffs) > 1:
            mean, best = zip(*diffs, strict=True)
            print(f"{mode} soup of 3 seeds, {len(diffs)} configurations: minus the seeds' mean "
                  f"{statistics.mean(mean):+.4f} ± {statistics.stdev(mean):.4f}, minus the best-by-val seed "
                  f"{statistics.mean(best):+.4f} ± {statistics.stdev(best):.4f}")


if __name__ == "__main__":
    main()
