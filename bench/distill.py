"""Issue 15's distillation sweep: which temperature, alpha, training length and transfer data make a small
student keep its teacher's gain, on the climb benchmark's split of Rotten Tomatoes (by movie; 4,000 training
reviews, val 1,266, test 2,666, max_length 64; the same rows as bench/climb.py rt).

- Teacher: MiniLM fine-tuned with the climb's naive baseline recipe (HF Trainer's defaults, seed 42).
- Student: a TextCNN over MiniLM's frozen word-piece embeddings (`model.source: textrnn`, lr 1e-3), alone or
  with `techniques: [{name: distill, teacher: <the teacher's model folder>, temperature: T, alpha: A}]`.
- Transfer data: the 4,866 other training-side reviews of the same split (never val or test rows: checked),
  their labels thrown away and replaced by the teacher's prediction; with alpha 1 the student learns only the
  teacher's soft labels on them (Hinton et al.'s transfer set). Its control, `alone-eN-transfer`, trains on
  the same 8,866 rows with the teacher's hard labels and no distill (self-training on pseudo-labels), so a
  transfer variant's Δ is what the soft labels add at the same rows and steps.

Each run is `honed train` in a fresh process; its results.json is kept as bench/results/distill/<variant>-
s<seed>.json and a stored run is skipped, so the sweep resumes. Screen on seed 42, then rerun the finalists on
more seeds (`--variants ... --seeds 43,44`); the table pairs each distilled variant with the student alone
trained for as long (on the same rows), seed by seed (mean ± std of the per-seed differences), and states the
share of the teacher's gain over the student alone (4,000 rows, same epochs) each variant keeps.

    nice -n 10 env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/distill.py
    .venv/bin/python bench/distill.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "results" / "distill"
DATA = OUT / "data"  # the split's CSVs (not committed: bench/results/.gitignore's data/)
TEACHER = OUT / "runs" / "teacher"
STUDENT = ["model.source=textrnn", "model.name=textcnn", "model.args={filters: 100, widths: [3, 4, 5]}",
           "optim.lr=1e-3", "train.checkpoint_every_steps=null"]


def variant(epochs: int, temperature: float | None = None, alpha: float | None = None,
            transfer: bool = False) -> tuple[str, list[str]]:
    """(name, overrides): the student alone when temperature is None, else distilled."""
    name = f"alone-e{epochs}" if temperature is None else f"T{temperature:g}-a{alpha:g}-e{epochs}"
    overrides = [*STUDENT, f"train.epochs={epochs}"]
    if temperature is not None:
        overrides.append(f"techniques=[{{name: distill, teacher: {TEACHER / 'model'}, temperature: {temperature}, "
                         f"alpha: {alpha}}}]")
    if transfer:
        name += "-transfer"
        overrides.append(f"data.train={DATA / 'train_transfer.csv'}")
    return name, overrides


VARIANTS = dict(variant(*args) for args in [
    (5,), (15,),
    *[(5, t, a) for t in (1.0, 2.0, 4.0) for a in (0.5, 0.9)],
    (15, 2.0, 0.9), (15, 4.0, 0.9), (5, 2.0, 1.0, True), (15, 2.0, 1.0, True), (5, 4.0, 1.0, True),
    (15, None, None, True),
])


def write_data() -> Path:
    """The climb's split as CSVs plus the transfer pool, and a recipe reading them; kept when already there."""
    from honed.climb.data import load_splits, write_splits
    from honed.recipe import load_recipe, set_dotted

    recipe_path = DATA / "recipe.yaml"
    if recipe_path.is_file():
        return recipe_path
    tree = yaml.safe_load((BENCH / "recipes" / "climb-rt.yaml").read_text(encoding="utf-8"))
    frames, task, labels = load_splits(load_recipe(tree))
    overrides = write_splits(load_recipe(tree), frames, task, labels, DATA)
    full = dict(tree, data={**tree["data"], "max_rows": {}})
    everything, _, _ = load_splits(load_recipe(full))  # the same val/test; train: the whole training side
    pool = everything["train"][~everything["train"]["x"].isin(frames["train"]["x"])]
    for split in ("val", "test"):  # the transfer set must not hold a scored review or movie
        assert not pool["x"].isin(frames[split]["x"]).any() and not pool["group"].isin(frames[split]["group"]).any()
    write_splits(load_recipe(tree), {"train": pool, "val": pool.iloc[:0], "test": pool.iloc[:0]}, task, labels,
                 DATA / "pool")
    for key, value in overrides.items():
        set_dotted(tree, key, value)
    tree.pop("climb", None)
    recipe_path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return recipe_path


def honed_train(recipe: Path, run_dir: Path, overrides: list[str]) -> float:
    """`honed train` in a fresh process; its wall seconds."""
    command = [sys.executable, "-m", "honed.cli", "train", str(recipe), "--quiet", "--overwrite",
               f"output_dir={run_dir}", *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=BENCH.parent)
    if done.returncode != 0:
        raise SystemExit(f"{run_dir.name} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def teacher(recipe: Path) -> dict:
    """The teacher's results (trained once), and the transfer CSV labelled by its predictions."""
    if not (TEACHER / "results.json").is_file():
        honed_train(recipe, TEACHER, ["seed=42"])
    label_pool(TEACHER / "model", DATA / "train_transfer.csv")
    return json.loads((TEACHER / "results.json").read_text())


def label_pool(model: Path, transfer: Path) -> None:
    """`transfer`: the training rows, then the pool with its labels replaced by `model`'s predictions (kept when
    already there)."""
    if transfer.is_file():
        return
    import pandas as pd

    from honed.inference import load_predictor

    pool = pd.read_csv(DATA / "pool" / "train.csv")
    pool["label"] = load_predictor(model).predict(pool.drop(columns=["label"]))  # labels dropped
    both = pd.concat([pd.read_csv(DATA / "train.csv"), pool[["x", "label", "group"]]], ignore_index=True)
    transfer.parent.mkdir(parents=True, exist_ok=True)
    both.to_csv(transfer.with_suffix(".tmp"), index=False)
    transfer.with_suffix(".tmp").replace(transfer)


def chosen(text: str, variants: dict) -> list[str]:
    """The comma-separated variant names of --variants, each one of `variants`."""
    names = [v for v in text.split(",") if v]
    unknown = [v for v in names if v not in variants]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(variants)}")
    return names


def run_one(recipe: Path, name: str, seed: int, folder: Path = OUT, variants: dict | None = None) -> dict:
    """One stored run (folder/<name>-s<seed>.json), trained when missing; `variants` defaults to this sweep's."""
    overrides = (variants or VARIANTS)[name]
    out = folder / f"{name}-s{seed}.json"
    if out.is_file():
        return json.loads(out.read_text())
    run_dir = folder / "runs" / f"{name}-s{seed}"
    seconds = honed_train(recipe, run_dir, [*overrides, f"seed={seed}"])
    results = json.loads((run_dir / "results.json").read_text())
    here = f"{BENCH.parent}/"  # stored relative to the repository root
    results.update(variant=name, seed=seed, overrides=[o.replace(here, "") for o in overrides],
                   process_seconds=seconds,
                   threads=os.environ.get("OMP_NUM_THREADS", "1"))
    out.write_text(json.dumps(results, indent=1))
    return results


def twin(name: str, rows: bool = True) -> str:
    """The student alone trained for as many epochs as `name` (and, with `rows`, on the same rows)."""
    epochs = "alone-e" + name.split("-e")[1].split("-")[0]
    return epochs + ("-transfer" if rows and name.endswith("-transfer") else "")


def cost() -> dict[str, float]:
    """ms per test example (one thread, batches of eval_batch_size) of the teacher and a student, kept in cost.json."""
    path = OUT / "cost.json"
    if path.is_file():
        return json.loads(path.read_text())
    import pandas as pd
    import torch

    from honed.inference import load_predictor

    torch.set_num_threads(1)
    test = pd.read_csv(DATA / "test.csv").drop(columns=["label"])
    figures = {}
    for name, folder in (("teacher (MiniLM)", TEACHER), ("student (TextCNN)", OUT / "runs" / "alone-e5-s42")):
        predictor = load_predictor(folder / "model")
        predictor.predict_proba(test.iloc[:64])  # warm-up
        started = time.perf_counter()
        predictor.predict_proba(test)
        figures[name] = (time.perf_counter() - started) * 1000 / len(test)
    path.write_text(json.dumps(figures, indent=1))
    return figures


def report(teacher_test: float) -> str:
    stored = [json.loads(p.read_text()) for p in sorted(OUT.glob("*-s*.json"))]
    runs = {(r["variant"], r["seed"]): r for r in stored}
    lines = [f"teacher (MiniLM, seed 42): test {teacher_test:.4f}",
             "| student | seeds | test per seed | mean | Δ vs its control: alone, same epochs and rows (paired "
             "by seed) | share of the teacher's gain over alone-eN (4,000 rows) kept | process s (mean) |",
             "|---|---|---|---|---|---|---|"]
    for name in VARIANTS:
        seeds = sorted(s for v, s in runs if v == name)
        if not seeds:
            continue
        tests = [runs[name, s]["test_accuracy"] for s in seeds]
        control = [runs.get((twin(name), s)) for s in seeds]
        pairs = [t - a["test_accuracy"] for t, a in zip(tests, control, strict=True) if a]
        alone = [(t, a["test_accuracy"]) for t, s in zip(tests, seeds, strict=True)
                 if (a := runs.get((twin(name, rows=False), s)))]
        spread = f" ± {statistics.stdev(pairs):.4f}" if len(pairs) > 1 else ""
        delta = f"{statistics.mean(pairs):+.4f}{spread} (n={len(pairs)})" if pairs and name != twin(name) else ""
        kept = statistics.mean(t - a for t, a in alone) / statistics.mean(teacher_test - a for _, a in alone) \
            if alone else None
        share = f"{kept:.0%}" if kept is not None and name != twin(name, rows=False) else ""
        seconds = statistics.mean(runs[name, s]["process_seconds"] for s in seeds)
        lines.append(f"| {name} | {','.join(map(str, seeds))} | {' / '.join(f'{t:.4f}' for t in tests)} | "
                     f"{statistics.mean(tests):.4f} | {delta} | {share} | {seconds:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    p.add_argument("--seeds", default="42", help="comma-separated student seeds")
    p.add_argument("--report", action="store_true", help="only print the table from the stored results")
    args = p.parse_args(argv)
    names = chosen(args.variants, VARIANTS)
    if args.report:
        if not (TEACHER / "results.json").is_file():  # runs/ is not committed
            raise SystemExit(f"{TEACHER.relative_to(BENCH.parent)}/results.json is not here (runs/ is not "
                             "committed); the sweep retrains the teacher when it is run")
        print(report(json.loads((TEACHER / "results.json").read_text())["test_accuracy"]))
        print("ms per test example, 1 thread: " + ", ".join(f"{k} {v:.2f}" for k, v in cost().items()))
        return
    recipe = write_data()
    teacher_test = teacher(recipe)["test_accuracy"]
    print(f"teacher: test {teacher_test:.4f}", flush=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in names:
            r = run_one(recipe, name, seed)
            print(f"{name} s{seed}: test {r['test_accuracy']:.4f}, {r['process_seconds']:.0f} s", flush=True)
    print(report(teacher_test))


if __name__ == "__main__":
    main()
