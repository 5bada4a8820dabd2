"""Recipe-driven preprocessing (`data.preprocess`, `data.image_stats`).

Text normalisation (Unicode form, HTML stripping, whitespace collapse, lower-casing) runs on every
split when training and, because the recipe is saved with the model, on every input at predict
time, so a model always sees text cleaned the same way. Row filters (missing text, length in
characters or tokens) only run on labelled training data: predict must return one row per input,
so there missing text is filled and nothing is dropped. Each step logs how many rows it dropped.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any, ClassVar

import pandas as pd

from honed.errors import HonedError
from honed.recipe import PreprocessSpec, Recipe
from honed.rundir import LOG

TEXT_COLUMNS = ("x", "x2")


class _TextOnly(HTMLParser):
    """Collects the text of an HTML fragment (entities decoded), skipping script and style bodies."""

    SKIP: ClassVar[set[str]] = {"script", "style"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in ("br", "p", "div", "li", "tr"):
            self.parts.append(" ")  # block tags separate words: "a<br>b" is two words

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """Text content of `text` with tags removed and entities (&amp;, &#39;) decoded."""
    if "<" not in text and "&" not in text:
        return text
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def text_normaliser(spec: PreprocessSpec) -> Callable[[str], str]:
    """One function applying the configured steps in a fixed order: Unicode form, HTML, whitespace, case."""
    steps: list[Callable[[str], str]] = []
    if spec.unicode:
        form = spec.unicode
        steps.append(lambda t: unicodedata.normalize(form, t))
    if spec.strip_html:
        steps.append(strip_html)
    if spec.whitespace:
        steps.append(lambda t: " ".join(t.split()))
    if spec.lower:
        steps.append(str.lower)

    def normalise(text: str) -> str:
        for step in steps:
            text = step(text)
        return text

    return normalise


def normalise_texts(frame: pd.DataFrame, spec: PreprocessSpec) -> pd.DataFrame:
    """A copy of a standard frame with its text columns normalised and missing text filled
    (the predict-time half: no row is dropped)."""
    normalise = text_normaliser(spec)
    out = frame.copy()
    for column in TEXT_COLUMNS:
        if column in out:
            values = out[column].fillna("").astype(str).map(normalise)
            out[column] = values.where(values.str.len() > 0, spec.fill_value)
    return out


def preprocess_rows(frame: pd.DataFrame, recipe: Recipe, field: str, notes: list[str] | None = None) -> pd.DataFrame:
    """Training-time preprocessing of one split: normalise text, then drop rows per the recipe; the
    count each step dropped goes to `notes` (or the log). Image data passes through unchanged."""
    if recipe.data.kind != "text" or frame.empty:
        return frame
    spec = recipe.data.preprocess
    normalise = text_normaliser(spec)
    out = frame.copy()
    empty = pd.Series(False, index=out.index)
    for column in TEXT_COLUMNS:
        if column in out:
            out[column] = out[column].fillna("").astype(str).map(normalise)
            empty |= out[column].str.len() == 0
    if spec.missing == "drop":
        out = _drop(out, ~empty, field, "missing=drop (empty text)", notes)
    else:
        for column in TEXT_COLUMNS:
            if column in out:
                out[column] = out[column].where(out[column].str.len() > 0, spec.fill_value)
    chars = out["x"].str.len()
    if spec.min_chars is not None:
        out = _drop(out, chars >= spec.min_chars, field, f"min_chars={spec.min_chars}", notes)
    if spec.max_chars is not None:
        out = _drop(out, chars.loc[out.index] <= spec.max_chars, field, f"max_chars={spec.max_chars}", notes)
    return out


def _drop(frame: pd.DataFrame, keep: pd.Series, field: str, step: str, notes: list[str] | None) -> pd.DataFrame:
    dropped = int((~keep).sum())
    note = f"preprocess {field}: {step} dropped {dropped} of {len(frame)} rows"
    if notes is None:
        LOG.info(note)
    else:
        notes.append(note)
    if dropped == len(frame):
        raise HonedError(f"data.preprocess.{step.split('=')[0]}: drops every row of {field}; relax the limit")
    return frame[keep]


def filter_tokens(
    frames: dict[str, pd.DataFrame], recipe: Recipe, tokenizer: Any, notes: list[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Drop rows outside `min_tokens`/`max_tokens`, counted with the model's tokenizer (no special
    tokens, no truncation), once the model, and so its tokenizer, exists."""
    spec = recipe.data.preprocess
    if recipe.data.kind != "text" or (spec.min_tokens is None and spec.max_tokens is None):
        return frames
    tokenize = getattr(tokenizer, "tokenizers", [tokenizer])[0]  # a fusion model: its first member's
    if not callable(tokenize):
        raise HonedError("data.preprocess.min_tokens/max_tokens: this model has no tokenizer; use min_chars/max_chars")
    out = {}
    for split, frame in frames.items():
        if frame.empty:
            out[split] = frame
            continue
        counts = pd.Series(
            [len(ids) for ids in tokenize(frame["x"].tolist(), add_special_tokens=False)["input_ids"]],
            index=frame.index,
        )
        if spec.min_tokens is not None:
            frame = _drop(frame, counts >= spec.min_tokens, f"data.{split}", f"min_tokens={spec.min_tokens}", notes)
        if spec.max_tokens is not None:
            frame = _drop(
                frame,
                counts.loc[frame.index] <= spec.max_tokens,
                f"data.{split}",
                f"max_tokens={spec.max_tokens}",
                notes,
            )
        out[split] = frame
    return out


def train_image_stats(
    frame: pd.DataFrame, size: int, sample: int = 1000, seed: int = 0
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training images (RGB in [0, 1] at the training size), from a
    seeded sample of at most `sample` images: cheap, and stable to the third decimal."""
    import torch

    from honed.data.images import image_transform, open_image

    rows = frame["x"] if len(frame) <= sample else frame["x"].sample(n=sample, random_state=seed)
    transform = image_transform(size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    total, total_sq, pixels = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0
    for item in rows:
        image = transform(open_image(item)).double()
        total += image.sum(dim=(1, 2))
        total_sq += (image**2).sum(dim=(1, 2))
        pixels += image.shape[1] * image.shape[2]
    mean = total / pixels
    std = (total_sq / pixels - mean**2).clamp_min(1e-12).sqrt()
    return tuple(round(float(v), 6) for v in mean), tuple(round(max(float(v), 1e-3), 6) for v in std)


# The model-kind capability `data.image_stats: train` needs (declared here, where it is used: data may not
# import models; honed.models.kinds re-exports it with the other capabilities).
TRAIN_IMAGE_STATS = "train_image_stats"


def apply_image_stats(
    model: Any, frames: dict[str, pd.DataFrame], recipe: Recipe, notes: list[str] | None = None
) -> None:
    """With `data.image_stats: train`, normalise with the training data's statistics instead of the
    backbone's, and record them where the saved model keeps its normalisation (so predict uses them)."""
    if recipe.data.kind != "image" or recipe.data.image_stats == "backbone":
        return
    if not model.kind.supports(TRAIN_IMAGE_STATS):
        raise HonedError(
            f"data.image_stats=train: not supported for {model.kind.name} models; use data.image_stats=backbone"
        )
    mean, std = train_image_stats(frames["train"], recipe.data.image_size, seed=recipe.seed)
    (notes.append if notes is not None else LOG.info)(f"image statistics from the training data: mean {mean} std {std}")
    model.kind.set_image_stats(model, mean, std)  # also where the saved model keeps them (honed.json, processor)


def finish_preprocess(
    frames: dict[str, pd.DataFrame], recipe: Recipe, model: Any, notes: list[str] | None = None
) -> dict[str, pd.DataFrame]:
    """The steps that need the model: token-length filters and training-set image statistics."""
    frames = filter_tokens(frames, recipe, model.preprocess, notes)
    apply_image_stats(model, frames, recipe, notes)
    return frames
