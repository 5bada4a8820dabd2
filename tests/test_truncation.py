"""data.truncation: right (the tokenizer's own, unchanged), head_tail (first quarter + last three quarters of the
room) and sliding (overlapping windows, logits averaged), in tokenisation, length grouping, a fit + predict, and
their climb candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import honed
from honed import HonedError, load_recipe
from honed.data.text import _cache_key, head_tail_split, propose_length, text_dataset, tokenize
from honed.data.windows import merge_windows, window_starts
from honed.inference import predict_frame
from honed.models.fusion import FusionTokenizer
from honed.proposals import PROPOSERS, Situation, proposals
from tests.conftest import recomputed_accuracy, text_rows, tiny_recipe

MAX = 16  # the tiny BERT adds [CLS] and [SEP]: 14 tokens of room, 4 head + 10 tail
LONG = " ".join(f"word{i} apple{i}" for i in range(40))  # far over 16 tokens
SHORT = ["a wonderful, moving film", "awful and tedious"]


@pytest.fixture(scope="module")
def tokenizer(tiny_bert: str) -> Any:
    return AutoTokenizer.from_pretrained(tiny_bert)


def test_head_tail_split_is_a_quarter_and_the_rest() -> None:
    assert head_tail_split(510) == (128, 382)  # Sun et al. 2019's BERT split
    assert head_tail_split(14) == (4, 10)
    assert head_tail_split(1) == (0, 1)
    assert head_tail_split(0) == (0, 0)


def test_head_tail_keeps_the_first_and_last_tokens(tokenizer: Any) -> None:
    texts = [LONG, "the ending matters most " + LONG + " but the verdict: terrible"]
    encoded = tokenize(tokenizer, texts, None, MAX, "head_tail")
    for row, text in enumerate(texts):
        full = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(full) > 4 * MAX
        expected = [tokenizer.cls_token_id, *full[:4], *full[-10:], tokenizer.sep_token_id]
        assert encoded["input_ids"][row] == expected
        assert encoded["attention_mask"][row] == [1] * MAX
        assert encoded["token_type_ids"][row] == [0] * MAX


def test_short_texts_and_right_truncation_are_unchanged(tokenizer: Any) -> None:
    texts = [*SHORT, LONG]
    own = tokenizer(texts, truncation=True, max_length=MAX)
    right = tokenize(tokenizer, texts, None, MAX)
    assert right == tokenize(tokenizer, texts, None, MAX, "right")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert right[key] == own[key]
    head_tail = tokenize(tokenizer, texts, None, MAX, "head_tail")
    for key in right:
        assert head_tail[key][:2] == right[key][:2]  # short rows: exactly the right-truncated (full) rows
    assert head_tail["input_ids"][2] != right["input_ids"][2]
    assert head_tail["input_ids"][2][:5] == right["input_ids"][2][:5]  # [CLS] + the same 4 head tokens
    # right keeps the cache key it always had; head_tail gets its own
    assert _cache_key(tokenizer, texts, None, MAX) == _cache_key(tokenizer, texts, None, MAX, "right")
    assert _cache_key(tokenizer, texts, None, MAX) != _cache_key(tokenizer, texts, None, MAX, "head_tail")


def test_lengths_for_grouping_are_the_cut_lengths(tokenizer: Any) -> None:
    frame = pd.DataFrame({"x": [*SHORT, LONG]})
    dataset = text_dataset(frame, [0, 1, 0], tokenizer, MAX, "head_tail")
    assert dataset.lengths() == [len(tokenizer(t)["input_ids"]) for t in SHORT] + [MAX]


def test_fusion_members_are_each_cut(tokenizer: Any) -> None:
    fusion = tokenize(FusionTokenizer([tokenizer, tokenizer]), [LONG], None, MAX, "head_tail")
    single = tokenize(tokenizer, [LONG], None, MAX, "head_tail")
    assert fusion["f0.input_ids"] == fusion["f1.input_ids"] == single["input_ids"]


def test_text_pairs_refuse_head_tail(tokenizer: Any) -> None:
    with pytest.raises(HonedError, match="text_pair_column"):
        tokenize(tokenizer, [LONG], ["a pair"], MAX, "head_tail")


def test_fit_and_predict_with_head_tail(tiny_bert: str, tmp_path: Path) -> None:
    frame = text_rows(40)
    frame["text"] = frame["text"] + " " + LONG  # every text over max_length
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    recipe = tiny_recipe(tiny_bert, path, tmp_path / "run", train__epochs=1)
    recipe["data"]["truncation"] = "head_tail"
    run = honed.fit(recipe, quiet=True)
    assert load_recipe(run.run_dir / "recipe.yaml").data.truncation == "head_tail"
    assert 0.0 <= run.metrics["test_accuracy"] <= 1.0
    # two texts that share their first tokens and differ only at the end: head_tail sees the ends
    texts = [LONG + " brilliant and funny", LONG + " bland and lifeless"]
    model = run.run_dir / "model"
    probs = ["prob_neg", "prob_pos"]
    head_tail = predict_frame(model, texts)[probs].to_numpy()
    right = predict_frame(model, texts, overrides={"data.truncation": "right"})[probs].to_numpy()
    assert abs(head_tail[0] - head_tail[1]).max() > 1e-6
    assert right[0].tolist() == pytest.approx(right[1].tolist(), abs=1e-6)  # the same first 16 tokens


def _situation(long_share: float, kind: str = "text", **data: object) -> Situation:
    recipe = load_recipe({"data": {"kind": kind, "train": "x.csv", **data}, "model": {"name": "m"}})
    return Situation(recipe=recipe, kind=kind, task="classification", train_rows=100, long_share=long_share)


def test_proposer_offers_longer_or_head_tail_when_texts_are_cut() -> None:
    assert propose_length in PROPOSERS["data"]
    changes = propose_length(_situation(0.25, max_length=128))
    assert [(c.name, c.overrides, c.group, c.cost) for c in changes] == [
        ("max_length x2", {"data.max_length": 256}, "length", 2.0),
        ("head+tail truncation", {"data.truncation": "head_tail"}, "length", 1.0),
        ("sliding windows", {"data.truncation": "sliding"}, "length", 1.5),
    ]
    assert {c.name for c in changes} <= {c.name for c in proposals("data", _situation(0.25))}
    assert propose_length(_situation(0.1, max_length=300))[0].overrides == {"data.max_length": 512}


def test_proposer_stays_quiet_otherwise() -> None:
    assert propose_length(_situation(0.05)) == []
    assert propose_length(_situation(0.5, kind="image")) == []
    # nothing to gain: already 512 tokens / already head_tail / text pairs refuse head_tail
    assert [c.name for c in propose_length(_situation(0.5, max_length=512))] == ["head+tail truncation",
                                                                                 "sliding windows"]
    assert [c.name for c in propose_length(_situation(0.5, truncation="head_tail"))] == ["max_length x2",
                                                                                       "sliding windows"]
    assert [c.name for c in propose_length(_situation(0.5, truncation="sliding"))] == ["max_length x2",
                                                                                     "head+tail truncation"]
    assert [c.name for c in propose_length(_situation(0.5, text_pair_column="b"))] == ["max_length x2"]


def test_window_starts_cover_every_token_half_a_window_apart() -> None:
    assert window_starts(10, 4) == [0, 2, 4, 6]
    assert window_starts(4, 4) == window_starts(1, 4) == [0]
    assert window_starts(5, 4) == [0, 1]
    for content, room in [(37, 14), (100, 7), (15, 14)]:
        starts = window_starts(content, room)
        covered = {j for start in starts for j in range(start, start + room)}
        assert covered == set(range(content)) and starts[-1] + room == content


def test_sliding_windows_read_the_whole_text_and_short_texts_stay_whole(tokenizer: Any) -> None:
    texts = [SHORT[0], LONG]
    encoded = tokenize(tokenizer, texts, None, MAX, "sliding")
    dataset = text_dataset(pd.DataFrame({"x": texts}), [1, 0], tokenizer, MAX, "sliding")
    full = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    starts = window_starts(len(full), MAX - 2)
    assert [r[0] for r in encoded["window_row"]] == [0] + [1] * len(starts)
    assert encoded["input_ids"][0] == tokenizer(SHORT[0], truncation=True, max_length=MAX)["input_ids"]
    for window, start in zip(encoded["input_ids"][1:], starts, strict=True):
        assert window == [tokenizer.cls_token_id, *full[start : start + MAX - 2], tokenizer.sep_token_id]
    assert len(dataset) == 1 + len(starts) and [dataset[i]["labels"] for i in range(len(dataset))] == [1] + [0] * len(
        starts)
    assert dataset.lengths() == [len(ids) for ids in encoded["input_ids"]]


def test_merge_windows_averages_each_texts_logits() -> None:
    logits = torch.tensor([[1.0, 0.0], [3.0, 0.0], [5.0, 5.0], [0.0, 2.0], [0.0, 4.0], [0.0, 6.0]])
    labels = torch.tensor([1, 1, 0, 1, 1, 1])
    merged, first = merge_windows(logits, labels, [0, 0, 1, 2, 2, 2])
    assert merged.tolist() == [[2.0, 0.0], [5.0, 5.0], [0.0, 4.0]] and first.tolist() == [1, 0, 1]


def test_fit_and_predict_with_sliding_windows(tiny_bert: str, tokenizer: Any, tmp_path: Path) -> None:
    frame = text_rows(40)
    frame["text"] = frame["text"] + " " + LONG
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    recipe = tiny_recipe(tiny_bert, path, tmp_path / "run", train__epochs=3, optim__lr=3e-3)
    recipe["data"]["truncation"] = "sliding"
    run = honed.fit(recipe, quiet=True)
    texts = [LONG + " brilliant and funny", SHORT[1]]
    model_dir = run.run_dir / "model"
    got = predict_frame(model_dir, texts)[["prob_neg", "prob_pos"]].to_numpy()
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    expected, first_only = [], []
    with torch.no_grad():  # each window scored alone by the saved model, then its text's logits averaged
        for row, text in enumerate(texts):
            windows = tokenize(AutoTokenizer.from_pretrained(model_dir), [text], None, MAX, "sliding")["input_ids"]
            logits = torch.cat([model(input_ids=torch.tensor([w])).logits for w in windows])
            expected.append(torch.softmax(logits.mean(0), -1).tolist())
            first_only.append(torch.softmax(logits[0], -1).tolist())
            assert len(windows) == (1 if row else len(window_starts(len(tokenizer(text)["input_ids"]) - 2, MAX - 2)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert abs(got[0, 0] - first_only[0][0]) > 1e-5  # the long text's windows do not all score alike
    assert run.metrics["test_accuracy"] == pytest.approx(recomputed_accuracy(model_dir, recipe))


def test_techniques_that_look_rows_up_refuse_sliding_windows(tiny_bert: str, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    text_rows(20).assign(topic="a").to_csv(path, index=False)
    recipe = tiny_recipe(tiny_bert, path, tmp_path / "run")
    recipe["data"]["truncation"] = "sliding"
    recipe["techniques"] = [{"name": "aux_label", "column": "topic"}]
    with pytest.raises(HonedError, match="techniques: aux_label reads training rows by index"):
        honed.fit(recipe, quiet=True)
    recipe["techniques"], recipe["train"]["cache_frozen_features"] = [], True
    with pytest.raises(HonedError, match="train.cache_frozen_features: the feature cache keeps one row per text"):
        honed.fit(recipe, quiet=True)
    recipe["train"]["cache_frozen_features"], recipe["data"]["max_length"] = False, 2
    with pytest.raises(HonedError, match="data.max_length=2 leaves no room for text"):
        honed.fit(recipe, quiet=True)
    recipe["data"].update(max_length=16, text_pair_column="topic")
    with pytest.raises(HonedError, match="data.truncation=sliding: text pairs"):
        honed.fit(recipe, quiet=True)
    assert not (tmp_path / "run").exists()


def test_fusion_tokenizers_refuse_sliding_windows(tokenizer: Any) -> None:
    with pytest.raises(HonedError, match="a fusion model's tokenizers cut windows differently"):
        tokenize(FusionTokenizer([tokenizer, tokenizer]), [LONG], None, MAX, "sliding")


def test_merge_windows_keeps_regression_and_multilabel_label_shapes() -> None:
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    labels = torch.tensor([[0.5, 1.5], [0.5, 1.5], [9.0, 9.0]])  # float targets (or multi-hot rows) per window
    merged, first = merge_windows(logits, labels, [0, 0, 1])
    assert merged.tolist() == [[2.0, 3.0], [5.0, 6.0]] and first.tolist() == [[0.5, 1.5], [9.0, 9.0]]
