"""Real-world tables as users bring them (Excel exports, semicolon CSVs, label spellings, huge rows),
and evaluate/predict reading only the columns the model needs. Images are in test_messy_images.py."""

from __future__ import annotations

import bz2
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

import honed
from honed import HonedError, load_recipe
from honed.audit import audit
from honed.cli import main
from honed.data.build import load_tables
from honed.data.tables import read_table
from tests.conftest import text_rows, tiny_recipe

TEXTS = ["a wonderful, moving film", "dull; boring", "tabs\tinside", 'quote "x" here', "déjà vu, naïve"]


def _messy_frame() -> pd.DataFrame:
    """Texts holding the delimiters, quotes, accents and an embedded newline that real exports hold."""
    texts = [*TEXTS, "line one\nline two"]
    return pd.DataFrame({"text": texts * 4, "label": ["pos", "neg"] * 12})


WRITERS = {
    "bom": lambda f, p: f.to_csv(p, index=False, encoding="utf-8-sig"),
    "semicolon": lambda f, p: f.to_csv(p, index=False, sep=";"),
    "tab_named_csv": lambda f, p: f.to_csv(p, index=False, sep="\t"),
    "crlf": lambda f, p: f.to_csv(p, index=False, lineterminator="\r\n"),
    "excel_utf16": lambda f, p: f.to_csv(p, index=False, sep="\t", encoding="utf-16"),  # Excel's "Unicode Text"
    "utf16_comma_bz2": lambda f, p: p.with_suffix(".csv.bz2").write_bytes(
        bz2.compress(f.to_csv(index=False).encode("utf-16"))
    ),
}


@pytest.mark.parametrize("layout", list(WRITERS))
def test_csv_layouts_read_as_written(layout: str, tmp_path: Path) -> None:
    frame, path = _messy_frame(), tmp_path / "d.csv"
    WRITERS[layout](frame, path)
    path = path if path.exists() else path.with_suffix(".csv.bz2")
    got = read_table(path, "data.train")
    assert list(got.columns) == ["text", "label"]
    texts = got["text"].str.replace("\r\n", "\n")  # a quoted newline keeps the file's own line ending
    assert texts.tolist() == frame["text"].tolist() and got["label"].tolist() == frame["label"].tolist()


def test_a_semicolon_csv_with_commas_in_every_text_is_still_semicolon(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    rows = "".join(f"one, two, three #{i};{'ab'[i % 2]}\n" for i in range(30))
    path.write_text("text;label\n" + rows, encoding="utf-8")
    got = read_table(path, "data.train")
    assert got.shape == (30, 2) and got["text"].iloc[3] == "one, two, three #3"


def test_a_file_whose_delimiter_cannot_be_placed_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"  # rows disagree with the header on every delimiter: read as one column
    path.write_text("text;label\nx;y;z;pos\nw;neg\n", encoding="utf-8")
    with pytest.raises(HonedError, match="no column '(text|label)' .*looks delimited by ';'"):
        load_tables(load_recipe({"data": {"train": str(path)}}))


def test_a_1mb_text_trains_and_predicts(tiny_bert: str, tmp_path: Path) -> None:
    frame = text_rows(40)
    frame.loc[3, "text"] = "long " * 200_000  # 1 MB in one field
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    run = honed.fit(tiny_recipe(tiny_bert, path, tmp_path / "run", train__epochs=1), quiet=True)
    from honed.inference import predict_frame

    out = predict_frame(run.model_dir, path)
    assert len(out) == 40 and out["input"].str.len().iloc[3] == 1_000_000


# -- labels ----------------------------------------------------------------------------------------------------


def _labelled(labels: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"row {i}" for i in range(len(labels))], "label": pd.Series(labels, dtype=object)})


def test_case_and_space_variants_are_refused_by_default_and_merged_when_asked(tmp_path: Path) -> None:
    labels = ["pos", "neg"] * 10 + ["Pos", " pos ", "NEG"]
    with pytest.raises(HonedError, match=r"labels 'pos' \(row 1\) and 'Pos' \(row 21\) differ only by case"):
        load_tables(load_recipe({"data": {}}), {"train": _labelled(labels)})
    tables = load_tables(
        load_recipe({"data": {"normalise_labels": True, "split": {"val": 0.0, "test": 0.0}}}),
        {"train": _labelled(labels)},
    )
    assert tables.labels.names == ("neg", "pos")
    assert tables.frames["train"]["label"].value_counts().to_dict() == {"pos": 12, "neg": 11}


def test_a_test_file_spelling_a_class_differently_is_matched_only_when_normalising(tmp_path: Path) -> None:
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    text_rows(40).to_csv(train, index=False)
    text_rows(10).assign(label=lambda f: f["label"].str.upper()).to_csv(test, index=False)
    data = {"train": str(train), "test": str(test), "split": {"val": 0.2}}
    with pytest.raises(HonedError, match="label 'NEG' never occurs in training data \\(training has 'neg'"):
        load_tables(load_recipe({"data": data}))
    tables = load_tables(load_recipe({"data": {**data, "normalise_labels": True}}))
    assert sorted(set(tables.frames["test"]["label"])) == ["neg", "pos"] and len(tables.frames["test"]) == 10


@pytest.mark.parametrize("labels", [[1, "1", 2, "2"] * 5, [1.0, 1, "1", 2.0, 2] * 4])
def test_a_number_and_its_text_are_one_class(labels: list[object]) -> None:
    tables = load_tables(load_recipe({"data": {"split": {"val": 0.0, "test": 0.0}}}), {"train": _labelled(labels)})
    assert tables.labels.names == ("1", "2") and len(tables.frames["train"]) == len(labels)


def test_one_number_written_two_ways_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_bert: str
) -> None:
    path = tmp_path / "d.parquet"  # a text column keeps both spellings (CSV and JSONL readers turn both into 1.0)
    pd.DataFrame({"text": [f"r{i}" for i in range(20)], "label": ["1", "2"] * 9 + ["1.0", "2"]}).to_parquet(path)
    recipe = tmp_path / "r.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_bert, path, tmp_path / "run")), encoding="utf-8")
    assert main(["train", str(recipe), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "labels '1' (row 1) and '1.0' (row 19) are the same number" in lines[0], lines


def test_audit_lists_label_variants_without_refusing(tiny_bert: str, tmp_path: Path) -> None:
    frame = text_rows(60)
    frame.loc[[5, 7], "label"] = ["Neg", "neg "]
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    recipe = tiny_recipe(tiny_bert, path, tmp_path / "run", data__split={"val": 0.2, "test": 0.2, "method": "random"})
    result = audit(recipe, write=False, quiet=True, checks=("corrupt", "label_variants"))
    finding = result.finding("label_variants")
    assert finding.data["sets"] == [{"neg": 28, "Neg": 1, "neg ": 1}]
    assert sorted(finding.rows["row"].tolist()) == [5, 7] and finding.recommendations


# -- evaluate and predict read only what the model reads ---------------------------------------------------------


@pytest.fixture(scope="module")
def grouped_run(tiny_bert: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained with a group column and a report slice column, as the quickstart recipe is."""
    folder = tmp_path_factory.mktemp("grouped")
    path = folder / "train.csv"
    text_rows(60).assign(genre=lambda f: ["drama", "comedy", "noir"] * 20).to_csv(path, index=False)
    recipe = tiny_recipe(
        tiny_bert,
        path,
        folder / "run",
        data__group_column="movie",
        data__split={"val": 0.2, "test": 0.2, "method": "group"},
        report={"slices": ["genre"]},
    )
    return honed.fit(recipe, quiet=True).model_dir


def test_evaluate_needs_only_text_and_label(
    grouped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "new.csv"
    text_rows(30, seed=3)[["text", "label"]].assign(extra="ignored").to_csv(path, index=False)
    assert main(["evaluate", str(grouped_run), str(path), "--report", str(tmp_path / "rep")]) == 0
    printed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line)
    assert main(["predict", str(grouped_run), str(path), "-o", str(tmp_path / "p.csv")]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv")["predicted"]
    expected = accuracy_score(text_rows(30, seed=3)["label"], predicted)  # recomputed from the saved predictions
    assert float(printed["accuracy"]) == pytest.approx(expected, abs=1e-4)


def test_evaluate_still_names_a_missing_label_column(
    grouped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "new.csv"
    text_rows(10)[["text"]].to_csv(path, index=False)
    assert main(["evaluate", str(grouped_run), str(path)]) == 2
    assert "no column 'label' (set by data.label_column)" in capsys.readouterr().err


# -- streaming prediction ----------------------------------------------------------------------------------------


def test_predict_streams_a_large_file_in_chunks_with_the_same_result(grouped_run: Path, tmp_path: Path) -> None:
    from honed.inference.predict import predict_chunks, predict_frame

    path = tmp_path / "many.csv"
    text_rows(250, seed=5)[["text"]].to_csv(path, index=False)
    chunks = list(predict_chunks(grouped_run, path, rows=100))
    assert [len(c) for c in chunks] == [100, 100, 50]
    streamed, whole = pd.concat(chunks, ignore_index=True), predict_frame(grouped_run, path)
    pd.testing.assert_frame_equal(streamed, whole, check_exact=False, atol=1e-6)


def test_cli_predict_writes_every_chunk_once(
    grouped_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import honed.inference.predict as predict

    monkeypatch.setattr(predict, "STREAM_ROWS", 7)
    monkeypatch.setattr(predict.predict_chunks, "__defaults__", (None, False, 7))
    path = tmp_path / "in.csv"
    text_rows(30)[["text"]].to_csv(path, index=False)
    assert main(["predict", str(grouped_run), str(path), "-o", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 30 and out["input"].tolist() == text_rows(30)["text"].tolist()
    assert not (tmp_path / "out.csv.partial").exists()
