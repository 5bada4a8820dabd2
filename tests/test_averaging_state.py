"""The weight averages' bookkeeping (SWA's snapshot steps, SWA and EMA state round trips for a resume) and the
weight-decay exclusions of the optimizer's parameter groups."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import torch

from honed.data.labels import LabelMap
from honed.models.build import build_model
from honed.recipe import load_recipe
from honed.techniques.ema import EMA
from honed.techniques.swa import SWA
from honed.train.optim import param_groups
from tests.conftest import tiny_recipe

LABELS = LabelMap(("neg", "pos"))


def test_swa_late_start_and_step_snapshots() -> None:
    state = SimpleNamespace(steps_per_epoch=10, total_steps=40, step=0)
    late = SWA(start=0.75)
    assert [s for s in range(1, 41) if (state.__setattr__("step", s) or late.due(state))] == [30, 40]
    every = SWA(start_epoch=2, every=4)
    assert [s for s in range(1, 41) if (state.__setattr__("step", s) or every.due(state))] == [
        12,
        16,
        20,
        24,
        28,
        32,
        36,
        40,
    ]


def test_swa_state_round_trip() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    state = SimpleNamespace(
        model=net, accelerator=SimpleNamespace(unwrap_model=lambda m: m), step=0, steps_per_epoch=1, total_steps=9
    )
    swa = SWA(start=0.0)
    swa.on_fit_start(state)
    for step in (1, 2, 3):
        with torch.no_grad():
            net[0].weight.add_(step)
        state.step = step
        swa.on_after_optimizer_step(state)
    again = SWA(start=0.0)
    again.load_state_dict(copy.deepcopy(swa.state_dict()))
    again.on_fit_start(state)
    assert again.averaged == 3
    assert torch.equal(again.avg.module[0].weight, swa.avg.module[0].weight)


def test_ema_state_round_trip() -> None:
    net = torch.nn.Linear(3, 2)
    state = SimpleNamespace(model=net, accelerator=SimpleNamespace(unwrap_model=lambda m: m))
    ema = EMA(decay=0.5, warmup=False)
    ema.on_fit_start(state)
    with torch.no_grad():
        net.weight.add_(2.0)
    ema.on_after_optimizer_step(state)
    again = EMA(decay=0.5, warmup=False)
    again.load_state_dict(copy.deepcopy(ema.state_dict()))
    again.on_fit_start(state)
    assert again.updates == 1 and torch.equal(again.shadow["weight"], ema.shadow["weight"])


def test_no_decay_patterns_cover_embeddings(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    recipe = load_recipe(
        tiny_recipe(tiny_bert, text_csv, tmp_path / "x", optim={"lr": 1e-3, "no_decay": ["bias", "norm", "embeddings"]})
    )
    model = build_model(recipe, LABELS)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in param_groups(model, recipe.optim) if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed and not any("embeddings" in n or n.endswith("bias") or "LayerNorm" in n for n in decayed)
    assert "hf.bert.encoder.layer.0.attention.self.query.weight" in decayed and "hf.classifier.weight" in decayed
    every = {names[id(p)] for g in param_groups(model, recipe.optim) for p in g["params"]}
    assert "hf.bert.embeddings.word_embeddings.weight" in every - decayed
