"""Ensembles: voting/selection/stacking/bagging maths, the ensemble folder, CLI, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from honed.cli import main
from honed.ensemble.bagging import bag_rows, oob_estimate, out_of_bag
from honed.ensemble.stacking import meta_learner, out_of_fold
from honed.errors import HonedError
from honed.inference.selection import greedy_selection
from honed.inference.voting import hard_vote, soft_vote
from tests.conftest import text_rows, tiny_recipe


def _probs(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=float)


def test_soft_and_hard_vote() -> None:
    a = _probs([[0.9, 0.1], [0.4, 0.6]])
    b = _probs([[0.4, 0.6], [0.45, 0.55]])
    c = _probs([[0.45, 0.55], [0.9, 0.1]])
    stack = np.stack([a, b, c])
    np.testing.assert_allclose(soft_vote(stack), (a + b + c) / 3)
    np.testing.assert_allclose(soft_vote(stack, [1, 0, 0]), a)
    assert hard_vote(stack).argmax(axis=1).tolist() == [1, 1]  # b and c vote class 1 on row 0 though a is surest
    assert soft_vote(stack).argmax(axis=1).tolist() == [0, 0]
    assert hard_vote(stack, [3, 1, 1]).argmax(axis=1).tolist() == [0, 1]
    np.testing.assert_allclose(hard_vote(stack).sum(axis=1), 1.0)


def test_weights_must_match_members() -> None:
    with pytest.raises(HonedError, match="ensemble.weights: 2 weights given for 3 members"):
        soft_vote(np.zeros((3, 2, 2)), [1, 1])


def test_selection_prefers_the_good_member_and_adds_a_complement() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    good = np.eye(2)[y] * 0.6 + 0.2
    noise = rng.random((200, 2))
    noise /= noise.sum(axis=1, keepdims=True)
    wrong = np.eye(2)[1 - y] * 0.8 + 0.1
    weights = greedy_selection(np.stack([noise, good, wrong]), y, rounds=10)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[1] == weights.max() and weights[2] == 0.0


def test_out_of_fold_never_predicts_rows_it_trained_on() -> None:
    train = pd.DataFrame({"x": [f"r{i}" for i in range(30)], "label": ["a", "b", "c"] * 10})
    seen_by_fold: list[set[str]] = []

    def fit_predict(fold: int, part: pd.DataFrame, held: pd.DataFrame) -> np.ndarray:
        assert not set(part["x"]) & set(held["x"])
        seen_by_fold.append(set(held["x"]))
        return np.full((len(held), 3), fold, dtype=float)

    oof = out_of_fold(train, 3, 0, fit_predict, 3)
    assert not np.isnan(oof).any() and len(seen_by_fold) == 3
    assert set().union(*seen_by_fold) == set(train["x"])


def test_meta_learner_names_and_refusals() -> None:
    assert type(meta_learner("logistic_regression")).__name__ == "LogisticRegression"
    assert (
        type(meta_learner("sklearn.ensemble:RandomForestClassifier", {"n_estimators": 5})).__name__
        == "RandomForestClassifier"
    )
    with pytest.raises(HonedError, match="'sklearn.linear_model:LinearRegression' is not a scikit-learn classifier"):
        meta_learner("sklearn.linear_model:LinearRegression")
    with pytest.raises(HonedError, match="did you mean 'logistic_regression'"):
        meta_learner("logistic_regresion")


def test_bagging_rows_and_out_of_bag() -> None:
    bags = bag_rows(100, 4, True, 1.0, seed=0)
    assert all(len(b) == 100 for b in bags) and all(len(np.unique(b)) < 100 for b in bags)  # with replacement
    left = out_of_bag(bags, 100)
    assert all(not set(b) & set(rest) for b, rest in zip(bags, left, strict=True))
    subsets = bag_rows(100, 2, False, 0.5, seed=0)
    assert all(len(np.unique(s)) == 50 for s in subsets)
    y = np.zeros(100, dtype=int)
    oob = oob_estimate([(rest, np.tile([0.9, 0.1], (len(rest), 1))) for rest in left], y, 2)
    assert oob["oob_accuracy"] == 1.0 and 0 < oob["oob_rows"] <= 100
    labels = np.array(["rare"] * 2 + ["common"] * 98)  # a plain bootstrap misses 'rare' in ~13% of bags
    for bag in bag_rows(100, 30, True, 1.0, seed=0, labels=labels):
        assert set(labels[bag]) == {"rare", "common"} and len(bag) == 100


def _ensemble_recipe(
    tiny_bert: str, tmp_path: Path, ensemble: dict, rows: int = 60, report: bool = False, **extra: object
) -> dict:
    data = tmp_path / "reviews.csv"
    if not data.exists():
        text_rows(rows).to_csv(data, index=False)
    recipe = tiny_recipe(tiny_bert, data, tmp_path / "ens", **extra)
    recipe["train"]["epochs"] = 1
    recipe["report"] = {"enabled": report}  # member reports cost time; one test checks the ensemble's
    recipe["ensemble"] = ensemble
    return recipe


TWO = [{"name": "a", "overrides": {"optim.lr": 1e-3}}, {"name": "b", "overrides": {"seed": 1}}]


@pytest.fixture(scope="module")
def other_bert(tiny_bert: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second backbone: a 1-layer, 48-wide BERT (its own config and tokenizer folder)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("other-bert")
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    torch.manual_seed(1)
    BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=48,
            num_hidden_layers=1,
            num_attention_heads=3,
            intermediate_size=96,
            max_position_embeddings=64,
        )
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_voting_ensemble_folder_predicts_and_evaluates_like_a_model(
    tiny_bert: str, other_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from honed.ensemble import build_ensemble, load_ensemble

    members = [TWO[0], {"name": "b", "overrides": {"seed": 1, "model.name": other_bert}}]  # two different architectures
    result = build_ensemble(
        _ensemble_recipe(tiny_bert, tmp_path, {"method": "voting", "weights": [3, 1], "members": members}, report=True),
        quiet=True,
    )
    widths = {json.loads((m.model_dir / "config.json").read_text())["hidden_size"] for m in result.members}
    assert widths == {32, 48}
    doc = json.loads((result.folder / "ensemble.json").read_text())
    assert [m["name"] for m in doc["members"]] == ["a", "b"] and doc["combine"] == "soft"
    assert [m["weight"] for m in doc["members"]] == [0.75, 0.25]
    assert (result.folder / "members" / "a" / "model" / "honed.json").is_file()
    assert (result.folder / "report.json").is_file()  # the error-analysis report of the ensemble
    saved = load_ensemble(result.folder)
    test = result.frames["test"]
    np.testing.assert_allclose(
        saved.predict_proba(test), 0.75 * result.probs["test"][0] + 0.25 * result.probs["test"][1], atol=1e-6
    )
    # `honed predict` / `honed evaluate` accept the folder like a single model
    source = tmp_path / "new.csv"
    pd.DataFrame({"text": test["x"], "label": test["label"]}).to_csv(source, index=False)
    assert main(["predict", str(result.folder), str(source), "-o", str(tmp_path / "pred.csv")]) == 0
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["input", "predicted", "prob_neg", "prob_pos"] and len(pred) == len(test)
    assert main(["evaluate", str(result.folder), str(source), "--report", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    accuracy = float(next(line.split("\t")[1] for line in out.splitlines() if line.startswith("accuracy")))
    assert accuracy == pytest.approx(result.metrics["ensemble"]["test_accuracy"], abs=1e-4)
    assert (tmp_path / "rep" / "report.html").is_file()
    assert main(["evaluate", str(result.folder), str(source), "--calibrated"]) == 2
    capsys.readouterr()
    # --overwrite with a broken member recipe fails before the old ensemble is removed
    import yaml

    broken = _ensemble_recipe(
        tiny_bert, tmp_path, {"method": "voting", "members": [TWO[0], {"name": "b", "overrides": {"optim.lrr": 1}}]}
    )
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    assert main(["ensemble", str(tmp_path / "broken.yaml"), "--overwrite", "--quiet"]) == 2
    assert "optim.lrr" in capsys.readouterr().err and (result.folder / "ensemble.json").is_file()
    (result.folder / "ensemble.json").write_text('{"format": 1, "memb')
    assert main(["predict", str(result.folder), str(source)]) == 2
    err = capsys.readouterr().err.strip()
    assert "ensemble.json is not valid JSON" in err and len(err.splitlines()) == 1


def test_stacking_meta_learner_on_out_of_fold_probabilities(tiny_bert: str, tmp_path: Path) -> None:
    from honed.ensemble import build_ensemble, load_ensemble

    spec = {"method": "stacking", "members": TWO, "stacking": {"folds": 2}}
    result = build_ensemble(_ensemble_recipe(tiny_bert, tmp_path, spec), quiet=True)
    saved = load_ensemble(result.folder)
    assert saved.combine == "stacking" and (result.folder / "meta.json").is_file()
    assert saved.meta.coef_.shape == (1, 4)  # 2 members x 2 class probabilities
    assert not (result.folder / "folds").exists()  # fold fits are only for the out-of-fold predictions
    np.testing.assert_allclose(
        saved.predict_proba(result.frames["test"]), result.combined.probs(result.probs["test"]), atol=1e-6
    )


def test_bagging_reports_out_of_bag_and_selection_weights(
    tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    recipe = tmp_path / "ens.yaml"
    import yaml

    recipe.write_text(
        yaml.safe_dump(_ensemble_recipe(tiny_bert, tmp_path, {"method": "bagging", "bagging": {"n_members": 2}}))
    )
    assert main(["ensemble", str(recipe), "--quiet"]) == 0
    doc = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert doc["method"] == "bagging" and doc["metrics"]["oob_rows"] > 0
    correct = doc["metrics"]["oob_accuracy"] * doc["metrics"]["oob_rows"]  # a share of the out-of-bag rows, not a mean
    assert 0 <= round(correct) <= doc["metrics"]["oob_rows"] and correct == pytest.approx(round(correct), abs=1e-6)
    assert "out-of-bag accuracy" in capsys.readouterr().out
    assert main(["ensemble", str(recipe), "--quiet"]) == 2  # never overwritten without --overwrite
    prefit = [
        {"name": "x", "prefit": str(tmp_path / "ens" / "members" / "bag0")},
        {"name": "y", "prefit": str(tmp_path / "ens" / "members" / "bag1" / "model")},
    ]
    assert (
        main(
            [
                "ensemble",
                str(recipe),
                "--quiet",
                f"ensemble={json.dumps({'members': prefit})}",
                f"output_dir={tmp_path / 'sel'}",
            ]
        )
        == 0
    )
    weights = [m["weight"] for m in json.loads((tmp_path / "sel" / "ensemble.json").read_text())["members"]]
    assert sum(weights) == pytest.approx(1.0) and len(weights) == 2


def test_snapshot_members_from_one_cyclic_run(tiny_bert: str, tmp_path: Path) -> None:
    from honed.ensemble import build_ensemble

    recipe = _ensemble_recipe(tiny_bert, tmp_path, {"method": "voting", "snapshots": {"cycles": 2}})
    recipe["train"]["epochs"] = 2
    result = build_ensemble(recipe, quiet=True)
    assert [m.name for m in result.members] == ["snapshot1", "snapshot2"]
    assert not np.allclose(result.probs["val"][0], result.probs["val"][1])  # two different models


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"method": "stacking", "members": TWO, "stacking": {"meta": "sklearn.linear_model:LinearRegression"}},
            "ensemble.stacking.meta: 'sklearn.linear_model:LinearRegression' is not a scikit-learn classifier",
        ),
        (
            {"method": "stacking", "members": TWO, "stacking": {"folds": 1}},
            "ensemble.stacking.folds: cross-fitting needs at least 2 folds",
        ),
        ({"method": "stacking", "members": TWO[:1]}, "at least 2 members, got 1"),
        (
            {"members": [*TWO, {"name": "c", "prefit": "nowhere/model"}]},
            "ensemble.members.2.prefit: model folder 'nowhere/model' not found",
        ),
        ({"method": "votes", "members": TWO}, "'ensemble.method'"),
        ({"members": TWO, "stacker": {}}, "unknown key 'ensemble.stacker'; did you mean 'stacking'"),
        ({"method": "stacking", "snapshots": {"cycles": 2}}, "ensemble.snapshots: stacking refits members on folds"),
        ({"members": TWO[:1]}, "ensemble.members: an ensemble needs at least 2 members, got 1"),
        ({"method": "stacking", "members": TWO, "stacking": {"folds": 40}}, "ensemble.stacking.folds: class"),
    ],
)
def test_bad_ensemble_settings_fail_before_training(
    tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture, spec: dict, message: str
) -> None:
    import yaml

    recipe = tmp_path / "ens.yaml"
    recipe.write_text(yaml.safe_dump(_ensemble_recipe(tiny_bert, tmp_path, spec)))
    assert main(["ensemble", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "ens" / "members").exists()


def test_members_with_different_label_sets_are_refused(
    tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import honed

    data = tmp_path / "three.csv"
    frame = text_rows(45)
    frame.loc[frame.index % 3 == 0, "label"] = "meh"
    frame.to_csv(data, index=False)
    other = tiny_recipe(tiny_bert, data, tmp_path / "three-run")
    other["train"]["epochs"] = 1
    honed.fit(other, quiet=True)
    import yaml

    spec = {"members": [TWO[0], {"name": "three", "prefit": str(tmp_path / "three-run")}]}
    recipe = tmp_path / "ens.yaml"
    recipe.write_text(yaml.safe_dump(_ensemble_recipe(tiny_bert, tmp_path, spec)))
    assert main(["ensemble", str(recipe), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (
        "ensemble.members.1.prefit: member 'three' was trained on labels (meh, neg, pos) but the data has (neg, pos)"
        in err
    )
    assert not (tmp_path / "ens" / "members").exists()  # refused before training


def test_check_labels_names_both_members() -> None:
    from honed.ensemble.members import check_labels

    assert check_labels({"a": ("neg", "pos"), "b": ("pos", "neg")}) == ("neg", "pos")
    with pytest.raises(
        HonedError, match="ensemble member 'b' was trained on labels \\(x, y\\) but member 'a' on \\(neg, pos\\)"
    ):
        check_labels({"a": ("neg", "pos"), "b": ("x", "y")})


def test_members_from_a_tune_study(tmp_path: Path) -> None:
    from honed.ensemble.members import tune_members

    kept = tmp_path / "trial3" / "model"
    kept.mkdir(parents=True)
    (kept / "honed.json").write_text("{}")
    trials = [
        {
            "number": 3,
            "value": 0.9,
            "params": {"lr": 1e-4},
            "overrides": {"optim.lr": 1e-4},
            "run_dir": str(kept.parent),
            "model_dir": str(kept),
        },
        {
            "number": 7,
            "value": 0.8,
            "params": {"lr": 3e-5},
            "overrides": ["optim.lr=3e-5"],
            "run_dir": "gone",
            "model_dir": "gone/model",
        },
        {"number": 1, "value": 0.7, "params": {}, "overrides": {}, "run_dir": "x", "model_dir": "x"},
    ]
    (tmp_path / "top_trials.json").write_text(json.dumps(trials))
    members = tune_members(tmp_path, top_k=2)
    assert [m.name for m in members] == ["trial3", "trial7"]
    assert members[0].prefit == str(kept) and members[1].prefit is None and members[1].overrides == {"optim.lr": 3e-5}
    with pytest.raises(HonedError, match="ensemble.from_tune: .*top_trials.json' not found"):
        tune_members(tmp_path / "nope", 2)


def test_sklearn_style_ensembles_clone_members_and_stack_out_of_fold() -> None:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from honed.ensemble import EnsembleClassifier

    X, y = make_classification(n_samples=240, n_features=6, n_informative=4, random_state=0)
    y = np.where(y == 1, "yes", "no")
    members = [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(max_depth=3, random_state=0))]
    stack = EnsembleClassifier(members, method="stacking", folds=3).fit(X[:180], y[:180])
    assert not hasattr(members[0][1], "coef_")  # the given members were cloned, not fitted
    assert [n for n, _ in stack.members_] == ["lr", "tree"] and stack.meta_.coef_.shape == (1, 4)
    assert set(stack.predict(X[180:])) <= {"yes", "no"} and (stack.predict(X[180:]) == y[180:]).mean() > 0.7
    soft = EnsembleClassifier(stack.members_, method="soft", weights=[1, 0], prefit=True).fit(X[:180], y[:180])
    np.testing.assert_allclose(soft.predict_proba(X[180:]), stack.members_[0][1].predict_proba(X[180:]))
    bag = EnsembleClassifier(
        [(f"b{i}", DecisionTreeClassifier(random_state=i)) for i in range(3)], method="bagging"
    ).fit(X, y)
    assert 0.5 < bag.oob_score_ <= 1.0
    chosen = EnsembleClassifier(members, method="selection").fit(X, y)
    assert chosen.weights_.sum() == pytest.approx(1.0)
    with pytest.raises(HonedError, match="cross-fitting needs at least 2 folds"):
        EnsembleClassifier(members, method="stacking", folds=1).fit(X, y)
    with pytest.raises(HonedError, match="needs at least 2 estimators, got 1"):
        EnsembleClassifier(members[:1], method="soft").fit(X, y)


def test_members_train_in_parallel_processes(tiny_bert: str, tmp_path: Path) -> None:
    from honed.ensemble.members import MemberSpec, as_data, fit_all, member_recipe

    frame = text_rows(40).rename(columns={"text": "x"})
    base = _ensemble_recipe(tiny_bert, tmp_path, {})
    jobs = [
        (
            n,
            member_recipe(base, MemberSpec(name=n, overrides={"seed": i}), tmp_path / n),
            as_data(frame[:30], frame[30:]),
        )
        for i, n in enumerate(("p", "q"))
    ]
    dirs = fit_all(jobs, workers=2, overwrite=False, quiet=True)
    assert all((dirs[n] / "honed.json").is_file() for n in ("p", "q"))
    assert not (tmp_path / "p" / "checkpoints").exists()  # optimizer state dropped once a member is trained
