"""Logits of a classifier on a standard frame, in batches, with optional test-time augmentation."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from accelerate import Accelerator

from honed.data.build import check_augment, make_collate, make_dataset
from honed.data.images import check_images
from honed.data.labels import LabelMap
from honed.data.loaders import eval_loader
from honed.models.base import Classifier
from honed.models.forward import predict_logits
from honed.recipe import Recipe, TransformSpec


def logits_for(model: Classifier, labels: LabelMap, recipe: Recipe, frame: pd.DataFrame) -> torch.Tensor:
    """Logits for every row of a standard frame (labels, when present, are checked by the caller).

    With `augment.tta` = K > 0 the result is the log of the mean softmax probabilities of the plain
    view and K augmented views, so softmax(logits) is that mean (test-time augmentation); a multi-label
    map averages its sigmoid probabilities instead (`labels.probabilities` / `labels.logits_of`)."""
    acc = Accelerator(cpu=recipe.train.cpu)
    if recipe.data.kind == "image":
        check_images(frame["x"], "input")
    model = acc.prepare(model)
    plain = _view_logits(model, labels, recipe, frame, acc, train=False)
    views = recipe.augment.tta
    if not views:
        return plain
    check_augment(recipe, acc.unwrap_model(model).preprocess)
    augmented = tta_recipe(recipe)
    probs = labels.probabilities(plain.float())
    with torch.random.fork_rng(devices=[]):  # the same views every call; the caller's RNG is left as it was
        torch.manual_seed(0)
        for _ in range(views):
            probs += labels.probabilities(_view_logits(model, labels, augmented, frame, acc, train=True).float())
    return labels.logits_of(probs / (views + 1))


def tta_recipe(recipe: Recipe) -> Recipe:
    """The recipe whose training augmentation makes the TTA views: its own, or a horizontal flip for
    images when none is configured."""
    if recipe.data.kind == "image" and not recipe.augment.image:
        flip = recipe.augment.model_copy(update={"image": [TransformSpec(name="flip", p=0.5)]})
        return recipe.model_copy(update={"augment": flip})
    return recipe


def _view_logits(
    model: Any, labels: LabelMap, recipe: Recipe, frame: pd.DataFrame, acc: Accelerator, train: bool
) -> torch.Tensor:
    """Logits of one pass over the frame, augmented as in training when `train`."""
    preprocess = acc.unwrap_model(model).preprocess
    dataset = make_dataset(frame, labels, recipe, preprocess, train=train)
    collate = make_collate(recipe, preprocess, train=train)
    loader = acc.prepare(eval_loader(dataset, recipe.train.eval_batch_size, collate, 0, recipe.data.group_by_length))
    logits, _ = predict_logits(model, loader, acc)
    return logits
