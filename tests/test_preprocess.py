"""Recipe preprocessing: text normalisation, missing-text and length filters (with logged drop
counts), token limits with the real tokenizer, training-set image statistics that travel with the
saved model, and one-line errors for bad settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from honed.cli import main
from honed.data.build import load_tables
from honed.data.preprocess import (
    apply_image_stats,
    filter_tokens,
    normalise_texts,
    strip_html,
    text_normaliser,
    train_image_stats,
)
from honed.errors import HonedError
from honed.recipe import PreprocessSpec, load_recipe
from tests.conftest import text_rows


def test_text_normaliser_steps() -> None:
    decomposed = "Cafe\u0301"
    assert text_normaliser(PreprocessSpec())(decomposed) == "Caf\u00e9", "NFC by default"
    assert text_normaliser(PreprocessSpec(unicode=None, whitespace=False))(decomposed) == decomposed
    assert text_normaliser(PreprocessSpec(unicode="NFKC"))("\ufb01ne") == "fine"
    assert text_normaliser(PreprocessSpec())("  a \t b\n\nc  ") == "a b c"
    assert text_normaliser(PreprocessSpec(lower=True))("GrEaT") == "great"
    html = "<p>Great&amp;fun<br>film</p><script>var x = 1;</script><style>p{}</style>"
    assert text_normaliser(PreprocessSpec(strip_html=True))(html) == "Great&fun film"
    assert text_normaliser(PreprocessSpec())(html) == html, "HTML kept unless strip_html"
    assert strip_html("5 < 6 and 7 > 3") == "5 < 6 and 7 > 3"


def _recipe(tmp_path: Path, frame: pd.DataFrame, **preprocess: object) -> object:
    frame.to_csv(tmp_path / "d.csv", index=False)
    return load_recipe(
        {
            "data": {
                "train": str(tmp_path / "d.csv"),
                "split": {"val": 0.2, "test": 0.0, "method": "random"},
                "group_column": "movie",
                "preprocess": preprocess,
            }
        }
    )


def test_missing_and_length_filters_count_drops(tmp_path: Path) -> None:
    frame = text_rows(40)
    frame.loc[[1, 2, 3], "text"] = ["", "   ", None]
    frame.loc[4, "text"] = "x" * 500
    tables = load_tables(_recipe(tmp_path, frame, missing="drop", max_chars=100))
    rows = pd.concat(tables.frames.values())
    assert len(rows) == 36 and not {1, 2, 3, 4} & set(rows.index)
    assert tables.notes == [
        "preprocess data.train: missing=drop (empty text) dropped 3 of 40 rows",
        "preprocess data.train: max_chars=100 dropped 1 of 37 rows",
    ]
    filled = pd.concat(load_tables(_recipe(tmp_path, frame, fill_value="[empty]")).frames.values())
    assert len(filled) == 40 and (filled.loc[[1, 2, 3], "x"] == "[empty]").all()


def test_a_filter_that_drops_everything_names_itself(tmp_path: Path) -> None:
    with pytest.raises(HonedError, match=r"data.preprocess.min_chars: drops every row of data.train"):
        load_tables(_recipe(tmp_path, text_rows(20), min_chars=1000))


def test_token_limits_use_the_model_tokenizer(tiny_bert: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    frame = pd.DataFrame({"x": ["one", "one two three", "a b c d e f g h i j k l"], "label": ["a", "b", "a"]})
    recipe = load_recipe({"data": {"preprocess": {"min_tokens": 2, "max_tokens": 10}}})
    kept = filter_tokens({"train": frame, "val": frame.iloc[:0]}, recipe, tokenizer)
    assert kept["train"]["x"].tolist() == ["one two three"]
    assert kept["val"].empty


def test_predict_time_normalisation_keeps_every_row() -> None:
    frame = pd.DataFrame({"x": ["<b>HI</b>", "", None], "x2": ["a  b", "c", ""]})
    out = normalise_texts(
        frame, PreprocessSpec(lower=True, strip_html=True, missing="drop", min_chars=50, fill_value="?")
    )
    assert out["x"].tolist() == ["hi", "?", "?"] and out["x2"].tolist() == ["a b", "c", "?"]


def test_train_image_stats_travel_with_the_saved_model(tmp_path: Path) -> None:
    from honed.data.labels import LabelMap
    from honed.models.build import load_model, save_model
    from honed.models.vision import VisionClassifier, build_torchvision

    rng = np.random.default_rng(0)
    images = [rng.integers(100, 141, size=(8, 8), dtype=np.uint8) for _ in range(30)]  # grey, mean ~120/255
    mean, std = train_image_stats(pd.DataFrame({"x": images}), size=8)
    assert mean[0] == pytest.approx(120 / 255, abs=0.01) and mean[0] == mean[1] == mean[2]
    assert std[0] == pytest.approx(np.std(np.stack(images)) / 255, rel=0.1)
    recipe = load_recipe(
        {"data": {"kind": "image", "image_size": 8, "image_stats": "train"}, "model": {"name": "mobilenet_v2"}}
    )
    net, head, stats = build_torchvision("mobilenet_v2", None, 2)
    model = VisionClassifier(net, "torchvision", "mobilenet_v2", head, stats, 2)
    apply_image_stats(model, {"train": pd.DataFrame({"x": images})}, recipe)
    assert model.preprocess == (mean, std)
    save_model(model, LabelMap.from_labels(pd.Series(["a", "b"])), tmp_path / "model", recipe.to_yaml())
    loaded, _ = load_model(tmp_path / "model")
    assert loaded.preprocess == (mean, std), "predict normalises with the training statistics"


def test_unknown_preprocess_option_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text_rows(20).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "r.yaml").write_text(f"data:\n  train: {tmp_path / 'd.csv'}\n  preprocess: {{strip_tags: true}}\n")
    assert main(["train", str(tmp_path / "r.yaml"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.count("\n") == 0
        and "unknown key 'data.preprocess.strip_tags'; did you mean 'data.preprocess.strip_html'?" in err
    )
    assert main(["train", str(tmp_path / "r.yaml"), "data.preprocess={missing: skip}", "--quiet"]) == 2
    assert "data.preprocess.missing" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "r.yaml"), "data.preprocess={}", "data.image_stats=dataset", "--quiet"]) == 2
    assert "data.image_stats" in capsys.readouterr().err


def test_estimator_predicts_on_normalised_text(tiny_bert: str) -> None:
    from honed import FineTuneClassifier

    rows = text_rows(40)
    clf = FineTuneClassifier(
        model=tiny_bert,
        epochs=1,
        batch_size=8,
        max_length=16,
        seed=0,
        device="cpu",
        recipe={"data": {"preprocess": {"strip_html": True}}},
    )
    clf.fit(rows["text"].tolist(), rows["label"].tolist())
    probs = clf.predict_proba(["<b>a wonderful</b> film", "a wonderful film"])  # (the tokenizer itself lower-cases)
    assert probs[0] == pytest.approx(probs[1], abs=1e-6)
