"""Data loading: formats, columns, splits (stratified, group-aware), label filters and limits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from honed import HonedError, load_recipe
from honed.data.build import load_tables
from honed.data.text import PadCollator
from tests.conftest import text_rows


def _tables(train: object, **data: object):
    recipe = load_recipe({"data": {"train": train, **data}}) if isinstance(train, str) else load_recipe({"data": data})
    return load_tables(recipe, None if isinstance(train, str) else {"train": train})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet", ".csv.bz2"])
def test_table_formats(tmp_path: Path, suffix: str) -> None:
    frame, path = text_rows(40), tmp_path / f"d{suffix}"
    if suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    tables = _tables(str(path))
    assert sum(len(f) for f in tables.frames.values()) == 40
    assert tables.labels.names == ("neg", "pos")


def test_stratified_split_keeps_class_balance(tmp_path: Path) -> None:
    tables = _tables(text_rows(100), split={"val": 0.2, "test": 0.2, "method": "stratified"})
    assert [len(tables.frames[s]) for s in ("train", "val", "test")] == [60, 20, 20]
    for frame in tables.frames.values():
        assert (frame["label"] == "pos").sum() == (frame["label"] == "neg").sum()


def test_group_split_never_shares_a_group(tmp_path: Path) -> None:
    tables = _tables(text_rows(100), group_column="movie", split={"val": 0.2, "test": 0.2, "method": "group"})
    groups = [set(tables.frames[s]["group"]) for s in ("train", "val", "test")]
    assert groups[0].isdisjoint(groups[1]) and groups[0].isdisjoint(groups[2]) and groups[1].isdisjoint(groups[2])
    assert all(groups)


def test_split_is_seeded() -> None:
    a = _tables(text_rows(60), split={"val": 0.2, "test": 0.2})
    b = _tables(text_rows(60), split={"val": 0.2, "test": 0.2})
    assert a.frames["test"].index.tolist() == b.frames["test"].index.tolist()


def test_label_filter_and_row_limits() -> None:
    frame = text_rows(60)
    frame.loc[frame.index[:10], "label"] = "plot"
    tables = _tables(frame, labels=["pos", "neg"], max_rows={"train": 20})
    assert tables.labels.names == ("pos", "neg")
    assert "plot" not in set(pd.concat(tables.frames.values())["label"])
    assert len(tables.frames["train"]) == 20


def test_explicit_val_and_test_files(tmp_path: Path) -> None:
    for name, n in (("train", 40), ("val", 10), ("test", 12)):
        text_rows(n, seed=n).to_csv(tmp_path / f"{name}.csv", index=False)
    recipe = load_recipe({"data": {k: str(tmp_path / f"{k}.csv") for k in ("train", "val", "test")}})
    tables = load_tables(recipe)
    assert [len(tables.frames[s]) for s in ("train", "val", "test")] == [40, 10, 12]


def test_text_pairs(tmp_path: Path) -> None:
    frame = text_rows(20).assign(other="a second sentence")
    tables = _tables(frame, text_pair_column="other", split={"val": 0.0, "test": 0.0})
    assert (tables.frames["train"]["x2"] == "a second sentence").all()


def test_in_memory_lists() -> None:
    tables = _tables((["good", "bad", "fine", "awful"] * 5, [1, 0, 1, 0] * 5), split={"val": 0.0, "test": 0.0})
    assert tables.labels.names == ("0", "1")


def test_dynamic_padding_pads_to_longest_row() -> None:
    batch = PadCollator(0)(
        [
            {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": 1},
            {"input_ids": [5], "attention_mask": [1], "labels": 0},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.assign(label="pos"), "only one class ('pos')"),
        (lambda f: f.assign(label=f["label"].where(f.index != 6, None)), "row 7 has an empty or NaN label"),
        (lambda f: f.drop(columns=["text"]), "no column 'text' (set by data.text_column); columns are: label, movie"),
        (lambda f: f.iloc[:0], "holds no rows"),
    ],
)
def test_bad_training_data(tmp_path: Path, mutate, message: str) -> None:
    path = tmp_path / "bad.csv"
    mutate(text_rows(40)).to_csv(path, index=False)
    with pytest.raises(HonedError) as info:
        _tables(str(path))
    assert message in str(info.value)


def test_unseen_label_in_test_file(tmp_path: Path) -> None:
    text_rows(40).to_csv(tmp_path / "train.csv", index=False)
    text_rows(10).assign(label="meh").to_csv(tmp_path / "test.csv", index=False)
    recipe = load_recipe({"data": {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")}})
    with pytest.raises(HonedError, match="data.test: label 'meh' never occurs in training data"):
        load_tables(recipe)


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"text,label\ngood,pos\nbad,neg\n" + "caf\u00e9,pos\n".encode("latin-1"))
    with pytest.raises(HonedError, match=r"not UTF-8 text \(line 4\)"):
        _tables(str(path))


def test_missing_file_and_unknown_asset() -> None:
    with pytest.raises(HonedError, match="data.train: file 'nope.csv' not found"):
        _tables("nope.csv")
    with pytest.raises(
        HonedError,
        match=(
            "unknown asset 'rotten-tomato'; did you mean|"
            "unknown asset 'rotten-tomato' \\(did you mean 'rotten-tomatoes'"
        ),
    ):
        _tables("asset:rotten-tomato")
