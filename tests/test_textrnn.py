"""Recurrent and convolutional text models (`model.source: textrnn`): a BiLSTM and a TextCNN over the tiny
BERT's embedding table and tokenizer. Shapes, padding that changes nothing, layer groups, a short fit that
beats chance on held-out rows, save -> load_predictor -> the same probabilities, frozen embeddings that
stay put, a textrnn ensemble member and distillation student, and bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

import honed
from honed.cli import main
from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.models.build import build_model, load_model
from honed.models.textrnn import TextRNNClassifier
from honed.recipe import load_recipe
from tests.conftest import recomputed_accuracy, text_rows, tiny_recipe
from tests.test_python_model import same_predictions

LABELS = LabelMap(("neg", "pos"))
SMALL = {"bilstm": {"hidden": 32}, "textcnn": {"filters": 16}}


def rnn_recipe(tiny_bert: str, tmp_path: Path, name: str, rows: int = 160, **args: Any) -> dict[str, Any]:
    """A seconds-long fit of `name` over the tiny BERT's embeddings (its table and tokenizer)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "reviews.csv"
    text_rows(rows).to_csv(data, index=False)
    recipe = tiny_recipe(tiny_bert, data, tmp_path / "run", report={"enabled": False})
    recipe["model"] = {"source": "textrnn", "name": name, "tokenizer": tiny_bert, "args": {**SMALL[name], **args}}
    recipe["optim"] = {"lr": 1e-2, "weight_decay": 0.0}
    recipe["train"]["epochs"] = 6
    return recipe


def built(tiny_bert: str, tmp_path: Path, name: str, **args: Any) -> TextRNNClassifier:
    model = build_model(load_recipe(rnn_recipe(tiny_bert, tmp_path, name, **args)), LABELS)
    assert isinstance(model, TextRNNClassifier)
    return model


@pytest.mark.parametrize("name", ["bilstm", "textcnn"])
def test_forward_shapes_padding_and_layer_groups(tiny_bert: str, tmp_path: Path, name: str) -> None:
    model = built(tiny_bert, tmp_path, name).eval()
    texts = ["a joy", "a dull, boring mess of a film that goes on and on"]
    batch = model.preprocess(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch)  # token_type_ids come along and are ignored
        alone = model(**model.preprocess(texts[:1], return_tensors="pt"))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    torch.testing.assert_close(logits[:1], alone, atol=1e-5, rtol=1e-5)  # padding changes nothing
    groups = {g.name: g.params for g in model.layer_groups()}
    assert list(groups) == ["embeddings", "encoder", "head"]
    assert groups["embeddings"] == ["net.embed.norm.weight", "net.embed.norm.bias"]  # the table is a buffer
    assert groups["head"] == ["net.head.weight", "net.head.bias"]
    assert model.net.embed.weight.shape == (len(model.preprocess), 32) and not model.net.embed.weight.requires_grad
    tuned = built(tiny_bert, tmp_path, name, freeze_embeddings=False)
    assert {g.name: g.params for g in tuned.layer_groups()}["embeddings"][0] == "net.embed.weight"
    from transformers import AutoModel

    table = AutoModel.from_pretrained(tiny_bert).get_input_embeddings().weight
    assert torch.equal(model.net.embed.weight, table), "the pretrained word-piece table, as it is"


@pytest.mark.parametrize(("name", "args"), [("bilstm", {}), ("textcnn", {}), ("bilstm", {"cell": "gru", "layers": 2})])
def test_a_short_fit_beats_chance_and_reloads_with_the_same_probabilities(
    tiny_bert: str, tmp_path: Path, name: str, args: dict[str, Any]
) -> None:
    recipe = rnn_recipe(tiny_bert, tmp_path, name, **args)
    run = honed.fit(recipe, quiet=True)
    held_out = recomputed_accuracy(run.model_dir, run.recipe, "test")
    assert held_out >= 0.75 and run.metrics["test_accuracy"] == pytest.approx(held_out, abs=1e-6)
    meta = json.loads((run.model_dir / "honed.json").read_text())
    assert meta["source"] == "textrnn" and meta["name"] == name and meta["tokenizer"] == tiny_bert
    assert meta["vocab"] == len(run.model.preprocess) and meta["dim"] == 32
    assert (run.model_dir / "tokenizer.json").is_file() and (run.model_dir / "model.safetensors").is_file()
    same_predictions(run, tmp_path / "reviews.csv")
    assert "layer groups: embeddings, encoder, head" in (run.run_dir / "log.txt").read_text()
    assert main(["evaluate", str(run.model_dir), str(tmp_path / "reviews.csv")]) == 0


def test_model_dropout_sets_the_heads_rate_and_the_lstms_between_layers(tiny_bert: str, tmp_path: Path) -> None:
    recipe = rnn_recipe(tiny_bert, tmp_path, "bilstm", layers=2)
    recipe["model"]["dropout"] = {"classifier": 0.1, "hidden": 0.2}
    model = build_model(load_recipe(recipe), LABELS)
    assert model.net.dropout.p == 0.1 and model.net.encoder.dropout == 0.2


def test_frozen_embeddings_stay_put_and_tuned_ones_move(tiny_bert: str, tmp_path: Path) -> None:
    from transformers import AutoModel

    table = AutoModel.from_pretrained(tiny_bert).get_input_embeddings().weight.detach()
    recipe = rnn_recipe(tiny_bert, tmp_path / "a", "textcnn")
    recipe["train"]["epochs"] = 1
    recipe["techniques"] = [{"name": "gradual_unfreezing", "every": 1}, {"name": "ema", "decay": 0.9}]
    frozen = honed.fit(recipe, quiet=True)
    assert torch.equal(frozen.model.net.embed.weight, table), "neither unfreezing nor EMA moves a frozen table"
    assert torch.equal(load_file(str(frozen.model_dir / "model.safetensors"))["embed.weight"], table)
    tuned_recipe = rnn_recipe(tiny_bert, tmp_path / "b", "textcnn", freeze_embeddings=False)
    tuned_recipe["train"]["epochs"] = 1
    tuned = honed.fit(tuned_recipe, quiet=True)
    assert not torch.equal(tuned.model.net.embed.weight.detach(), table)
    reloaded, _ = load_model(tuned.model_dir)
    assert reloaded.net.embed.weight.requires_grad
    assert torch.equal(reloaded.net.embed.weight, tuned.model.net.embed.weight)


def test_layer_wise_lr_and_freezing_name_the_groups(tiny_bert: str, tmp_path: Path) -> None:
    recipe = rnn_recipe(tiny_bert, tmp_path, "bilstm", freeze_embeddings=False)
    recipe["train"]["epochs"] = 1
    recipe["optim"].update(layer_decay=0.5, group_lr={"head": 0.05})
    recipe["techniques"] = [{"name": "freeze", "groups": ["encoder"]}]
    run = honed.fit(recipe, quiet=True)
    assert not any(p.requires_grad for p in run.model.net.encoder.parameters())
    assert all(p.requires_grad for p in [*run.model.net.head.parameters(), run.model.net.embed.weight])
    from honed.train.optim import group_lrs

    lrs = group_lrs(run.model.layer_groups(), run.recipe.optim)
    assert lrs == {"embeddings": pytest.approx(0.01 * 0.25), "encoder": pytest.approx(0.005), "head": 0.05}


def test_an_ensemble_member_and_a_distillation_student(tiny_bert: str, tmp_path: Path) -> None:
    from honed.ensemble import build_ensemble
    from honed.inference import load_predictor

    data = tmp_path / "reviews.csv"
    text_rows(60).to_csv(data, index=False)
    base = tiny_recipe(tiny_bert, data, tmp_path / "ens", report={"enabled": False})
    base["train"]["epochs"] = 2
    lstm = {"model.source": "textrnn", "model.name": "bilstm", "model.tokenizer": tiny_bert,
            "model.args": {"hidden": 16}, "optim.lr": 1e-2}
    base["ensemble"] = {"method": "voting", "members": [{"name": "bert"}, {"name": "lstm", "overrides": lstm}]}
    result = build_ensemble(base, quiet=True)
    assert set(result.metrics["members"]) == {"bert", "lstm"}
    member = json.loads((tmp_path / "ens" / "members" / "lstm" / "model" / "honed.json").read_text())
    assert member["source"] == "textrnn" and member["name"] == "bilstm"
    predictor = load_predictor(tmp_path / "ens")
    assert predictor.predict_proba(text_rows(6).rename(columns={"text": "x"})).shape == (6, 2)
    student = rnn_recipe(tiny_bert, tmp_path / "student", "textcnn", rows=60)
    student["techniques"] = [{"name": "distill", "teacher": str(tmp_path / "ens"), "temperature": 2, "alpha": 0.5}]
    run = honed.fit(student, quiet=True)
    assert run.metrics["steps"] > 0 and isinstance(load_predictor(run.run_dir).model, TextRNNClassifier)


BAD = [
    ({"name": "bilstn"}, "model.source=textrnn builds bilstm or textcnn, not 'bilstn' (did you mean 'bilstm'?)"),
    ({"args": {"hiden": 8}}, "model.args: bilstm takes no 'hiden' (did you mean 'hidden'?)"),
    ({"args": {"hidden": 0}}, "model.args.hidden: bilstm needs an integer >= 1, got 0"),
    ({"args": {"cell": "rnn"}}, "model.args.cell: bilstm needs one of lstm, gru, got 'rnn'"),
    ({"args": {"freeze_embeddings": "yes"}}, "model.args.freeze_embeddings: bilstm needs true or false"),
    ({"tokenizer": "no/such-model"}, "model.tokenizer: cannot load tokenizer 'no/such-model'"),
    ({"weights": "w.pth"}, "model.weights: textrnn models start from model.tokenizer's embeddings"),
    ({"keep_layers": 1}, "model.keep_layers: works on Hugging Face transformer models only (this is a textrnn model)"),
    ({"dropout": {"attention": 0.1}}, "model.dropout.attention: this model has no attention dropout"),
]


@pytest.mark.parametrize(("model", "expected"), BAD)
def test_bad_input_is_one_line_before_the_run_folder(
    tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], model: dict[str, Any], expected: str
) -> None:
    recipe = rnn_recipe(tiny_bert, tmp_path, "bilstm")
    recipe["model"].update(model)
    if "args" in model:
        recipe["model"]["args"] = model["args"]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "run").exists()


def test_image_data_and_a_damaged_folder_are_one_line(tiny_bert: str, tmp_path: Path) -> None:
    recipe = load_recipe({"data": {"kind": "image"}, "model": {"source": "textrnn", "name": "textcnn"}})
    with pytest.raises(HonedError, match="model.source: textrnn builds text models"):
        build_model(recipe, LABELS)
    tiny = rnn_recipe(tiny_bert, tmp_path, "textcnn", rows=30)
    tiny["train"]["epochs"] = 1
    run = honed.fit(tiny, quiet=True)
    meta = json.loads((run.model_dir / "honed.json").read_text())
    (run.model_dir / "honed.json").write_text(json.dumps({**meta, "args": {**meta["args"], "filters": 8}}))
    with pytest.raises(HonedError, match="model.safetensors does not fit the textcnn its honed.json describes"):
        load_model(run.model_dir)
    (run.model_dir / "honed.json").write_text(json.dumps({**meta, "name": "gru"}))
    with pytest.raises(HonedError, match="honed.json does not describe a textrnn model"):
        load_model(run.model_dir)
