"""Training-time text augmentation on token ids, applied per row in the training collate.

Texts are tokenised once and cached, so noise is added to the ids at batch time and every epoch sees
fresh noise. Each `augment.text` entry picks an op by name (or `package.module:attr`); a factory with a
`tokenizer` parameter is given the model's tokenizer. An op maps (ids, fixed) to (new ids, source
positions): `fixed` marks the tokenizer's special tokens ([CLS], [SEP], [PAD], ...), which no op
touches, and the source positions let the other columns (attention_mask, token_type_ids) follow the
tokens, so they stay aligned even after deletions. Randomness comes from torch's global RNG
(torch.rand/torch.randint), which checkpoints save and restore.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from honed.data.augment_image import probability
from honed.errors import HonedError
from honed.proposals import Change, Situation, proposes
from honed.recipe import TransformSpec
from honed.registry import Registry

# (ids, fixed) -> (ids, source position of each new token, or None when positions are unchanged)
TextOp = Callable[[list[int], list[bool]], tuple[list[int], list[int] | None]]

TEXT_AUGMENTATIONS: Registry[TextOp] = Registry("text augmentation")


def runs(fixed: list[bool]) -> list[list[int]]:
    """Positions of each maximal stretch of ordinary tokens (a sentence between special tokens)."""
    out: list[list[int]] = []
    for i, is_fixed in enumerate(fixed):
        if is_fixed:
            continue
        if out and out[-1][-1] == i - 1:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _token_id(tokenizer: Any, attr: str, op: str, instead: str) -> int:
    token_id = getattr(tokenizer, f"{attr}_token_id", None)
    if token_id is None:
        raise ValueError(f"the tokenizer has no {attr} token, which {op} writes; use {instead}")
    return int(token_id)


@TEXT_AUGMENTATIONS.register("word_dropout")
def word_dropout(tokenizer: Any, p: float = 0.1) -> TextOp:
    """Replace each ordinary token with the tokenizer's unknown token with probability p."""
    p, unk = probability(p), _token_id(tokenizer, "unk", "word_dropout", "random_deletion")

    def op(ids: list[int], fixed: list[bool]) -> tuple[list[int], None]:
        hit = (torch.rand(len(ids)) < p).tolist()
        return [unk if h and not f else t for t, h, f in zip(ids, hit, fixed)], None

    return op


@TEXT_AUGMENTATIONS.register("random_swap")
def random_swap(n: int | None = None, p: float | None = None) -> TextOp:
    """Swap n random token pairs (default 1), or swap each token with probability p, always with a
    partner from the same sentence, so a pair's two texts keep their words."""
    if n is not None and p is not None:
        raise ValueError("give n (pairs to swap) or p (probability per token), not both")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    rate = None if p is None else probability(p)
    count = 1 if n is None else n

    def op(ids: list[int], fixed: list[bool]) -> tuple[list[int], list[int]]:
        src = list(range(len(ids)))
        groups = [r for r in runs(fixed) if len(r) > 1]
        where = {i: r for r in groups for i in r}
        if not where:
            return list(ids), src
        if rate is None:
            eligible = sorted(where)
            picks = [eligible[int(k)] for k in torch.randint(len(eligible), (count,))] if count else []
        else:
            picks = [i for i, h in zip(sorted(where), (torch.rand(len(where)) < rate).tolist()) if h]
        for i in picks:
            run = where[i]
            j = run[int(torch.randint(len(run), ()))]
            src[i], src[j] = src[j], src[i]
        return [ids[k] for k in src], src

    return op


@TEXT_AUGMENTATIONS.register("random_deletion")
def random_deletion(p: float = 0.1) -> TextOp:
    """Delete each ordinary token with probability p; special tokens stay, and so does at least one
    ordinary token, so a row never loses all its words."""
    p = probability(p)

    def op(ids: list[int], fixed: list[bool]) -> tuple[list[int], list[int]]:
        drop = (torch.rand(len(ids)) < p).tolist()
        keep = [i for i in range(len(ids)) if fixed[i] or not drop[i]]
        ordinary = [i for i in range(len(ids)) if not fixed[i]]
        if ordinary and all(fixed[i] for i in keep):
            keep = sorted([*keep, ordinary[int(torch.randint(len(ordinary), ()))]])
        return [ids[i] for i in keep], keep

    return op


@TEXT_AUGMENTATIONS.register("span_mask")
def span_mask(tokenizer: Any, p: float = 0.15) -> TextOp:
    """Replace one contiguous span of about p x (ordinary tokens) tokens, within one sentence, with the
    tokenizer's mask token (SpanBERT-style noise)."""
    p, mask = probability(p), _token_id(tokenizer, "mask", "span_mask", "word_dropout")

    def op(ids: list[int], fixed: list[bool]) -> tuple[list[int], None]:
        stretches = runs(fixed)
        if not stretches:
            return list(ids), None
        length = min(max(1, round(p * sum(map(len, stretches)))), max(map(len, stretches)))
        starts = [r[k] for r in stretches for k in range(len(r) - length + 1)]
        first = starts[int(torch.randint(len(starts), ()))]
        return [mask if first <= i < first + length else t for i, t in enumerate(ids)], None

    return op


class TextAugment:
    """Applies the ops in order to one tokenised row, keeping every column aligned with input_ids."""

    def __init__(self, ops: list[TextOp], special_ids: set[int]) -> None:
        self.ops, self.special_ids = ops, special_ids

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        ids = list(row["input_ids"])
        fixed = [t in self.special_ids for t in ids]
        columns = {k: list(v) for k, v in row.items() if k not in ("input_ids", "labels") and isinstance(v, list)}
        for op in self.ops:
            ids, src = op(ids, fixed)
            if src is not None:
                fixed = [fixed[j] for j in src]
                columns = {k: [v[j] for j in src] for k, v in columns.items()}
        return {**row, "input_ids": ids, **columns}  # a new dict: the cached rows stay untouched


class AugmentCollator:
    """The training collate: augment each row, then pad the batch with the plain collator."""

    def __init__(self, augment: TextAugment, pad: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]) -> None:
        self.augment, self.pad = augment, pad

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.pad([self.augment(r) for r in rows])


def build_text_ops(specs: list[TransformSpec], tokenizer: Any) -> list[TextOp]:
    """The ops for `augment.text`, in recipe order; a bad entry is a HonedError naming it."""
    ops = []
    for i, spec in enumerate(specs):
        factory = TEXT_AUGMENTATIONS.get(spec.name, f"augment.text.{i}.name")
        kwargs = {k: v for k, v in spec.model_dump().items() if k != "name"}
        if "tokenizer" in inspect.signature(factory).parameters:
            kwargs.setdefault("tokenizer", tokenizer)
        op = TEXT_AUGMENTATIONS.build(spec.name, f"augment.text.{i}", **kwargs)
        if not callable(op):
            raise HonedError(f"augment.text.{i} '{spec.name}': built a {type(op).__name__}, not a token op")
        ops.append(op)
    return ops


def text_augment(specs: list[TransformSpec], tokenizer: Any) -> TextAugment | None:
    """The row augmenter for `augment.text`, or None when none is configured."""
    if not specs:
        return None
    return TextAugment(build_text_ops(specs, tokenizer), set(tokenizer.all_special_ids))


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    """Word dropout on the token ids, added to any text augmentation the recipe has."""
    current = [t.model_dump() for t in s.recipe.augment.text]
    if s.kind != "text" or any(t["name"] == "word_dropout" for t in current):
        return []
    return [Change("augment.text word_dropout p 0.1", {"augment.text": [*current, {"name": "word_dropout", "p": 0.1}]},
                   group="augment_text", why="one token in ten replaced by [UNK] each epoch: the model cannot "
                   "lean on single words")]
