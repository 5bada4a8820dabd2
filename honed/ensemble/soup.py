"""Model soups (Wortsman et al. 2022): one model whose weights are the average of several fine-tunes
that share a pretrained init (seeds, tune trials, snapshots of one run), at one model's inference cost.

    ensemble: {method: soup, soup: greedy, members: [{name: s0}, {name: s1, overrides: {seed: 1}}]}

`uniform` averages every member. `greedy` sorts the members by validation accuracy and, starting
from the best, adds each one whose inclusion keeps or raises the soup's validation accuracy (the
paper's Algorithm 1 uses >=), so the soup never scores below its best member on val. Batch-norm
running statistics are not averaged meaningfully (Wortsman et al. reset them), so for models with
batch norm they are recomputed on the training rows (honed/techniques/swa.py's `update_bn`) for
every candidate. Members of different architectures or heads cannot be averaged: refused in one line,
before training where the recipes show it, else when their weights do not line up.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch

from honed.data.build import make_collate, make_dataset
from honed.data.labels import LabelMap
from honed.data.loaders import eval_loader
from honed.ensemble.members import Member, member_recipe
from honed.ensemble.spec import MemberSpec
from honed.errors import HonedError
from honed.inference import ModelPredictor, model_folder, saved_recipe
from honed.metrics import probability_metrics
from honed.models.base import Classifier
from honed.models.build import load_model, save_model
from honed.recipe import Recipe
from honed.techniques.swa import recompute_batch_norm, trainable_batch_norms

# the model.* recipe keys that shape the weights (dropout rates do not)
ARCHITECTURE_KEYS = ("name", "source", "weights", "args", "head", "keep_layers", "fusion")


@dataclass
class Soup:
    """The averaged model's folder, the members it averages (names) and what greedy selection saw."""

    folder: Path
    ingredients: list[str]
    val_accuracy: float
    member_val: dict[str, float]


def check_soup_members(members: list[MemberSpec], tree: dict[str, Any], folder: Path) -> None:
    """Members whose recipes name different backbones, weights or heads: one line, before training."""
    if len(members) < 2:  # snapshots: checkpoints of one run, one architecture by construction
        return
    specs = []
    for i, member in enumerate(members):
        recipe = (
            saved_recipe(model_folder(member.prefit, f"ensemble.members.{i}.prefit"))
            if member.prefit
            else member_recipe(tree, member, folder / "members" / member.name)
        )
        model = recipe.model.model_dump(mode="json")
        specs.append((member.name, {k: model.get(k) for k in ARCHITECTURE_KEYS}))
    first, spec = specs[0]
    for name, other in specs[1:]:
        key = next((k for k in ARCHITECTURE_KEYS if other.get(k) != spec.get(k)), None)
        if key is not None:
            raise HonedError(
                f"ensemble.soup: members '{first}' and '{name}' differ in model.{key} ({spec.get(key)!r} "
                f"vs {other.get(key)!r}); a soup averages fine-tunes of one pretrained model, one head"
            )


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors; integer buffers (batch counts, position ids) from the first."""
    out = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            out[key] = torch.stack([s[key].to(torch.float64) for s in states]).mean(dim=0).to(value.dtype)
        else:
            out[key] = value.clone()
    return out


def check_compatible(names: list[str], models: list[Classifier], labels: list[LabelMap]) -> None:
    """Same class, label order, parameter names and shapes; anything else cannot be averaged."""
    first = models[0].state_dict()
    shapes = {k: tuple(v.shape) for k, v in first.items()}
    for name, model, label_map in zip(names[1:], models[1:], labels[1:], strict=True):
        if type(model) is not type(models[0]) or label_map.names != labels[0].names:
            raise HonedError(
                f"ensemble.soup: member '{name}' is a {type(model).__name__} with labels "
                f"{label_map.names}, member '{names[0]}' a {type(models[0]).__name__} with "
                f"{labels[0].names}; a soup needs one architecture and head"
            )
        other = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if other != shapes:
            key = next((k for k in sorted(set(shapes) | set(other)) if shapes.get(k) != other.get(k)), "?")
            raise HonedError(
                f"ensemble.soup: member '{name}' does not line up with '{names[0]}' at weight '{key}' "
                f"({other.get(key)} vs {shapes.get(key)}); a soup needs one architecture and head"
            )


class _Kitchen:
    """Builds candidate soups from loaded members and scores them on val (batch norm recomputed on train)."""

    def __init__(self, members: list[Member], frames: dict[str, pd.DataFrame]) -> None:
        loaded = [load_model(m.model_dir) for m in members]
        self.names = [m.name for m in members]
        self.models, self.labels = [m for m, _ in loaded], [lab for _, lab in loaded]
        check_compatible(self.names, self.models, self.labels)
        self.states = [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in self.models]
        self.recipe: Recipe = saved_recipe(members[0].model_dir)
        self.frames = frames

    def cook(self, chosen: list[int]) -> Classifier:
        """A copy of the first member holding the average of `chosen`, batch norm re-estimated on train."""
        model = copy.deepcopy(self.models[0]).cpu()
        model.load_state_dict(average_states([self.states[i] for i in chosen]))
        if trainable_batch_norms(model):
            preprocess = model.preprocess
            dataset = make_dataset(self.frames["train"], self.labels[0], self.recipe, preprocess, train=False)
            loader = eval_loader(dataset, self.recipe.train.eval_batch_size, make_collate(self.recipe, preprocess), 0)
            recompute_batch_norm(model, loader, SimpleNamespace(num_processes=1))
        return model

    def score(self, model: Classifier) -> float:
        val = self.frames["val"]
        probs = ModelPredictor(model, self.labels[0], self.recipe).proba_in(val, self.labels[0].names)
        y = np.asarray([self.labels[0].names.index(v) for v in val["label"]])
        return float(probability_metrics(probs, y)["accuracy"])


def make_soup(
    members: list[Member], frames: dict[str, pd.DataFrame], member_val: np.ndarray, mode: str, out: Path
) -> Soup:
    """Average the members (`uniform`, or `greedy` by val accuracy) and save the soup as a model folder at `out`.

    `member_val`: each member's validation accuracy (from its own saved predictions), which orders greedy.
    The best member's recipe reads the data and is saved with the soup."""
    order = [int(i) for i in np.argsort(-np.asarray(member_val), kind="stable")]
    ranked = [members[i] for i in order]
    kitchen = _Kitchen(ranked, frames)
    if mode == "uniform":
        chosen, model = list(range(len(ranked))), kitchen.cook(list(range(len(ranked))))
        best = kitchen.score(model)
    else:  # greedy starts from the best member as it is, so the soup never scores below it on val
        chosen, model = [0], copy.deepcopy(kitchen.models[0]).cpu()
        best = kitchen.score(model)
        for i in range(1, len(ranked)):
            candidate = kitchen.cook([*chosen, i])
            score = kitchen.score(candidate)
            if score >= best:
                chosen, model, best = [*chosen, i], candidate, score
    recipe_yaml = (ranked[0].model_dir / "recipe.yaml").read_text(encoding="utf-8")
    tmp = out.with_name(f".{out.name}.tmp")  # written aside and renamed: never a half-saved soup folder
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model.cpu(), kitchen.labels[0], tmp, recipe_yaml)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return Soup(
        out, [kitchen.names[i] for i in chosen], best, {m.name: float(member_val[i]) for i, m in enumerate(members)}
    )
