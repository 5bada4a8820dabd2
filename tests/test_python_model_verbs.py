"""Issue 14's "done when" for a user's own nn.Module: the tiny CNN of test_python_model.py, fine-tuned from its
weights file (`model.source: python`), through `honed report`, `honed tune` and `honed ensemble` (soft voting
and a soup), each checked against a figure recomputed from the saved models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

import honed
from honed.cli import main
from honed.data.build import load_tables
from honed.inference import load_predictor
from honed.recipe import load_recipe
from tests.test_python_model import TinyCNN, image_recipe


@pytest.fixture
def cnn_recipe(tmp_path: Path) -> dict:
    torch.manual_seed(0)
    weights = tmp_path / "cnn.pth"
    torch.save(TinyCNN().state_dict(), weights)
    return image_recipe(tmp_path, weights=str(weights))


def _write(tmp_path: Path, tree: dict) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return str(path)


def _accuracy(probs: np.ndarray, frame, names: list[str]) -> float:
    return float(np.mean(probs.argmax(1) == np.asarray([names.index(v) for v in frame["label"]])))


def test_report_rebuilds_an_own_module_run(cnn_recipe: dict, tmp_path: Path) -> None:
    run = honed.fit(cnn_recipe, quiet=True)
    assert main(["report", str(run.run_dir), "--output", str(tmp_path / "again")]) == 0
    rebuilt = json.loads((tmp_path / "again" / "report.json").read_text())
    assert rebuilt["summary"]["accuracy"] == pytest.approx(run.metrics["test_accuracy"], abs=1e-6)


def test_tune_searches_an_own_module_and_each_trial_reloads(cnn_recipe: dict, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    tree = {**cnn_recipe, "output_dir": str(out), "name": "cnn"}
    tree["search"] = {"params": {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "grid": [1e-3, 1e-2]}},
                      "sampler": "grid", "metric": "accuracy"}
    assert main(["tune", _write(tmp_path, tree), "--quiet"]) == 0
    study = optuna.load_study(study_name="cnn", storage=f"sqlite:///{out / 'study.db'}")
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["optim.lr"] for t in trials) == [1e-3, 1e-2]
    for trial in trials:  # each trial's value is its saved model's val accuracy
        folder = out / "trials" / f"trial-{trial.number}"
        recipe = load_recipe(yaml.safe_load((folder / "recipe.yaml").read_text()))
        assert recipe.model.source == "python" and recipe.model.name.endswith(":TinyCNN")
        val = load_tables(recipe).frames["val"]
        predictor = load_predictor(folder / "model")
        assert trial.value == pytest.approx(_accuracy(predictor.predict_proba(val), val, list(predictor.labels)))


@pytest.mark.parametrize("method", ["voting", "soup"])
def test_ensemble_of_own_modules(cnn_recipe: dict, tmp_path: Path, method: str) -> None:
    from honed.ensemble import build_ensemble, load_ensemble

    tree = {**cnn_recipe, "output_dir": str(tmp_path / "ens")}
    tree["ensemble"] = {"method": method, "members": [{"name": "s0"}, {"name": "s1", "overrides": {"seed": 1}}]}
    result = build_ensemble(tree, quiet=True)
    frames = load_tables(load_recipe(cnn_recipe)).frames
    saved = load_ensemble(result.folder)
    names = list(saved.labels)
    if method == "voting":  # the members' mean probabilities, from their own saved folders
        members = [load_predictor(result.folder / "members" / m / "model") for m in ("s0", "s1")]
        mean = np.mean([m.predict_proba(frames["test"]) for m in members], axis=0)
        np.testing.assert_allclose(saved.predict_proba(frames["test"]), mean, atol=1e-6)
    else:  # one ordinary model folder: a member's weights or their mean (greedy keeps the best, adds the other)
        from honed.models.build import load_model

        soup = load_model(result.folder / "model")[0].state_dict()
        states = [load_model(result.folder / "members" / m / "model")[0].state_dict() for m in ("s0", "s1")]
        means = {k: (states[0][k] + states[1][k]) / 2 for k in soup}
        assert any(all(torch.allclose(soup[k], other[k], atol=1e-6) for k in soup) for other in (*states, means))
        assert not all(torch.equal(states[0][k], states[1][k]) for k in soup)  # two different fine-tunes
    test = _accuracy(saved.predict_proba(frames["test"]), frames["test"], names)
    assert result.metrics["ensemble"]["test_accuracy"] == pytest.approx(test, abs=1e-6)
