"""Heterogeneous ensemble members: a scikit-learn TF-IDF + logistic regression pipeline beside
fine-tunes, in recipes (`kind: sklearn`) and in EnsembleClassifier; saved, reloaded, stacked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from honed.cli import main
from honed.errors import HonedError
from tests.conftest import text_rows, tiny_recipe

TFIDF = {"name": "tfidf", "kind": "sklearn", "pipeline": "tfidf_logreg", "params": {"C": 2.0, "char_ngrams": [2, 4]}}


def _recipe(tiny_bert: str, tmp_path: Path, ensemble: dict, **extra: object) -> dict:
    data = tmp_path / "reviews.csv"
    text_rows(60).to_csv(data, index=False)
    recipe = tiny_recipe(tiny_bert, data, tmp_path / "ens", **extra)
    recipe["train"]["epochs"] = 1
    recipe["report"] = {"enabled": False}
    recipe["ensemble"] = ensemble
    return recipe


def test_tfidf_logreg_learns_text_and_reloads_as_a_predictor(tmp_path: Path) -> None:
    from honed.ensemble.classical import fit_sklearn_member
    from honed.ensemble.spec import MemberSpec
    from honed.inference import SklearnPredictor, load_predictor
    from honed.recipe import build_recipe

    rows = text_rows(80).rename(columns={"text": "x"})
    recipe = build_recipe({"data": {"kind": "text", "train": "x.csv"}})
    folder = fit_sklearn_member(MemberSpec(**TFIDF), rows[:60], ("pos", "neg"), recipe, tmp_path / "m", overwrite=False)
    assert {p.name for p in folder.iterdir()} == {"sklearn.json", "pipeline.joblib", "labels.json", "recipe.yaml"}
    predictor = load_predictor(folder)
    assert isinstance(predictor, SklearnPredictor) and predictor.labels == ("pos", "neg")
    held = rows[60:].reset_index(drop=True)
    probs = predictor.predict_proba(held)
    assert probs.shape == (20, 2) and np.allclose(probs.sum(axis=1), 1.0)
    assert (np.asarray(predictor.predict(held)) == held["label"].to_numpy()).mean() >= 0.9


def test_stacking_a_fine_tune_with_tfidf_saves_and_reloads(tiny_bert: str, tmp_path: Path) -> None:
    from honed.ensemble import build_ensemble
    from honed.inference import EnsemblePredictor, SklearnPredictor, load_predictor

    members = [{"name": "bert", "overrides": {"seed": 1}}, TFIDF]
    ensemble = {"method": "stacking", "members": members, "stacking": {"folds": 2}}
    result = build_ensemble(_recipe(tiny_bert, tmp_path, ensemble), quiet=True)
    doc = json.loads((result.folder / "ensemble.json").read_text())
    assert [m["name"] for m in doc["members"]] == ["bert", "tfidf"] and doc["combine"] == "stacking"
    assert result.metrics["members"]["tfidf"]["val_accuracy"] >= 0.5
    loaded = load_predictor(result.folder)
    assert isinstance(loaded, EnsemblePredictor) and isinstance(loaded.members[1][1], SklearnPredictor)
    frame = result.frames["test"]
    np.testing.assert_allclose(loaded.predict_proba(frame), result.combined.probs(result.probs["test"]), atol=1e-6)
    assert not (result.folder / "folds").exists()
    csv = tmp_path / "new.csv"
    text_rows(6, seed=3).to_csv(csv, index=False)
    assert main(["predict", str(result.folder), str(csv), "-o", str(tmp_path / "out.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "out.csv")) == 6


def test_sklearn_member_bad_input_is_one_line_before_training(
    tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from honed.ensemble import build_ensemble

    unknown = {**TFIDF, "pipeline": "tfidf_logreq"}
    recipe = tmp_path / "r.yaml"
    tree = _recipe(tiny_bert, tmp_path, {"method": "voting", "members": [{"name": "a"}, unknown]})
    recipe.write_text(yaml.safe_dump(tree))
    assert main(["ensemble", str(recipe), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown sklearn pipeline 'tfidf_logreq'" in err and "did you mean 'tfidf_logreg'" in err
    assert not (tmp_path / "ens" / "members").exists()  # nothing trained
    images = _recipe(tiny_bert, tmp_path, {"method": "voting", "members": [{"name": "a"}, TFIDF]})
    images["data"]["kind"] = "image"
    with pytest.raises(HonedError, match="sklearn members need text data"):
        build_ensemble(images, quiet=True)
    bad_params = {**TFIDF, "params": {"nope": 1}}
    bad = _recipe(tiny_bert, tmp_path, {"method": "voting", "members": [{"name": "a"}, bad_params]})
    with pytest.raises(HonedError, match="ensemble.members.1.pipeline 'tfidf_logreg'"):
        build_ensemble(bad, quiet=True)
    soup = _recipe(tiny_bert, tmp_path, {"method": "soup", "members": [{"name": "a"}, TFIDF]})
    with pytest.raises(HonedError, match="soup averages the weights"):
        build_ensemble(soup, quiet=True)


def test_ensemble_classifier_takes_a_pipeline_beside_a_fine_tune(tiny_bert: str) -> None:
    from honed import FineTuneClassifier
    from honed.ensemble import EnsembleClassifier, tfidf_logreg

    rows = text_rows(60)
    X, y = rows["text"].tolist(), rows["label"].to_numpy()
    fine_tune = FineTuneClassifier(
        model=tiny_bert, epochs=1, lr=1e-3, batch_size=8, max_length=16, seed=0, val_fraction=0.0
    )
    ens = EnsembleClassifier([("ft", fine_tune), ("tfidf", tfidf_logreg())], method="soft").fit(X[:48], y[:48])
    assert [n for n, _ in ens.members_] == ["ft", "tfidf"] and hasattr(ens.members_[1][1], "classes_")
    probs = ens.predict_proba(X[48:])
    assert probs.shape == (12, 2) and set(ens.predict(X[48:])) <= {"pos", "neg"}
