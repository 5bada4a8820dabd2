"""The climb's candidates, contributed by the files that own each technique (honed/proposals.py): which
ones each stage proposes for a text, an image and a regression recipe, what is left out when it is already
on or does not apply, that every proposed change gives a recipe that validates and builds, and that each
one trains for a few steps on a tiny model."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from transformers import AutoTokenizer

import honed
import honed.data.augment_image
import honed.data.augment_text
import honed.losses
import honed.models.candidates
import honed.models.dropout
import honed.train.optim
import honed.train.schedules  # noqa: F401  (each module above registers its proposers on import)
from honed.data.augment_image import build_image_ops
from honed.data.augment_text import build_text_ops
from honed.losses import build_loss
from honed.models.candidates import block_count
from honed.proposals import Change, Situation, proposals
from honed.recipe import Recipe, load_recipe, set_dotted
from honed.techniques import build_techniques, load_all
from honed.techniques.ema import short_run_decay
from honed.train.schedules import build_schedule
from tests.conftest import text_rows, tiny_recipe
from tests.test_images import write_images
from tests.test_regression import regression_rows

load_all()
STAGES = ("optimisation", "techniques", "model")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight mobilenet_v3_small state dict standing in for a pretrained weights file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_small.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    return path


def text_tree(tiny_bert: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """32 rows (16 train), 2 epochs of batch 8 on the tiny BERT: a run of 4 steps, no report."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    csv = tmp_path / "reviews.csv"
    text_rows(32).to_csv(csv, index=False)
    tree = tiny_recipe(tiny_bert, csv, tmp_path / "run", data__split={"val": 0.25, "test": 0.25}, **extra)
    tree["report"] = {"enabled": False}
    return tree


def image_tree(weights: Path, tmp_path: Path) -> dict[str, Any]:
    """12 tiny PNGs, mobilenet_v3_small at 32 px, 2 epochs of batch 4."""
    write_images(tmp_path / "images")
    return {
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "data": {"kind": "image", "train": str(tmp_path / "images"), "image_size": 32,
                 "split": {"val": 0.17, "test": 0.17}},
        "model": {"name": "mobilenet_v3_small", "source": "torchvision", "weights": str(weights)},
        "optim": {"lr": 1e-3},
        "train": {"epochs": 2, "batch_size": 4, "eval_batch_size": 8},
        "report": {"enabled": False},
    }


def regression_tree(tiny_bert: str, tmp_path: Path) -> dict[str, Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    csv = tmp_path / "scores.csv"
    regression_rows(32).to_csv(csv, index=False)
    tree = text_tree(tiny_bert, tmp_path, task="regression")
    tree["data"].update(train=str(csv), label_column="y")
    return tree


def situation(tree: dict[str, Any], **settings: Any) -> Situation:
    recipe = load_recipe(tree)
    task = "regression" if recipe.task == "regression" else "classification"
    settings = {"train_rows": 16, "steps": 120, **settings}
    return Situation(recipe=recipe, kind=recipe.data.kind, task=task, **settings)


def names(stage: str, s: Situation) -> set[str]:
    return {c.name for c in proposals(stage, s)}


def applied(tree: dict[str, Any], change: Change) -> dict[str, Any]:
    """The climb's rule: dotted overrides set, technique entries added (an entry of the same name replaced)."""
    out = copy.deepcopy(tree)
    for key, value in change.overrides.items():
        set_dotted(out, key, copy.deepcopy(value))
    added = {t["name"] for t in change.techniques}
    out["techniques"] = [t for t in out.get("techniques") or [] if t["name"] not in added] + change.techniques
    return out


def ready(tree: dict[str, Any], change: Change, tokenizer: Any) -> Recipe:
    """The changed recipe, validated, with everything a fit builds from it before training built too."""
    recipe = load_recipe(applied(tree, change))
    build_techniques(recipe.techniques)
    build_schedule(recipe.schedule, 40)
    build_loss(recipe.loss, (10, 6), "regression" if recipe.task == "regression" else "classification")
    build_image_ops(recipe.augment.image, recipe.data.image_size)
    build_text_ops(recipe.augment.text, tokenizer)
    return recipe


def fit_changes(s: Situation) -> list[Change]:
    return [c for stage in STAGES for c in proposals(stage, s) if c.runner == "fit"]


def test_text_classification_candidates(tiny_bert: str, tmp_path: Path) -> None:
    s = situation(text_tree(tiny_bert, tmp_path), backbones=[tiny_bert, "sentence-transformers/all-MiniLM-L6-v2"])
    assert names("optimisation", s) == {
        "optim.lr 5e-4", "optim.lr 2e-3", "optim.lr 3e-3", "optim.layer_decay 0.8", "optim.weight_decay 0.1",
        "train.epochs 3", "train.epochs 4", "schedule cosine", "schedule one_cycle",
    }
    assert names("techniques", s) == {
        "loss label_smoothing 0.1", "loss focal gamma 2", "model.dropout.hidden 0.2",
        "augment.text word_dropout p 0.1", "aux mlm weight 0.1", "ema decay 0.9167", "swa last 25% every 4 steps",
        "freeze lower 1 of 2 blocks", "gradual unfreezing 2 stages every 1 epochs", "head warmup 12 steps",
        "l1 head 1e-4",
    }
    assert names("model", s) == {
        "backbone sentence-transformers/all-MiniLM-L6-v2", "model.keep_layers 1 of 2",
        "linear probe (frozen features)", "tfidf + logistic regression",
    }
    changes = {c.name: c for stage in STAGES for c in proposals(stage, s)}
    assert changes["tfidf + logistic regression"].runner == "classical"
    classical = changes["tfidf + logistic regression"]
    assert not classical.overrides and not classical.techniques
    assert changes["backbone sentence-transformers/all-MiniLM-L6-v2"].cost > 10  # 6 x 384 wide against 2 x 32
    assert {c.group for c in changes.values() if c.name.startswith("optim.lr")} == {"lr"}
    assert changes["ema decay 0.9167"].group == changes["swa last 25% every 4 steps"].group  # one average per run
    assert all(c.why for c in changes.values())


def test_image_candidates(tiny_weights: Path, tmp_path: Path) -> None:
    s = situation(image_tree(tiny_weights, tmp_path), steps=400)
    assert names("optimisation", s) == {
        "optim.lr 5e-4", "optim.lr 2e-3", "optim.lr 3e-3", "optim.weight_decay 0.1",
        "train.epochs 3", "train.epochs 4", "schedule cosine", "schedule one_cycle",
    }
    assert names("techniques", s) == {
        "loss label_smoothing 0.1", "loss focal gamma 2", "augment.image flip", "augment.image flip + resized_crop 0.5",
        "aux rotation weight 0.1", "mixup alpha 0.2 p 0.5", "cutmix alpha 1 p 0.5", "ema decay 0.975",
        "swa last 25% every 12 steps", "freeze lower 6 of 13 blocks", "gradual unfreezing 2 stages every 1 epochs",
        "head warmup 40 steps", "l1 head 1e-4",
    }
    assert names("model", s) == {"linear probe (frozen features)"}


def test_regression_candidates(tiny_bert: str, tmp_path: Path) -> None:
    s = situation(regression_tree(tiny_bert, tmp_path))
    techniques = names("techniques", s)
    assert "loss huber" in techniques
    assert not {"loss focal gamma 2", "loss label_smoothing 0.1", "loss class-weighted cross entropy"} & techniques
    assert "tfidf + logistic regression" not in names("model", s)
    tree = regression_tree(tiny_bert, tmp_path)
    tree["loss"] = {"name": "huber"}
    assert "loss huber" not in names("techniques", situation(tree))


def test_what_the_situation_decides(tiny_bert: str, tmp_path: Path) -> None:
    tree = text_tree(tiny_bert, tmp_path)
    found = situation(tree, lr_found=3.14e-4)
    assert {n for n in names("optimisation", found) if n.startswith("optim.lr")} == {
        "optim.lr 3.1e-4", "optim.lr 5e-4", "optim.lr 2e-3"}
    same = situation(tree, lr_found=1e-3)  # the finder agrees with the recipe: nothing new to try there
    assert {n for n in names("optimisation", same) if n.startswith("optim.lr")} == {"optim.lr 5e-4", "optim.lr 2e-3"}
    assert "loss class-weighted cross entropy" in names("techniques", situation(tree, class_skew=1.5))
    assert "loss class-weighted cross entropy" not in names("techniques", situation(tree, class_skew=1.4))
    bigger = copy.deepcopy(tree)
    bigger["train"].update(batch_size=32, max_steps=50)
    bigger["schedule"] = {"name": "cosine", "warmup_ratio": 0.0}
    optimisation = names("optimisation", situation(bigger))
    assert {"train.batch_size 16", "train.max_steps 100", "schedule.warmup_ratio 0.1", "schedule one_cycle"} <= (
        optimisation
    )
    assert not {"schedule cosine", "train.epochs 3"} & optimisation
    assert short_run_decay(100) == 0.9 and short_run_decay(600) == 0.9833 and short_run_decay(10**6) == 0.9999


def test_what_is_already_on_is_not_proposed(tiny_bert: str, tmp_path: Path) -> None:
    tree = text_tree(tiny_bert, tmp_path)
    tree["techniques"] = [{"name": "ema"}, {"name": "freeze", "all_but_last": 1}, {"name": "l1"}, {"name": "aux_mlm"}]
    tree["loss"] = {"name": "focal", "label_smoothing": 0.1}
    tree["model"].update(dropout={"hidden": 0.2}, keep_layers=1)
    tree["optim"].update(layer_decay=0.9, weight_decay=0.1)
    tree["augment"] = {"text": [{"name": "word_dropout", "p": 0.2}]}
    s = situation(tree)
    assert names("techniques", s) == set()
    assert {"optim.layer_decay 0.8", "optim.weight_decay 0.1"}.isdisjoint(names("optimisation", s))
    assert not any(name.startswith("model.keep_layers") for name in names("model", s))
    tree["techniques"] = [{"name": "head_warmup", "steps": 2}]
    assert "linear probe (frozen features)" not in names("model", situation(tree))  # needs the full model in the loop


def test_a_loss_switch_keeps_what_the_new_loss_takes(tiny_bert: str, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    tree = text_tree(tiny_bert, tmp_path)
    tree["loss"] = {"name": "cross_entropy", "label_smoothing": 0.05}
    focal = next(c for c in proposals("techniques", situation(tree)) if c.name == "loss focal gamma 2")
    assert ready(tree, focal, tokenizer).loss.model_dump() == {"name": "focal", "label_smoothing": 0.05, "gamma": 2.0}
    tree["loss"] = {"name": "focal", "alpha": "balanced", "label_smoothing": 0.05}
    weighted = next(c for c in proposals("techniques", situation(tree, class_skew=3.0)) if "class-weighted" in c.name)
    assert ready(tree, weighted, tokenizer).loss.model_dump() == {
        "name": "weighted_cross_entropy", "label_smoothing": 0.05, "weights": "balanced"}


def test_block_count_reads_the_architecture_without_weights(tiny_bert: str, tiny_weights: Path, tmp_path: Path) -> None:
    text = load_recipe(text_tree(tiny_bert, tmp_path))
    assert block_count(text) == 2
    assert block_count(load_recipe(text, {"model.keep_layers": 1})) == 1
    assert block_count(load_recipe(image_tree(tiny_weights, tmp_path))) == 13
    assert block_count(load_recipe(text, {"model.name": str(tmp_path / "missing")})) is None
    assert block_count(load_recipe(text, {"model.source": "python", "model.name": "tests.x:y"})) is None


def test_every_proposed_change_validates_and_builds(tiny_bert: str, tiny_weights: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    text = text_tree(tiny_bert, tmp_path)
    busy = copy.deepcopy(text)  # a recipe that already carries settings the changes must compose with
    busy.update(loss={"name": "focal", "alpha": "balanced"}, schedule={"name": "step", "step_size": 2},
                augment={"text": [{"name": "random_swap", "n": 1}]})
    busy["train"].update(batch_size=16)
    situations = [
        situation(text, backbones=["sentence-transformers/all-MiniLM-L6-v2"], lr_found=2e-4, class_skew=2.0),
        situation(busy, class_skew=2.0),
        situation(image_tree(tiny_weights, tmp_path / "img"), class_skew=2.0),
        situation(regression_tree(tiny_bert, tmp_path / "reg")),
    ]
    checked = 0
    for s in situations:
        tree = s.recipe.model_dump(mode="json")
        for change in fit_changes(s):
            ready(tree, change, tokenizer)
            checked += 1
    assert checked > 60


def _fit_each(tree: dict[str, Any], changes: list[Change], tmp_path: Path) -> list[str]:
    """Train every change once for a few steps; the ones that fail, with their first error line."""
    failed = []
    for i, change in enumerate(changes):
        recipe = {**applied(tree, change), "output_dir": str(tmp_path / f"run{i}")}
        try:
            run = honed.fit(recipe, quiet=True)
            assert run.history, "no epoch finished"
        except Exception as exc:  # collect every failing candidate, not only the first
            failed.append(f"{change.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        shutil.rmtree(tmp_path / f"run{i}", ignore_errors=True)
    return failed


def test_each_text_candidate_trains(tiny_bert: str, tmp_path: Path) -> None:
    other = tmp_path / "other-bert"  # a second tiny backbone to switch to
    shutil.copytree(tiny_bert, other)
    tree = text_tree(tiny_bert, tmp_path)
    s = situation(tree, train_rows=16, steps=0, backbones=[str(other)], class_skew=2.0)
    changes = fit_changes(s)
    assert len(changes) > 20
    assert _fit_each(s.recipe.model_dump(mode="json"), changes, tmp_path) == []
    regression = situation(regression_tree(tiny_bert, tmp_path / "reg"), steps=0)
    huber = [c for c in fit_changes(regression) if c.name == "loss huber"]
    assert _fit_each(regression.recipe.model_dump(mode="json"), huber, tmp_path) == []


def test_each_image_candidate_trains(tiny_weights: Path, tmp_path: Path) -> None:
    s = situation(image_tree(tiny_weights, tmp_path), train_rows=8, steps=0, class_skew=2.0)
    changes = fit_changes(s)
    assert len(changes) > 20
    assert _fit_each(s.recipe.model_dump(mode="json"), changes, tmp_path) == []


@pytest.mark.parametrize("steps", [0, 1, 10**6])
def test_step_counts_at_the_extremes_give_valid_settings(tiny_bert: str, tmp_path: Path, steps: int) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    s = situation(text_tree(tiny_bert, tmp_path), steps=steps, train_rows=1)
    for change in proposals("techniques", s):
        ready(s.recipe.model_dump(mode="json"), change, tokenizer)
