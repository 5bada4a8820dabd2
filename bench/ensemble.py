"""Ensembles vs the best single member, and a distilled student, on text and images.

Per task and seed, in one process with one torch thread:
  1. three members (lr/seed overrides of the task recipe) trained on the same splits, plus 3-fold
     cross-fitted copies for stacking: `build_ensemble(method=stacking, folds=3)`;
  2. from those same members' val/test probabilities: soft voting (equal weights), hard voting,
     ensemble selection (greedy, weights fitted on val) and the stacking meta-learner;
  3. bagging: three more members on bootstrap samples (`method=bagging`), soft vote, out-of-bag;
  4. a student distilled from the selection ensemble (T=2, alpha=0.5) with the best member's
     lr and seed, so it differs from that member only by the distillation loss;
  5. inference cost: ms per test example of one member and of the 3-member ensemble.
"Best single" is the member with the best val accuracy (what one would deploy); the member with
the best test accuracy is listed too. Results go to bench/results/ensemble/<task>-s<seed>.json, so
an interrupted run resumes; --report prints (and with --write appends) the table.

    HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python bench/ensemble.py --task text --seeds 0,1 &
    HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python bench/ensemble.py --task image --seeds 0,1 ; wait
    HF_HUB_OFFLINE=1 .venv/bin/python bench/ensemble.py --report --write
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
RESULTS_DIR = BENCH / "results" / "ensemble"
RESULTS_MD = BENCH / "RESULTS.md"
RECIPES = {"text": BENCH / "recipes" / "techniques-text.yaml", "image": BENCH / "recipes" / "techniques-image.yaml"}
ROWS = {"train": 300, "val": 150, "test": 300}
LRS = {"text": [2e-4, 3e-4, 1.5e-4], "image": [2e-3, 1e-3, 4e-3]}  # first = the base lr (bagging)
BATCH = {"text": 8, "image": 32}  # text: more optimizer steps on the small subset
COMBINERS = ("best single", "soft voting", "hard voting", "selection", "stacking", "bagging", "distilled student")


SETTINGS: dict[str, Any] = {"rows": ROWS, "image_size": 64}


def base(task: str, seed: int, out: Path) -> dict[str, Any]:
    extra = {"data.image_size": SETTINGS["image_size"]} if task == "image" else {}
    return {
        "seed": seed,
        "output_dir": str(out),
        "data.max_rows": SETTINGS["rows"],
        "train.epochs": 2,
        "report.enabled": False,
        "optim.lr": LRS[task][0],
        "train.batch_size": BATCH[task],
        "train.checkpoint_every_steps": None,
        **extra,
    }


def scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    pred = probs.argmax(axis=1)
    return {"accuracy": float(np.mean(pred == y)), "macro_f1": float(f1_score(y, pred, average="macro"))}


def run_seed(task: str, seed: int, scratch: Path) -> dict[str, Any]:
    from honed.ensemble.build import build_ensemble
    from honed.ensemble.members import member_probs
    from honed.ensemble.saved import save_ensemble
    from honed.fit import fit
    from honed.inference import load_predictor
    from honed.inference.selection import greedy_selection
    from honed.inference.voting import hard_vote, soft_vote

    started = time.perf_counter()
    members = [{"name": f"lr{lr:g}", "overrides": {"optim.lr": lr, "seed": seed + i}} for i, lr in enumerate(LRS[task])]
    stack = build_ensemble(
        RECIPES[task],
        quiet=True,
        overwrite=True,
        **base(task, seed, scratch / "stack"),
        ensemble={"method": "stacking", "members": members, "stacking": {"folds": 3}},
    )
    labels, test = stack.labels, stack.frames["test"]
    y = {k: np.asarray([labels.index(v) for v in stack.frames[k]["label"]]) for k in ("val", "test")}
    val_acc = [scores(p, y["val"])["accuracy"] for p in stack.probs["val"]]
    out: dict[str, Any] = {"task": task, "seed": seed, "members": {}, "settings": SETTINGS}
    for i, m in enumerate(stack.members):
        out["members"][m.name] = {
            "val_accuracy": val_acc[i],
            **{f"test_{k}": v for k, v in scores(stack.probs["test"][i], y["test"]).items()},
        }
    best = int(np.argmax(val_acc))
    weights = greedy_selection(stack.probs["val"], y["val"])
    results = {
        "best single": stack.probs["test"][best],
        "soft voting": soft_vote(stack.probs["test"]),
        "hard voting": hard_vote(stack.probs["test"]),
        "selection": soft_vote(stack.probs["test"], weights),
        "stacking": stack.combined.probs(stack.probs["test"]),
    }
    out["best_member"], out["selection_weights"] = stack.members[best].name, weights.tolist()
    out["stacking_seconds"] = time.perf_counter() - started
    selection_dir = scratch / "selection"  # the same members, weights from selection: the teacher
    save_ensemble(
        selection_dir, labels, [(m.name, m.model_dir, w) for m, w in zip(stack.members, weights, strict=True)], "soft"
    )
    t0 = time.perf_counter()
    bag = build_ensemble(
        RECIPES[task],
        quiet=True,
        overwrite=True,
        **base(task, seed, scratch / "bag"),
        ensemble={"method": "bagging", "bagging": {"n_members": 3}},
    )
    results["bagging"] = bag.combined.probs(bag.probs["test"])
    out["bagging_oob_accuracy"], out["bagging_seconds"] = bag.metrics["oob_accuracy"], time.perf_counter() - t0
    t0 = time.perf_counter()
    twin = {**base(task, seed, scratch / "student"), **members[best]["overrides"]}  # the best member's lr and seed
    student = fit(
        RECIPES[task],
        quiet=True,
        overwrite=True,
        **twin,
        techniques=[{"name": "distill", "teacher": str(selection_dir), "temperature": 2.0, "alpha": 0.5}],
    )
    results["distilled student"] = member_probs(student.model_dir, test, labels)[0]
    out["student_seconds"] = time.perf_counter() - t0
    out["scores"] = {name: scores(p, y["test"]) for name, p in results.items()}
    out["inference_ms_per_example"] = inference_cost(
        load_predictor(stack.members[best].model_dir), load_predictor(selection_dir), test
    )
    out["wall_seconds"] = time.perf_counter() - started
    return out


def inference_cost(member: Any, ensemble: Any, frame: Any, repeats: int = 3) -> dict[str, float]:
    """Median ms per example over `repeats` alternating passes (one model, then the ensemble; both
    Predictors loaded once, so loading is not timed)."""
    single, whole = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        member.predict_proba(frame)
        single.append((time.perf_counter() - t0) * 1000 / len(frame))
        t0 = time.perf_counter()
        ensemble.predict_proba(frame)
        whole.append((time.perf_counter() - t0) * 1000 / len(frame))
    return {"single": statistics.median(single), "ensemble": statistics.median(whole)}


def report(write: bool) -> str:
    sections = []
    for task in ("text", "image"):
        runs = [json.loads(p.read_text()) for p in sorted(RESULTS_DIR.glob(f"{task}-s*.json"))]
        if not runs:
            continue
        lines = [
            (
                f"**{task}** ({len(runs)} seed{'s' if len(runs) > 1 else ''}: "
                f"{', '.join(str(r['seed']) for r in runs)}; "
                f"settings {runs[0]['settings']})"
            ),
            "",
            "| model | test accuracy | macro-F1 | vs best single | ms/example (x one model) |",
            "|---|---|---|---|---|",
        ]
        base_acc = [r["scores"]["best single"]["accuracy"] for r in runs]
        cost = {k: statistics.median(r["inference_ms_per_example"][k] for r in runs) for k in ("single", "ensemble")}
        for name in COMBINERS:
            acc = [r["scores"][name]["accuracy"] for r in runs]
            f1 = [r["scores"][name]["macro_f1"] for r in runs]
            gain = statistics.mean(acc) - statistics.mean(base_acc)
            ms = cost["single"] if name in ("best single", "distilled student") else cost["ensemble"]
            lines.append(f"| {name} | {_ms(acc)} | {_ms(f1)} | {gain:+.4f} | {ms:.2f} ({ms / cost['single']:.1f}x) |")
        lines.append("")
        lines.append(
            "per seed, test accuracy: "
            + "; ".join(
                f"s{r['seed']}: members "
                + ", ".join(f"{n} {m['test_accuracy']:.3f}" for n, m in r["members"].items())
                + f", best-on-val {r['best_member']}, "
                f"selection weights {[round(w, 2) for w in r['selection_weights']]}, "
                f"bagging OOB {r['bagging_oob_accuracy']:.3f}, wall {r['wall_seconds']:.0f} s"
                for r in runs
            )
        )
        sections.append("\n".join(lines))
    text = "\n\n".join(sections)
    print(text)
    return text


def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {sd:.4f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=tuple(RECIPES), action="append")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--rows", default="300,150,300", help="train,val,test rows (default 300,150,300)")
    p.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--report", action="store_true", help="print the table from saved results")
    p.add_argument("--write", action="store_true", help="with --report: append the table to bench/RESULTS.md")
    args = p.parse_args(argv)
    if args.report:
        text = report(args.write)
        if args.write:
            with RESULTS_MD.open("a", encoding="utf-8") as handle:
                handle.write("\n" + text + "\n")
        return
    import torch

    torch.set_num_threads(1)
    SETTINGS["rows"] = dict(zip(("train", "val", "test"), (int(r) for r in args.rows.split(",")), strict=True))
    SETTINGS["image_size"] = args.image_size
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for task in args.task or list(RECIPES):
        for seed in (int(s) for s in args.seeds.split(",")):
            target = RESULTS_DIR / f"{task}-s{seed}.json"
            if target.is_file():
                continue
            scratch = Path(tempfile.mkdtemp(prefix=f"honed-ens-{task}-"))
            try:
                result = run_seed(task, seed, scratch)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            target.write_text(json.dumps(result, indent=1))
            print(json.dumps({k: result[k] for k in ("task", "seed", "scores", "wall_seconds")}), flush=True)


if __name__ == "__main__":
    main()
