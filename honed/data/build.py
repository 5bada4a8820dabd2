"""From a recipe's data section to labelled splits and torch datasets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from torch.utils.data import Dataset

from honed.data.augment_image import build_image_ops
from honed.data.augment_text import TEXT_AUGMENTATIONS, AugmentCollator, text_augment
from honed.data.images import ImageDataset, check_images, image_transform
from honed.data.labels import TARGET, LabelMap
from honed.data.multilabel import label_set_map
from honed.data.preprocess import preprocess_rows
from honed.data.sources import load_source, slice_columns
from honed.data.splits import carve, limit
from honed.data.tables import match_known
from honed.data.targets import target_map
from honed.data.text import PadCollator, text_dataset
from honed.errors import HonedError
from honed.recipe import Recipe
from honed.rundir import LOG

SPLITS = ("train", "val", "test")


@dataclass
class Tables:
    """Standard frames per split and the label map learned from train."""

    frames: dict[str, pd.DataFrame]
    labels: LabelMap  # a TargetMap for regression
    notes: list[str] = field(default_factory=list)  # what preprocessing dropped, logged once the run folder exists
    task: str = "classification"  # what the recipe's `task` resolved to (`auto` reads the training labels)


def load_tables(recipe: Recipe, inputs: dict[str, Any] | None = None) -> Tables:
    """Read, filter, split and check the data; `inputs` holds in-memory splits from the Python API."""
    spec, inputs, notes = recipe.data, inputs or {}, []
    frames: dict[str, pd.DataFrame] = {}
    task = recipe.task
    for split in SPLITS:  # train first: `task: auto` is decided on it, val and test read the same way
        source = inputs.get(split, getattr(spec, split))
        if source is not None:
            frame = load_source(source, spec, f"data.{split}", keep=slice_columns(recipe), task=task)
            if task == "auto":  # image folders and IDX files hold class names
                task = frame.attrs.get("task", "classification")
                if task != "classification":  # the historical default goes unannounced: its logs stay as they were
                    notes.append(f"task: auto -> {task} (float labels with many distinct values in data.label_column)")
            notes.extend(frame.attrs.pop("notes", []))  # e.g. non-image files left out of a class folder
            frame = keep_labels(frame, spec.labels, f"data.{split}")
            frames[split] = preprocess_rows(frame, recipe, f"data.{split}", notes)
            if spec.kind == "image":
                frames[split] = _drop_bad_images(frames[split], f"data.{split}", spec.skip_bad_rows, notes)
    if "train" not in frames:
        raise HonedError("data.train: no training data given; set data.train to a file, folder or asset")
    seed, taken = recipe.seed, 0.0
    for split in ("test", "val"):
        if split not in frames:
            fraction = getattr(spec.split, split)  # of all rows, so rescale to what is left
            if fraction + taken >= 1.0:
                raise HonedError("data.split: val + test fractions must leave rows for training (sum below 1)")
            frames["train"], frames[split] = carve(
                frames["train"], fraction / (1.0 - taken), spec.split.method, seed, split
            )
            taken += fraction
    for split in SPLITS:
        frames[split] = limit(frames[split], getattr(spec.max_rows, split), seed)
    return Tables(frames, LABEL_MAKERS[task](frames, spec), notes, task)


def _drop_bad_images(frame: pd.DataFrame, field: str, skip: bool, notes: list[str]) -> pd.DataFrame:
    """The frame without unreadable images when `skip` (counted and listed in `notes`); else the first is an error."""
    bad, note = check_images(frame["x"], field, skip)
    if note:
        LOG.warning(note)
        notes.append(note)
    return frame.drop(index=bad) if bad else frame


def keep_labels(frame: pd.DataFrame, keep: list[str] | None, field: str) -> pd.DataFrame:
    if keep is None or "label" not in frame:  # data.labels picks classes; regression frames have none
        return frame
    unknown = [k for k in keep if k not in set(frame["label"])]
    if unknown and field == "data.train":
        raise HonedError(f"data.labels: label '{unknown[0]}' does not occur in the training data")
    return frame[frame["label"].isin(keep)]


def _check(frames: dict[str, pd.DataFrame], order: list[str] | None, normalise: bool = False) -> LabelMap:
    train = frames["train"]
    if train.empty:
        raise HonedError("data.train: the training split is empty (check data.labels and data.split)")
    labels = LabelMap.from_labels(train["label"], order)
    if len(labels) < 2:
        raise HonedError(
            f"data.train: only one class ('{labels.names[0]}') in the training data; a classifier needs two or more"
        )
    for split in ("val", "test"):
        if normalise:
            frames[split]["label"] = match_known(frames[split]["label"], labels.names)
        unseen = sorted(set(frames[split]["label"]) - set(labels.names))
        if unseen:
            near = match_known(pd.Series(unseen[:1]), labels.names).iloc[0]
            hint = f" (training has '{near}': data.normalise_labels=true merges them)" if near != unseen[0] else ""
            raise HonedError(
                f"data.{split}: label '{unseen[0]}' never occurs in training data{hint}; "
                "add training rows for it or drop those rows"
            )
    return labels


def _regression_targets(frames: dict[str, pd.DataFrame], spec: Any) -> LabelMap:
    return target_map(frames, [c[len(TARGET) :] for c in frames["train"].columns if c.startswith(TARGET)])


# The label map each task learns from the splits (classes checked across splits; targets standardised on train;
# label sets: the union seen in train, checked across splits).
LABEL_MAKERS = {
    "classification": lambda frames, spec: _check(frames, spec.labels, spec.normalise_labels),
    "regression": _regression_targets,
    "multilabel": label_set_map,
}


def make_dataset(
    frame: pd.DataFrame, labels: LabelMap, recipe: Recipe, preprocess: Any, train: bool = False
) -> Dataset:
    """A torch dataset for one frame; `preprocess` is the model's tokenizer or image statistics;
    `train` switches on the recipe's image augmentation (text is augmented in the training collate)."""
    ids = labels.encode_frame(frame)  # class ids, or standardised target vectors
    if recipe.data.kind == "text":
        return text_dataset(frame, ids, preprocess, recipe.data.max_length, recipe.data.truncation)
    mean, std = preprocess
    ops = build_image_ops(recipe.augment.image, recipe.data.image_size) if train else None
    return ImageDataset(frame["x"].tolist(), ids, image_transform(recipe.data.image_size, mean, std, ops))


def make_collate(recipe: Recipe, preprocess: Any, train: bool = False) -> Any:
    """Dynamic padding for text; with `train`, each row gets the recipe's text augmentation first."""
    if train:
        check_augment(recipe, preprocess)  # ops for the wrong data kind fail rather than being ignored
    if recipe.data.kind != "text":
        return None
    pad = PadCollator(preprocess.pad_token_id or 0, getattr(preprocess, "pad_ids", None))
    augment = text_augment(recipe.augment.text, preprocess) if train else None
    return AugmentCollator(augment, pad) if augment else pad


def check_augment(recipe: Recipe, preprocess: Any = None) -> None:
    """Fail before training on augmentation that cannot run: ops for the other data kind, unknown
    names, bad settings (and, given the tokenizer, a missing unk/mask token), or text TTA without ops."""
    spec, kind = recipe.augment, recipe.data.kind
    other = "text" if kind == "image" else "image"
    if getattr(spec, other):
        raise HonedError(
            f"augment.{other}: {other} augmentations need data.kind={other}, "
            f"but this recipe trains {kind} "
            f"(data.kind={kind}); remove augment.{other} or use augment.{kind}"
        )
    if kind == "image":
        build_image_ops(spec.image, recipe.data.image_size)
    elif preprocess is not None:
        text_augment(spec.text, preprocess)
    else:
        for i, op in enumerate(spec.text):
            TEXT_AUGMENTATIONS.get(op.name, f"augment.text.{i}.name")
    if spec.tta and kind == "text" and not spec.text:
        raise HonedError(
            "augment.tta: test-time augmentation of text needs augment.text ops "
            "(e.g. [{name: word_dropout, p: 0.1}]); set augment.tta=0 or add augment.text"
        )
