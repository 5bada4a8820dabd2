"""Which layers train: freezing, layer-wise LR decay, head warm-up, gradual unfreezing, the fine_tune preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import honed
from honed.cli import main
from honed.data.labels import LabelMap
from honed.models.build import build_model
from honed.recipe import load_recipe
from honed.train import freezing
from honed.train.optim import param_groups
from tests.conftest import tiny_recipe
from tests.recorder import RECORDS

SNAP = "tests.recorder:Snapshot"


def _fit(
    tiny_bert: str, text_csv: Path, tmp_path: Path, techniques: list[dict], key: str, **extra: object
) -> honed.Run:
    recipe = tiny_recipe(tiny_bert, text_csv, tmp_path / key, **extra)
    recipe["techniques"] = [*techniques, {"name": SNAP, "key": key}]
    return honed.fit(recipe, quiet=True)


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], prefix: str) -> bool:
    return any(not torch.equal(before[n], after[n]) for n in before if n.startswith(prefix))


def test_freeze_groups_keeps_them_fixed(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    start = build_model(load_recipe(tiny_recipe(tiny_bert, text_csv, tmp_path / "x")), LabelMap(("neg", "pos")))
    run = _fit(tiny_bert, text_csv, tmp_path, [{"name": "freeze", "groups": ["embeddings", "block.0"]}], "groups")
    end = dict(run.model.named_parameters())
    groups = {g.name: g.params for g in run.model.layer_groups()}
    for name in groups["embeddings"] + groups["block.0"]:
        assert torch.equal(end[name], dict(start.named_parameters())[name]), name
    snap = RECORDS["groups"][-1]
    assert _changed({n: dict(start.named_parameters())[n] for n in groups["block.1"]}, end, "hf.bert.encoder.layer.1")
    assert not any(n in snap["trainable"] for n in groups["embeddings"])
    assert {g[0] for g in snap["groups"]} == {"block.1", "neck", "head"}, (
        "the optimizer holds only trainable parameters"
    )


def test_all_but_last_and_patterns(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    model = build_model(load_recipe(tiny_recipe(tiny_bert, text_csv, tmp_path / "x")), LabelMap(("neg", "pos")))
    groups = {g.name: set(g.params) for g in model.layer_groups()}
    assert freezing.names_below_last_blocks(model, 1, "f") == groups["embeddings"] | groups["block.0"]
    assert (
        freezing.names_below_last_blocks(model, 0, "f") == groups["embeddings"] | groups["block.0"] | groups["block.1"]
    )
    hits = freezing.names_matching(model, ["*.attention.*"], "f")
    assert hits and all(".attention." in n for n in hits)


def test_frozen_batch_norm_stays_in_eval() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4))
    net[1].weight.requires_grad_(False)
    net[1].bias.requires_grad_(False)
    net.train()
    freezing.frozen_modules_to_eval(net)
    assert not net[1].training and net[2].training


def test_layer_decay_and_explicit_group_lrs(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    recipe = load_recipe(
        tiny_recipe(tiny_bert, text_csv, tmp_path / "x"), {"optim.layer_decay": 0.5, "optim.group_lr": {"block.0": 0.3}}
    )
    model = build_model(recipe, LabelMap(("neg", "pos")))
    lrs = {g["group"]: g["base_lr"] for g in param_groups(model, recipe.optim)}
    # head depth 0, neck (BERT's pooler) 1, block.1 2, block.0 explicit, embeddings depth 4
    assert lrs["head"] == pytest.approx(1e-3)
    assert lrs["neck"] == pytest.approx(1e-3 * 0.5)
    assert lrs["block.1"] == pytest.approx(1e-3 * 0.25)
    assert lrs["block.0"] == pytest.approx(0.3)
    assert lrs["embeddings"] == pytest.approx(1e-3 * 0.5**4)


def test_head_warmup_trains_only_the_head_first(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    start = dict(
        build_model(
            load_recipe(tiny_recipe(tiny_bert, text_csv, tmp_path / "x")), LabelMap(("neg", "pos"))
        ).named_parameters()
    )
    _fit(tiny_bert, text_csv, tmp_path, [{"name": "head_warmup", "epochs": 1}], "warm", train__epochs=2)
    first, second = RECORDS["warm"]
    assert not _changed(start, first["params"], "hf.bert."), "body fixed during the warm-up epoch"
    assert _changed(start, first["params"], "hf.classifier")
    assert _changed(first["params"], second["params"], "hf.bert.encoder"), "body trains after the warm-up"
    head_steps = {n: s for n, s in second["steps"].items() if n.startswith("hf.classifier")}
    body_steps = {n: s for n, s in second["steps"].items() if n.startswith("hf.bert.encoder")}
    assert min(head_steps.values()) == 2 * max(body_steps.values()), "head's Adam state kept across the unfreeze"


def test_gradual_unfreezing_adds_groups_top_down(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    _fit(
        tiny_bert,
        text_csv,
        tmp_path,
        [{"name": "gradual_unfreezing", "every": 1}],
        "gradual",
        train__epochs=5,
        optim={"lr": 1e-3, "layer_decay": 0.5},
    )
    records = RECORDS["gradual"]
    order = ["head", "neck", "block.1", "block.0", "embeddings"]
    assert [sorted({g[0] for g in r["groups"]}) for r in records] == [sorted(order[: i + 1]) for i in range(5)]
    lrs = {g[0]: g[2] for g in records[-1]["groups"]}
    assert lrs["block.0"] == pytest.approx(1e-3 * 0.5**3), "unfrozen groups join with their layer-decayed LR"
    steps = records[-1]["steps"]
    per_epoch = steps["hf.classifier.weight"] // 5
    assert steps["hf.bert.pooler.dense.weight"] == 4 * per_epoch, "Adam state of earlier groups is kept"
    assert steps["hf.bert.encoder.layer.1.output.dense.weight"] == 3 * per_epoch
    assert steps["hf.bert.encoder.layer.0.output.dense.weight"] == 2 * per_epoch
    assert steps["hf.bert.embeddings.word_embeddings.weight"] == per_epoch


def test_gradual_unfreezing_in_stages(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    _fit(
        tiny_bert,
        text_csv,
        tmp_path,
        [{"name": "gradual_unfreezing", "every": 1, "stages": 2}],
        "stages",
        train__epochs=2,
    )
    first, second = RECORDS["stages"]
    assert {g[0] for g in first["groups"]} == {"neck", "head"}, "5 groups in 2 stages: top two first"
    assert {g[0] for g in second["groups"]} == {"embeddings", "block.0", "block.1", "neck", "head"}


def test_fine_tune_preset_expands(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    recipe = load_recipe(tiny_recipe(tiny_bert, text_csv, tmp_path / "x", preset="fine_tune"))
    assert recipe.schedule.name == "one_cycle" and recipe.optim.layer_decay == 0.75
    assert [t.name for t in recipe.techniques] == ["head_warmup"]
    mine = load_recipe(
        tiny_recipe(tiny_bert, text_csv, tmp_path / "x", preset="fine_tune", optim={"lr": 1e-3, "layer_decay": 0.9})
    )
    assert mine.optim.layer_decay == 0.9, "the recipe's own settings win"
    again = load_recipe(mine)
    assert [t.name for t in again.techniques] == ["head_warmup"], "expanding twice adds nothing"


BAD = [
    ([{"name": "freeze", "groups": ["blok.0"]}], "unknown layer group 'blok.0'"),
    ([{"name": "freeze", "patterns": ["nothing.*"]}], "pattern 'nothing.*' matches no parameter"),
    ([{"name": "freeze", "patterns": ["*"]}], "every parameter"),
    ([{"name": "freeze", "all_but_last": 5}], "all_but_last=5"),
    ([{"name": "head_warmup", "epochs": 2}], "head_warmup.epochs=2"),
    ([{"name": "gradual_unfreezing", "every": 0}], "every must be >= 1"),
    ([{"name": "gradual_unfreezing", "stages": 9}], "stages=9"),
]


@pytest.mark.parametrize(("techniques", "message"), BAD)
def test_impossible_freezing_is_one_line_exit_2(
    techniques: list[dict],
    message: str,
    tiny_bert: str,
    text_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recipe = tiny_recipe(tiny_bert, text_csv, tmp_path / "run")
    recipe["techniques"] = techniques
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists(), "nothing is created before the error"


def test_unknown_group_lr_is_one_line(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            tiny_recipe(tiny_bert, text_csv, tmp_path / "run", optim={"lr": 1e-3, "group_lr": {"haed": 0.1}})
        )
    )
    assert main(["train", str(path), "--quiet"]) == 2
    assert "optim.group_lr: unknown layer group 'haed'" in capsys.readouterr().err
