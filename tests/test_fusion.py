"""Feature fusion: two pretrained backbones, each with its own tokenizer or normalisation, as one classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import honed
from honed.cli import main
from honed.data.labels import LabelMap
from honed.inference import predict_frame
from honed.models.build import build_model, load_model
from honed.recipe import load_recipe
from tests.conftest import NEGATIVE, POSITIVE, tiny_recipe
from tests.test_regularisation import _image_recipe


@pytest.fixture(scope="session")
def word_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second tiny BERT with its own whole-word vocabulary (a different tokenizer from tiny_bert's)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("word-bert")
    words = sorted({w.strip(",.") for text in POSITIVE + NEGATIVE for w in text.split()})
    (folder / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, "#"]) + "\n", encoding="utf-8"
    )
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(1)
    BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=24,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=48,
            max_position_embeddings=64,
        )
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _fusion(tiny_bert: str, word_bert: str, pool: str = "concat") -> dict:
    return {"name": "fusion", "fusion": {"pool": pool, "members": [{"name": tiny_bert}, {"name": word_bert}]}}


@pytest.mark.parametrize("pool", ["concat", "attention"])
def test_text_fusion_trains_saves_and_predicts_the_same(
    tiny_bert: str, word_bert: str, text_csv: Path, tmp_path: Path, pool: str
) -> None:
    run = honed.fit(
        tiny_recipe(tiny_bert, text_csv, tmp_path / "run", model=_fusion(tiny_bert, word_bert, pool), train__epochs=1),
        quiet=True,
    )
    model = run.model
    assert [len(m.config.to_dict()) > 0 for m in model.members] == [True, True]
    assert model.fuse.head.in_features == (32 + 24 if pool == "concat" else 32)
    encoded = model.preprocess(["a joy to watch"], None, truncation=True, max_length=16)
    assert encoded["f0.input_ids"] != encoded["f1.input_ids"], "each member reads its own tokenizer's ids"
    assert len(encoded["f1.input_ids"][0]) == 6, "[CLS] a joy to watch [SEP] in the word vocabulary"

    reloaded, labels = load_model(run.model_dir)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor.cpu(), reloaded.state_dict()[name]), name
    frame = predict_frame(run.model_dir, ["a joy to watch", "a dull, boring mess"])
    assert len(frame) == 2 and set(frame["predicted"]) <= set(labels.names)
    np.testing.assert_allclose(frame[[f"prob_{n}" for n in labels.names]].sum(axis=1), 1.0, atol=1e-5)


def test_freezing_one_member_by_its_layer_groups(
    tiny_bert: str, word_bert: str, text_csv: Path, tmp_path: Path
) -> None:
    recipe = tiny_recipe(
        tiny_bert,
        text_csv,
        tmp_path / "run",
        model=_fusion(tiny_bert, word_bert),
        train__epochs=1,
        techniques=[{"name": "freeze", "patterns": ["members.0.*"]}],
    )
    before = build_model(load_recipe(recipe), LabelMap(("neg", "pos")))
    groups = [g.name for g in before.layer_groups()]
    assert groups[:2] == ["f0.embeddings", "f0.block.0"] and "f1.block.0" in groups and groups[-1] == "head"
    run = honed.fit(recipe, quiet=True)
    after = run.model.state_dict()
    frozen = [n for n in after if n.startswith("members.0.") and "position_ids" not in n]
    assert frozen and all(torch.equal(before.state_dict()[n], after[n].cpu()) for n in frozen), "member 0 stayed put"
    assert not torch.equal(
        before.state_dict()["members.1.embeddings.word_embeddings.weight"],
        after["members.1.embeddings.word_embeddings.weight"].cpu(),
    ), "member 1 trained"


def test_image_fusion_normalises_per_member(tmp_path: Path) -> None:
    members = [{"name": "mobilenet_v3_small", "source": "torchvision"}, {"name": "resnet18", "source": "timm"}]
    recipe = _image_recipe(tmp_path, model={"name": "fusion", "fusion": {"members": members}})
    run = honed.fit(recipe, quiet=True)
    assert run.model.fuse.head.in_features == 1024 + 512
    assert run.model.mean1.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    reloaded, _ = load_model(run.model_dir)
    pixels = torch.rand(2, 3, 32, 32)
    run.model.eval()
    torch.testing.assert_close(run.model(pixel_values=pixels), reloaded.eval()(pixel_values=pixels))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"fusion": {"members": []}}, "model.fusion.members"),
        (
            {"fusion": {"members": [{"name": "TINY"}, {"name": "resnet18", "source": "timm"}]}},
            (
                "model.fusion.members.1: 'resnet18' is a timm model, "
                "but a data.kind=text fusion takes Hugging Face text models"
            ),
        ),
        (
            {"fusion": {"members": [{"name": "TINY"}, {"name": "TINY"}]}, "dropout": {"hidden": 0.2}},
            "model.dropout: not supported with model.fusion",
        ),
    ],
)
def test_bad_fusions_fail_in_one_line(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], model: dict, expected: str
) -> None:
    model = yaml.safe_load(yaml.safe_dump(model).replace("TINY", tiny_bert))
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(tiny_recipe(tiny_bert, text_csv, tmp_path / "run", model={"name": "fusion", **model})),
        encoding="utf-8",
    )
    assert main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "run").exists()


def test_fusion_of_frozen_backbones_trains_on_cached_features(
    tiny_bert: str, word_bert: str, text_csv: Path, tmp_path: Path
) -> None:
    recipe = tiny_recipe(
        tiny_bert,
        text_csv,
        tmp_path / "run",
        model=_fusion(tiny_bert, word_bert, "attention"),
        train__epochs=1,
        train__cache_frozen_features=True,
        techniques=[{"name": "freeze", "all_but_head": True}],
    )
    before = build_model(load_recipe(recipe), LabelMap(("neg", "pos"))).state_dict()
    run = honed.fit(recipe, quiet=True)
    after = run.model.state_dict()
    assert all(torch.equal(before[n], after[n].cpu()) for n in after if n.startswith("members.")), "backbones frozen"
    assert not torch.equal(before["fuse.score.weight"], after["fuse.score.weight"].cpu()), (
        "the attention pooling trained"
    )


def test_one_member_fusion_is_the_backbone_alone_with_the_same_pooling(
    tiny_bert: str, text_csv: Path, tmp_path: Path
) -> None:
    recipe = tiny_recipe(
        tiny_bert,
        text_csv,
        tmp_path / "run",
        model={"name": "fusion", "fusion": {"members": [{"name": tiny_bert}]}},
        train__epochs=1,
        train__cache_frozen_features=True,
        techniques=[{"name": "freeze", "all_but_head": True}],
    )
    run = honed.fit(recipe, quiet=True)
    assert len(run.model.members) == 1
    assert run.model.fuse.head.in_features == run.model.meta["dims"][0]


def test_members_sit_side_by_side_for_layer_decay_and_gradual_unfreezing(
    tiny_bert: str, word_bert: str, text_csv: Path, tmp_path: Path
) -> None:
    """Each member's top block is one level below the head, whatever the order of the members in the list."""
    from honed.techniques.gradual_unfreezing import GradualUnfreezing
    from honed.train.optim import group_lrs

    recipe = load_recipe(
        tiny_recipe(
            tiny_bert,
            text_csv,
            tmp_path / "run",
            model=_fusion(tiny_bert, word_bert),
            optim={"lr": 1.0, "layer_decay": 0.5},
        )
    )
    model = build_model(recipe, LabelMap(("neg", "pos")))
    assert all(
        member.pooler is None for member in model.members
    )  # unused by fusion (mean pooling), and DDP needs every trainable parameter used
    groups = model.layer_groups()
    lrs = group_lrs(groups, recipe.optim)
    tops = [[g.name for g in groups if g.name.startswith(f"f{i}.")][-1] for i in (0, 1)]
    assert lrs["head"] == 1.0 and lrs[tops[0]] == lrs[tops[1]] == 0.5
    firsts = [[g.name for g in groups if g.name.startswith(f"f{i}.")][0] for i in (0, 1)]
    assert lrs[firsts[0]] == 0.5 ** len([g for g in groups if g.name.startswith("f0.")])
    stages = GradualUnfreezing().chunks(model)
    names = {g.name: set(g.params) for g in groups}
    assert stages[0] == names["head"] and stages[1] == names[tops[0]] | names[tops[1]]
