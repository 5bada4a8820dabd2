"""More checks of `honed pretrain`: whole-word masking, no val/test leakage into the corpus, the MLM
head tied to the word embeddings, the warmup schedule, the callable `honed.pretrain` API and an
image model asked for masked-LM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import honed
from honed.cli import main
from honed.data.build import load_tables
from honed.pretrain.common import unlabelled_rows, warmup_linear
from honed.pretrain.mlm import load_masked_lm, masking_collate
from honed.recipe import load_recipe
from tests.conftest import tiny_recipe


def test_whole_word_masking_masks_every_piece_of_a_word_together(tiny_bert: str) -> None:
    _, tokenizer, _ = load_masked_lm(tiny_bert)
    texts = [
        "unbelievably antidisestablishmentarianism overcomplicated screenwriting",
        "phantasmagorical cinematography notwithstanding incomprehensibly",
    ] * 4
    words = [tokenizer(t, truncation=True, max_length=32).word_ids() for t in texts]
    assert any(w.count(i) > 1 for w in words for i in set(w) if i is not None), "the texts must split into pieces"
    collate = masking_collate(tokenizer, 0.4, True, 32)
    partial, masked = 0, 0
    for _ in range(10):
        labels = collate(texts)["labels"]
        for row, ids in zip(labels.tolist(), words, strict=True):
            for word in {i for i in ids if i is not None}:
                picked = [row[p] != -100 for p, i in enumerate(ids) if i == word]
                masked += all(picked)
                partial += any(picked) and not all(picked)
    assert masked > 0 and partial == 0


def test_piece_masking_does_split_words(tiny_bert: str) -> None:
    """The control for the test above: plain token masking does mask single pieces of a word."""
    _, tokenizer, _ = load_masked_lm(tiny_bert)
    texts = ["unbelievably antidisestablishmentarianism overcomplicated screenwriting"] * 8
    ids = tokenizer(texts[0], truncation=True, max_length=32).word_ids()
    collate = masking_collate(tokenizer, 0.4, False, 32)
    partial = 0
    for _ in range(10):
        for row in collate(texts)["labels"].tolist():
            for word in {i for i in ids if i is not None}:
                picked = [row[p] != -100 for p, i in enumerate(ids) if i == word]
                partial += any(picked) and not all(picked)
    assert partial > 0


def test_mlm_head_is_tied_to_the_word_embeddings(tiny_bert: str) -> None:
    model, _, fresh = load_masked_lm(tiny_bert)
    assert fresh, "the tiny BertModel has no MLM head, so one starts fresh"
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()


def test_corpus_is_the_training_split_only(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    recipe = load_recipe(
        tiny_recipe(
            tiny_bert,
            text_csv,
            tmp_path / "run",
            data={"kind": "text", "train": str(text_csv), "max_length": 16, "split": {"val": 0.2, "test": 0.2}},
        )
    )
    corpus = set(unlabelled_rows(recipe))
    frames = load_tables(recipe).frames
    assert corpus == {str(x) for x in frames["train"]["x"]}
    held_out = {str(x) for x in frames["val"]["x"]} | {str(x) for x in frames["test"]["x"]}
    assert held_out and not (corpus & held_out)


def test_warmup_then_linear_decay() -> None:
    assert [round(warmup_linear(s, 2, 10), 3) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    assert warmup_linear(0, 0, 4) == 1.0


def test_python_api_is_callable_and_reports_steps(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(
        tiny_bert, text_csv, tmp_path / "api", pretrain={"max_rows": 16, "batch_size": 8, "warmup_ratio": 0.5}
    )
    run_dir = honed.pretrain(recipe, quiet=True)
    summary = json.loads((run_dir / "pretrain.json").read_text())
    assert summary["rows"] == 16 and summary["steps"] == 2 and summary["wall_s"] >= 0 and summary["warmup_ratio"] == 0.5


def test_image_model_asked_for_mlm_is_one_line_exit_2(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tiny_recipe(tiny_bert, text_csv, tmp_path / "img", model={"name": "mobilenet_v2"})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    assert main(["pretrain", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.name" in err and "image model" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "img" / "backbone").exists()


def test_a_batch_without_targets_is_skipped_not_spread_as_nan(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    """A short batch in which no token was masked gives a NaN loss; one NaN step would ruin every weight."""
    import torch

    from honed.pretrain.common import run_epochs

    recipe = load_recipe(tiny_recipe(tiny_bert, text_csv, tmp_path / "run", pretrain={"epochs": 1}))
    layer = torch.nn.Linear(3, 1)
    scale = iter([float("nan"), 1.0, 1.0])

    def step(x: torch.Tensor) -> torch.Tensor:
        return layer(x).pow(2).mean() * next(scale)

    run_epochs(recipe, lambda: [torch.ones(2, 3)] * 3, 3, step, list(layer.parameters()), quiet=True, what="test")
    assert all(torch.isfinite(p).all() for p in layer.parameters())
