"""Multi-label targets: a label column whose cells hold several labels, read and checked.

A cell is a JSON list (`["comedy", "drama"]`) or labels joined by `data.label_delimiter` (default `|`:
`comedy|drama`); an empty or missing cell is a row with no label. A multi-label frame carries the column
`labels` (honed.data.labels.LABELS): each row's labels as a sorted tuple of names. The label set is the
union seen in the training split, or `data.labels` (in its order), which then drops every other label
from every split; its map is `honed.data.labels.MultiLabelMap`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from honed.data.labels import LABELS, MultiLabelMap
from honed.data.tables import label_text, match_known, unify_variants
from honed.errors import HonedError

CONTAINERS = (list, tuple, set, frozenset)  # in-memory cells already holding several labels


def parse_cell(value: Any, delimiter: str, where: str) -> tuple[str, ...]:
    """One cell's labels: a JSON list, labels joined by `delimiter`, or an in-memory list; empty or
    missing is no label. Numbers read as their text (1 and 1.0 are "1"); duplicates count once."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, np.ndarray) or hasattr(value, "detach"):  # a numpy or torch row: multi-hot or ids?
        raise HonedError(f"{where}: holds an array ({type(value).__name__}); give each row its label names "
                         '(a list such as ["a", "b"], or a|b), not a multi-hot or id vector')
    if isinstance(value, CONTAINERS):
        items = list(value)
    else:
        text = label_text(value).strip()
        if text.startswith("["):
            items = _json_list(text, where)
        else:
            items = text.split(delimiter) if delimiter else [text]
    labels = []
    for item in items:
        if isinstance(item, (*CONTAINERS, dict)):
            raise HonedError(f"{where}: holds a nested list ({item!r}); each label must be a name")
        name = "" if item is None else label_text(item).strip()
        if delimiter and delimiter in name:
            raise HonedError(f"{where}: label '{name}' holds data.label_delimiter '{delimiter}', so a predicted "
                             "set could not be read back; rename the label or set another data.label_delimiter")
        if name:
            labels.append(name)
    return tuple(sorted(set(labels)))


def _json_list(text: str, where: str) -> list[Any]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        items = None
    if not isinstance(items, list):
        raise HonedError(f"{where}: {text[:60]!r} starts like a JSON list but is not one; "
                         'write ["a", "b"], or labels joined by data.label_delimiter (a|b)')
    return items


def read_label_sets(frame: pd.DataFrame, names: list[str], spec: Any, source: str) -> pd.DataFrame:
    """The standard frame's `labels` column from the table's label column; spellings that differ only by
    case or surrounding spaces are merged (data.normalise_labels) or refused, as for classes."""
    column = names[0]
    sets = [parse_cell(value, spec.label_delimiter, f"{source}: row {i + 1} of data.label_column '{column}'")
            for i, value in enumerate(frame[column])]
    rows = [i for i, labels in enumerate(sets) for _ in labels]
    flat = pd.Series([label for labels in sets for label in labels], index=rows, dtype=object)
    if len(flat):
        unified = iter(unify_variants(flat, source, spec.normalise_labels))
        sets = [tuple(sorted({next(unified) for _ in labels})) for labels in sets]
    return pd.DataFrame({LABELS: pd.Series(sets, index=frame.index, dtype=object)})


def label_set_map(frames: dict[str, pd.DataFrame], spec: Any) -> MultiLabelMap:
    """The label set learned from train (or data.labels), checked: train must hold a label, and val/test may
    not hold one that training never saw."""
    train = frames["train"]
    if train.empty:
        raise HonedError("data.train: the training split is empty (check data.labels and data.split)")
    seen = _union(train[LABELS])
    if spec.labels is not None:
        unknown = [name for name in spec.labels if name not in seen]
        if unknown:
            raise HonedError(f"data.labels: label '{unknown[0]}' does not occur in the training data")
        keep = set(spec.labels)
        for split, frame in frames.items():
            frames[split] = frame.assign(**{LABELS: frame[LABELS].map(lambda r: tuple(n for n in r if n in keep))})
    names = list(spec.labels) if spec.labels is not None else sorted(seen)
    if not names:
        raise HonedError(f"data.train: no row holds a label (every cell of data.label_column '{spec.label_column}' "
                         "is empty); a multi-label model needs labelled rows, e.g. a|b or [\"a\", \"b\"]")
    for split in ("val", "test"):
        if spec.normalise_labels:
            frames[split] = frames[split].assign(**{LABELS: known_spellings(frames[split][LABELS], names)})
        check_known(frames[split], names, f"data.{split}", "add training rows for it or drop it from those rows")
    return MultiLabelMap(tuple(names), delimiter=spec.label_delimiter)


def _union(sets: Iterable[tuple[str, ...]]) -> set[str]:
    return {label for labels in sets for label in labels}


def known_spellings(sets: pd.Series, names: Iterable[str]) -> pd.Series:
    """Each set's labels spelled as the known ones where they differ only by case or spaces."""
    known = list(names)
    return sets.map(lambda r: tuple(sorted(set(match_known(pd.Series(list(r), dtype=object), known)))) if r else r)


def check_known(frame: pd.DataFrame, names: Iterable[str], field: str, fix: str) -> None:
    """One line naming the first label of `frame` outside `names`, and its row."""
    known = set(names)
    for i, labels in zip(frame.index, frame[LABELS]):  # the index: the row of the file the split was read from
        unknown = sorted(set(labels) - known)
        if unknown:
            row = f" (row {i + 1})" if isinstance(i, (int, np.integer)) else ""
            raise HonedError(f"{field}: label '{unknown[0]}'{row} never occurs in the training data "
                             f"({', '.join(sorted(known))}); {fix}")


def as_trained(frame: pd.DataFrame, spec: Any, names: Iterable[str]) -> pd.DataFrame:
    """Scored rows' label sets read as training read them: only `data.labels` kept when the recipe named
    them, spellings merged with the known ones under data.normalise_labels."""
    if spec.labels is not None:
        keep = set(spec.labels)
        frame = frame.assign(**{LABELS: frame[LABELS].map(lambda r: tuple(n for n in r if n in keep))})
    if spec.normalise_labels:
        frame = frame.assign(**{LABELS: known_spellings(frame[LABELS], names)})
    return frame
