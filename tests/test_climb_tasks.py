"""honed climb beyond tiny text classification: a tiny image climb (a python-kind CNN on PNGs, with the
ensemble stage), a tiny text regression climb (rmse, minimised), fold pairing (images; regression), and a
baseline that cannot train. Each climb has a user candidate whose effect is known (a learning rate that lets
the tiny model learn against a baseline LR too small to move it), the image climbs also one that changes no
prediction (the eval batch size). The leaderboard's paired differences, p values and intervals are recomputed
from the runs in the climb's study, and the scores of saved models, folds and a soft vote from the models."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from scipy import stats

from honed.errors import HonedError
from tests.conftest import recomputed_accuracy, tiny_recipe
from tests.test_python_model import TinyCNN
from tests.test_regression import regression_rows

ALPHA = 0.1
LEVELS = {"dark": 120, "light": 136}  # close grey levels: a random-init head sits at chance, a trained one is exact
NOOP = {"stage": "optimisation", "name": "eval batch 4", "overrides": {"train.eval_batch_size": 4}}


class BrokenCNN(TinyCNN):
    """A model whose forward always raises: every run of a climb on it fails."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this forward is broken on purpose")


def write_pngs(root: Path, per_class: int = 30) -> Path:
    rng = np.random.default_rng(0)
    for label, level in LEVELS.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(level + rng.normal(0, 10, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def image_tree(images: Path, model: str = "tests.test_python_model:TinyCNN", **climb: Any) -> dict[str, Any]:
    """60 PNGs (30 train, 15 val, 15 test), an 8-channel TinyCNN at 16 px, 8 epochs of batch 8 at lr 1e-6
    (too small to move it); the climb's candidates: lr 3e-2 (learns the two levels) and the no-op."""
    return {
        "name": "tiny-image", "seed": 0, "report": {"enabled": False},
        "data": {"kind": "image", "train": str(images), "image_size": 16, "split": {"val": 0.25, "test": 0.25}},
        "model": {"source": "python", "name": model, "args": {"channels": 8}},
        "optim": {"lr": 1e-6},
        "train": {"epochs": 8, "batch_size": 8, "eval_batch_size": 32},
        "climb": {"seeds": 2, "pairing": "seeds", "lr_find": False, "candidates": [
            {"stage": "optimisation", "name": "lr 3e-2", "overrides": {"optim.lr": 3e-2}, "group": "lr"}, NOOP],
            **climb},
    }


def regression_tree(tiny_bert: str, csv: Path, epochs: int = 6, **climb: Any) -> dict[str, Any]:
    """The tiny BERT on 96 three-word texts scored by their words (target y; 58 train, 19 val, 19 test), 6
    epochs of batch 16 at lr 1e-5 (too small to learn the scores); the climb's candidate: lr 1e-2."""
    tree = tiny_recipe(tiny_bert, csv, csv.parent / "unused", optim__lr=1e-5, train__epochs=epochs,
                       train__batch_size=16)
    tree.pop("output_dir")
    tree.update(name="tiny-regression", task="regression", report={"enabled": False})
    tree["data"]["label_column"] = "y"
    tree["climb"] = {"seeds": 2, "pairing": "seeds", "lr_find": False, "candidates": [
        {"stage": "optimisation", "name": "lr 1e-2", "overrides": {"optim.lr": 1e-2}, "group": "lr"}],
        **climb}
    return tree


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return write_pngs(tmp_path / "images")


@pytest.fixture
def scores_csv(tmp_path: Path) -> Path:
    path = tmp_path / "scores.csv"
    regression_rows(96).to_csv(path, index=False)
    return path


def outputs(out: Path) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """climb.json, leaderboard.csv and best_recipe.yaml as written."""
    summary = json.loads((out / "climb.json").read_text())
    board = pd.read_csv(out / "leaderboard.csv")
    return summary, board, yaml.safe_load((out / "best_recipe.yaml").read_text())


def stored(out: Path, study: str) -> dict[str, dict[str, Any]]:
    """Every finished run of the climb as its study holds it: run key (config/pair) -> result."""
    trials = optuna.load_study(study_name=study, storage=f"sqlite:///{out / 'climb.db'}").trials
    return {t.user_attrs["key"]: t.user_attrs["result"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE}


def pairs_of(row: dict[str, Any], pairs: int) -> range:
    """The pairs a row compares on: a change kept by forward selection on fresh pairs (verification seeds or
    folds), everything else on the screening pairs."""
    fresh = row["phase"] == "combine" and row["reason"].startswith("on fresh pairs")
    return range(pairs, 2 * pairs) if fresh else range(pairs)


def check_arithmetic(out: Path, study: str) -> None:
    """Every Δ in climb.json and leaderboard.csv recomputed from the runs in the climb's study: the per-pair
    scores it shows, the mean of candidate - base on the same pairs (in the metric's own direction), the
    one-sided paired t-test's p (scipy) and the 1 - 2α interval; the ladder's steps likewise."""
    summary, board, _ = outputs(out)
    runs, metric, n = stored(out, study), summary["metric"], summary["pairs"]
    sign = 1.0 if summary["direction"] == "maximize" else -1.0

    def scores(config: str, split: str, pairs: range) -> list[float | None]:
        return [runs[f"{config}/{i}"][split].get(metric) if f"{config}/{i}" in runs else None for i in pairs]

    assert len(board) == len(summary["candidates"])
    for row, (_, line) in zip(summary["candidates"], board.iterrows(), strict=True):
        assert (line["stage"], line["change"], line["accepted"]) == (row["stage"], row["change"], row["accepted"])
        if row["config"] is None:  # not valid here: nothing ran
            continue
        pairs = pairs_of(row, n)
        for split in ("val", "test"):
            assert row[split] == scores(row["config"], split, pairs)
            expect_delta(row[f"delta_{split}"], row[split], scores(row["base"], split, pairs), sign)
        assert line["val"] == " ".join("nan" if v is None else f"{v:.4f}" for v in row["val"])
        if row["delta_val"] is not None:
            assert line["delta_val"] == pytest.approx(row["delta_val"]["mean"], abs=1e-12)
            assert line["p"] == pytest.approx(row["delta_val"]["p"], abs=1e-12)
    ladder = summary["ladder"]
    assert ladder[0]["change"] == "baseline" and ladder[0]["delta_val"] is None
    assert ladder[0]["val"] == scores(ladder[0]["config"], "val", range(n))
    for before, step in zip(ladder, ladder[1:], strict=False):
        kept = [r for r in summary["candidates"] if r["accepted"] and r["config"] == step["config"]]
        assert len(kept) == 1 and kept[0]["base"] == before["config"]
        pairs = pairs_of(kept[0], n)
        for split in ("val", "test"):
            assert step[split] == scores(step["config"], split, pairs)
            expect_delta(step[f"delta_{split}"], step[split], scores(before["config"], split, pairs), sign)
        assert step["val_mean"] == pytest.approx(np.mean(step["val"]))
    assert summary["best"]["config"] == ladder[-1]["config"]


def expect_delta(delta: dict[str, float] | None, candidate: list[float | None], base: list[float | None],
                 sign: float) -> None:
    both = [(x, y) for x, y in zip(candidate, base, strict=True) if x is not None and y is not None]
    if not both:
        assert delta is None
        return
    a, b = np.array(both).T
    d, n = a - b, len(both)
    assert delta["n"] == n and delta["mean"] == pytest.approx(d.mean(), abs=1e-12)
    if n == 1:
        assert delta["p"] == 1.0
        return
    if d.std(ddof=1) == 0:  # the same change on every pair: the sign decides
        assert delta["p"] == (0.0 if sign * d.mean() > 0 else 1.0)
        assert delta["low"] == delta["high"] == pytest.approx(d.mean(), abs=1e-12)
        return
    side = "greater" if sign > 0 else "less"  # improvement: up for accuracy, down for rmse
    assert delta["p"] == pytest.approx(stats.ttest_rel(a, b, alternative=side).pvalue, rel=1e-9)
    half = stats.t.ppf(1 - ALPHA, n - 1) * d.std(ddof=1) / math.sqrt(n)
    assert (delta["low"], delta["high"]) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)


def rmse(model_dir: Path, frame: pd.DataFrame) -> float:
    """A saved regression model's rmse on `frame` (the climb's standard columns: x and one target column)."""
    from honed.inference.base import load_predictor

    target = [c for c in frame.columns if c.startswith("target:")]
    predicted = np.asarray(load_predictor(model_dir).predict_values(frame), dtype=float)
    return float(np.sqrt(np.mean((predicted - frame[target].to_numpy(dtype=float)) ** 2)))


def run_tree(out: Path, config: str, pair: int) -> dict[str, Any]:
    """The resolved recipe one run of the climb trained (or combined) with."""
    return yaml.safe_load((out / "runs" / config / f"pair-{pair}" / "recipe.yaml").read_text())


def run_seeds(out: Path, config: str, pairs: range) -> list[int]:
    return [run_tree(out, config, i)["seed"] for i in pairs]


def soft_vote_accuracy(out: Path, config: str, pair: int, recipe: dict[str, Any]) -> float:
    """Val accuracy of the mean class probabilities of an ensemble run's members, computed here."""
    from honed.data.build import load_tables
    from honed.inference.base import load_predictor
    from honed.recipe import load_recipe

    frame = load_tables(load_recipe(recipe)).frames["val"].reset_index(drop=True)
    members = [load_predictor(m["prefit"]) for m in run_tree(out, config, pair)["ensemble"]["members"]]
    labels = list(members[0].labels)
    assert all(list(m.labels) == labels for m in members)
    probs = np.mean([m.predict_proba(frame) for m in members], axis=0)
    return float(np.mean(np.asarray(labels)[probs.argmax(1)] == frame["label"].astype(str).to_numpy()))


def test_image_climb_keeps_the_learning_rate_that_learns(images: Path, tmp_path: Path) -> None:
    """Truth known: at lr 1e-6 the random-init CNN stays at chance, at 3e-2 it separates the two grey levels
    exactly, on the screening seeds and on the fresh seeds that verify it (`fresh_pairs: always`: `auto` would
    keep so clear a gain on its screening seeds alone); the eval batch size changes no
    prediction. The ensemble stage runs on the image members; nothing can beat 1.0 on every pair."""
    from honed.climb.run import climb

    out = tmp_path / "climb"
    result = climb(image_tree(images, stages={"optimisation": {"max_candidates": 2}, "ensemble": {}},
                              fresh_pairs="always"), output=out)
    summary, board, best = outputs(out)
    assert result.summary["ladder"] == summary["ladder"] and summary["stopped"] == "done"
    ladder = summary["ladder"]
    assert [s["change"] for s in ladder] == ["baseline", "lr 3e-2"]
    assert max(ladder[0]["val"]) <= 0.6 and ladder[1]["val"] == [1.0, 1.0]
    assert ladder[1]["delta_val"]["mean"] > 0.4 and ladder[1]["delta_val"]["p"] < ALPHA
    noop = board[board["change"] == "eval batch 4"].iloc[0]
    assert not noop["accepted"] and noop["delta_val"] == 0.0 and "not an improvement" in noop["reason"]
    ensembles = board[board["stage"] == "ensemble"]
    assert sorted(c.split(" of the top")[0] for c in ensembles["change"]) == [  # uniform soup: one model setting
        "ensemble (soft vote)", "greedy selection (cross-fitted on val)",
        "stacking, logistic regression (cross-fitted on val)", "uniform weight soup"] and not summary["notes"]
    assert not ensembles["accepted"].any() and (ensembles["delta_val"] <= 0).all()  # the best is 1.0 already
    assert not board["reason"].str.startswith("run failed").any()
    assert run_seeds(out, ladder[1]["config"], range(4)) == [0, 1, 2, 3]  # seeds 2 and 3 verify: fresh ones
    check_arithmetic(out, "climb-tiny-image")
    runs = stored(out, "climb-tiny-image")
    vote = board[board["change"].str.startswith("ensemble (soft vote)")].iloc[0]["config"]
    fits = set(board[(board["stage"] == "optimisation") & (board["change"] != "eval batch 4")]["config"])
    fits |= {ladder[0]["config"]}  # the no-op predicts like the baseline: not a second member
    voted = [i for i in range(2) if f"{vote}/{i}" in runs]  # a clear loser stops after its first pair
    assert voted[0] == 0
    for i in voted:  # pair i's vote: the mean probabilities of the distinct fits' pair-i models, recomputed
        assert soft_vote_accuracy(out, vote, i, best) == pytest.approx(runs[f"{vote}/{i}"]["val"]["accuracy"])
        members = {Path(m["prefit"]) for m in run_tree(out, vote, i)["ensemble"]["members"]}
        assert members == {(out / runs[f"{c}/{i}"]["model_dir"]).resolve() for c in fits}
    assert best["optim"]["lr"] == 3e-2 and best["data"]["train"] == str((out / "data" / "train.csv").resolve())
    first = runs[f"{ladder[-1]['config']}/0"]  # best_model/ is that run's model
    assert recomputed_accuracy(out / "best_model", best, "val") == pytest.approx(first["val"]["accuracy"])
    assert recomputed_accuracy(out / "best_model", best, "test") == pytest.approx(first["test"]["accuracy"])
    shutil.rmtree(out / "runs")  # a fresh checkout: the study is kept, the model folders are not
    shutil.rmtree(out / "best_model")
    again = climb(image_tree(images, stages={"optimisation": {"max_candidates": 2}, "ensemble": {}},
                             fresh_pairs="always"), output=out,
                  trials=len(runs))  # the run budget already spent: rebuilds do not count against it
    assert again.summary["ladder"] == ladder and again.summary["stopped"] == "done"
    rebuilt = {k: v for k, v in stored(out, "climb-tiny-image").items() if "/rebuild-" in k}
    assert set(rebuilt) == {f"{c}/{i}/rebuild-1" for c in fits for i in range(2)}  # the members, pair 0 the best's
    assert all(v["val"] == runs[k.removesuffix("/rebuild-1")]["val"] for k, v in rebuilt.items())
    assert again.summary["notes"] == [f"rebuilt {len(rebuilt)} of {len(rebuilt)} model folder(s) missing on disk; "
                                      "their val accuracy differs from the stored run's by at most 0.0000 "
                                      "(the decisions use the stored scores)"]
    assert recomputed_accuracy(out / "best_model", best, "val") == pytest.approx(first["val"]["accuracy"])


def test_fold_pairing_scores_each_fold_on_its_own_held_out_rows(images: Path, tmp_path: Path) -> None:
    """pairing: folds, 2 folds of train + val (45 rows), verified on 2 folds of another shuffle: every run
    uses the recipe's seed, each run's model is scored on its fold's held-out rows (recomputed here), the lr
    change is kept, and the ensemble stage is skipped with its reason."""
    from honed.climb.run import climb
    from honed.cv import fold_indices
    from honed.data.build import load_tables
    from honed.recipe import load_recipe

    out = tmp_path / "climb"
    tree = image_tree(images, stages={"optimisation": {"max_candidates": 2}, "ensemble": {}}, pairing="folds", folds=2,
                      fresh_pairs="always")  # so clear a gain is re-run on fresh folds only when told
    climb(tree, output=out)
    summary, board, best = outputs(out)
    assert (summary["pairing"], summary["pairs"]) == ("folds", 2) and "2 folds" in summary["rule"]
    assert summary["notes"] == ["ensemble stage skipped: fold pairing (members of one fold share no validation "
                                "rows with the ensemble's val split)"]
    ladder = summary["ladder"]
    assert [s["change"] for s in ladder] == ["baseline", "lr 3e-2"] and ladder[1]["val"] == [1.0, 1.0]
    assert max(ladder[0]["val"]) <= 0.6 and ladder[1]["delta_val"]["p"] < ALPHA
    assert not board["reason"].str.startswith("run failed").any()
    assert not board[board["change"] == "eval batch 4"].iloc[0]["accepted"]
    check_arithmetic(out, "climb-tiny-image")
    tables = load_tables(load_recipe(best)).frames
    pool = pd.concat([tables["train"], tables["val"]]).reset_index(drop=True)
    runs = stored(out, "climb-tiny-image")
    for config in (ladder[0]["config"], ladder[1]["config"]):
        assert run_seeds(out, config, range(4)) == [0, 0, 0, 0]
        for i in range(4):  # folds 0 and 1 screen; folds 0 and 1 of another shuffle (seed + 1) verify
            folds = fold_indices(pool, 2, tree["seed"] + i // 2)
            assert sorted(np.concatenate([v for _, v in folds])) == list(range(45))  # they partition train + val
            pool.iloc[folds[i % 2][1]].to_csv(tmp_path / "fold.csv", index=False)  # the run's held-out rows
            fold = {"name": "fold", "model": best["model"], "data": {
                "kind": "image", "train": str(tmp_path / "fold.csv"), "path_column": "x", "label_column": "label",
                "split": {"val": 0.0, "test": 0.0}}}
            result = runs[f"{config}/{i}"]
            model = out / result["model_dir"]
            assert recomputed_accuracy(model, fold, "train") == pytest.approx(result["val"]["accuracy"])
            assert recomputed_accuracy(model, best, "test") == pytest.approx(result["test"]["accuracy"])


def test_regression_climb_keeps_the_learning_rate_that_lowers_rmse(tiny_bert: str, scores_csv: Path,
                                                                     tmp_path: Path) -> None:
    """rmse is minimised: the kept step's Δ val is negative (candidate - base in rmse) on the screening and
    on the fresh seeds, its p is the one-sided test of a decrease, and the ensemble stage is skipped with a
    note (ensembles score accuracy)."""
    from honed.climb.run import climb
    from honed.data.build import load_tables
    from honed.recipe import load_recipe

    out = tmp_path / "climb"
    tree = regression_tree(tiny_bert, scores_csv, stages={"optimisation": {"max_candidates": 1}, "ensemble": {}})
    result = climb(tree, output=out)
    summary, board, best = outputs(out)
    assert result.summary["ladder"] == summary["ladder"]
    assert (summary["metric"], summary["direction"], summary["stopped"]) == ("rmse", "minimize", "done")
    assert summary["notes"] == ["ensemble stage skipped: ensembles are scored on accuracy and macro_f1, not rmse"]
    assert not board["reason"].str.startswith("run failed").any() and "ensemble" not in set(board["stage"])
    ladder = summary["ladder"]
    assert [s["change"] for s in ladder] == ["baseline", "lr 1e-2"]
    screened = board[(board["change"] == "lr 1e-2") & (board["phase"] == "screen")].iloc[0]
    assert screened["delta_val"] < 0 and screened["p"] < ALPHA
    step = ladder[1]["delta_val"]
    assert step["mean"] < -0.5 and step["high"] < 0 and step["p"] < ALPHA and ladder[1]["delta_test"]["mean"] < 0
    assert summary["honesty"] == {"accepted": 1, "test_improved": 1}
    check_arithmetic(out, "climb-tiny-regression")
    assert best["optim"]["lr"] == 1e-2 and best["task"] == "regression"
    frames = load_tables(load_recipe(best)).frames
    first = stored(out, "climb-tiny-regression")[f"{ladder[-1]['config']}/0"]  # best_model/ is that run's model
    assert rmse(out / "best_model", frames["val"]) == pytest.approx(first["val"]["rmse"], rel=1e-5)
    assert rmse(out / "best_model", frames["test"]) == pytest.approx(first["test"]["rmse"], rel=1e-5)


def test_small_regression_climb_pairs_by_folds_and_runs(tiny_bert: str, scores_csv: Path, tmp_path: Path) -> None:
    """pairing auto on 58 training rows is fold pairing; each fold's runs finish with a finite rmse."""
    from honed.climb.run import climb

    out = tmp_path / "climb"
    climb(regression_tree(tiny_bert, scores_csv, epochs=2, pairing="auto", folds=2, candidates=[NOOP],
                          stages={"optimisation": {"max_candidates": 1}}), output=out)
    summary, board, _ = outputs(out)
    assert (summary["pairing"], summary["pairs"]) == ("folds", 2)
    assert not board["reason"].str.startswith("run failed").any()
    assert all(math.isfinite(v) for v in summary["ladder"][0]["val"])
    check_arithmetic(out, "climb-tiny-regression")


def test_a_baseline_that_fails_on_every_pair_ends_the_climb_with_its_reason(images: Path, tmp_path: Path) -> None:
    from honed.climb.run import climb

    tree = image_tree(images, model="tests.test_climb_tasks:BrokenCNN", stages={"optimisation": {"max_candidates": 1}})
    with pytest.raises(HonedError, match="baseline.*broken on purpose"):
        climb(tree, output=tmp_path / "climb")


def test_task_auto_on_numeric_targets_climbs_on_the_regression_metric(tiny_bert: str, scores_csv: Path,
                                                                     tmp_path: Path) -> None:
    """task auto reads the numbers as a regression: the baseline runs (mse, checkpoint on rmse) and the climb
    compares val rmse; a train.metric the recipe names is kept."""
    from honed.climb.run import climb

    tree = regression_tree(tiny_bert, scores_csv, epochs=1)
    tree["task"] = "auto"
    tree["train"].pop("metric", None)
    result = climb(tree, output=tmp_path / "climb", trials=2)
    assert result.summary["metric"] == "rmse" and all(v is not None for v in result.summary["ladder"][0]["val"])
    tree["train"]["metric"] = "mae"
    assert climb(tree, output=tmp_path / "mae", trials=2).summary["metric"] == "mae"


def test_regression_data_stage_offers_one_cleaning_not_two_identical_ones(tiny_bert: str, tmp_path: Path) -> None:
    """honed clean on regression looks for no label errors, so 'clean + likely label errors' would train on the
    very rows of the plain cleaning: only the first is proposed, and a note says why."""
    from types import SimpleNamespace

    from honed.climb.candidates import clean_changes
    from honed.climb.configs import Config

    rows = regression_rows(96)
    files = {name: tmp_path / f"{name}.csv" for name in ("train", "val", "test")}  # split as a climb writes them
    pd.concat([rows[:60], rows.iloc[[0, 1, 2]]]).to_csv(files["train"], index=False)  # three exact copies
    rows[60:78].to_csv(files["val"], index=False)
    rows[78:].to_csv(files["test"], index=False)
    tree = regression_tree(tiny_bert, files["train"])
    tree.pop("climb")
    tree["data"].update({name: str(path) for name, path in files.items()}, split={"val": 0.0, "test": 0.0})
    notes: list[str] = []
    c = SimpleNamespace(best=Config(tree), pairing="seeds", folder=tmp_path / "climb", notes=notes,
                        show=lambda _text: None)
    changes = clean_changes(c, "regression")
    assert [ch.name.split(" (")[0] for ch in changes] == ["clean: empty rows, exact copies, leaks"]
    assert notes == ["clean + likely label errors: the same rows as the cleaning before it, not run twice"]
    dropped = 63 - len(pd.read_csv(changes[0].overrides["data.train"]))
    assert dropped >= 1 and changes[0].name.endswith(f"({dropped} train rows)")
