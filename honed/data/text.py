"""Text datasets: tokenised once (cached on disk by content hash), padded per batch.

A text longer than data.max_length is cut one of three ways (data.truncation): `right` keeps its
first tokens (the tokenizer's own truncation); `head_tail` keeps its first and last tokens, a
quarter of the room left after the special tokens for the head and three quarters for the tail
(Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?": head 128 + tail 382 of BERT's
510 beat the head alone on long reviews, whose verdict often comes at the end); `sliding` reads all of
it in overlapping windows whose logits are averaged (honed/data/windows.py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from honed.data.windows import merge_windows, window_encode
from honed.errors import HonedError
from honed.proposals import Change, Situation, proposes

CACHE_ENV = "HONED_CACHE_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "honed"))


def _cache_key(
    tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int, truncation: str = "right"
) -> str:
    digest = hashlib.sha1()
    digest.update(f"{tokenizer.name_or_path}|{type(tokenizer).__name__}|{len(tokenizer)}|{max_length}".encode())
    if truncation != "right":  # right keeps the key it always had: existing caches stay valid
        digest.update(f"|{truncation}".encode())
    for text in texts + (pairs or []):
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def head_tail_split(room: int) -> tuple[int, int]:
    """(head, tail) token counts for `room` content tokens: a quarter (rounded) and the rest;
    510 -> (128, 382), the split of Sun et al. 2019."""
    head = max(room + 2, 0) // 4
    return head, max(room - head, 0)


def head_tail_encode(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, list[list[int]]]:
    """Each text encoded in full, then, where longer than `max_length`, cut to its special tokens
    plus the first and last content tokens (`head_tail_split` of the room the special tokens leave);
    every column (ids, attention mask, token types) is cut at the same positions. A fusion model's
    members are each encoded with their own tokenizer, keyed `f{i}.<column>` as FusionTokenizer does."""
    members = getattr(tokenizer, "tokenizers", None)
    if members:
        encoded = [head_tail_encode(member, texts, max_length) for member in members]
        return {f"f{i}.{k}": v for i, columns in enumerate(encoded) for k, v in columns.items()}
    encoded = tokenizer(texts, truncation=False, return_special_tokens_mask=True, verbose=False)
    special = encoded.pop("special_tokens_mask")
    columns = {k: list(v) for k, v in encoded.items()}
    for row, mask in enumerate(special):
        if len(mask) <= max_length:
            continue
        content = [j for j, m in enumerate(mask) if not m]
        head, tail = head_tail_split(max_length - (len(mask) - len(content)))
        keep = sorted([j for j, m in enumerate(mask) if m] + content[:head] + content[len(content) - tail :])
        for values in columns.values():
            values[row] = [values[row][j] for j in keep]
    return columns


def tokenize(
    tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int, truncation: str = "right"
) -> dict[str, list[list[int]]]:
    """Token ids for every row, from the cache when the same texts were tokenised before; texts longer
    than `max_length` are cut by `truncation` (right | head_tail, see the module's docstring)."""
    if truncation != "right" and pairs is not None:
        raise HonedError(f"data.truncation={truncation}: text pairs (data.text_pair_column) are not supported; "
                         "use right")
    path = cache_dir() / "tokens" / f"{_cache_key(tokenizer, texts, pairs, max_length, truncation)}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    if truncation == "head_tail":
        encoded = head_tail_encode(tokenizer, texts, max_length)
    elif truncation == "sliding":
        encoded = window_encode(tokenizer, texts, max_length)
    else:
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    kept = ("input_ids", "attention_mask", "token_type_ids", "window_row")
    columns = {k: v for k, v in encoded.items() if k.rpartition(".")[2] in kept}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(columns, tmp)
    tmp.replace(path)
    return columns


class TextDataset(Dataset):
    """Rows of token ids plus an integer label (-1 when unlabelled; a float target vector for regression)
    and the row's index. With sliding windows (a `window_row` column) a row is one window of a text, with
    that text's label, and `merge` turns the windows' logits back into one row per text."""

    def __init__(self, columns: dict[str, list[list[int]]], labels: list[Any]) -> None:
        self.columns = dict(columns)
        self.windows = [r[0] for r in self.columns.pop("window_row")] if "window_row" in columns else None
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels) if self.windows is None else len(self.windows)

    def lengths(self) -> list[int]:
        """Each row's token count (summed over a fusion's members), for batching rows of like length."""
        ids = [v for k, v in self.columns.items() if k.rpartition(".")[2] == "input_ids"]
        return [sum(len(column[i]) for column in ids) for i in range(len(self))]

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = {k: v[i] for k, v in self.columns.items()}
        row["labels"] = self.labels[i if self.windows is None else self.windows[i]]
        row["index"] = i
        return row

    def merge(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row logits in text order: as they are, or each text's windows averaged."""
        return (logits, labels) if self.windows is None else merge_windows(logits, labels, self.windows)


class PadCollator:
    """Dynamic padding: each batch is padded to its own longest row (per key: a fusion model's
    members each have their own `f{i}.input_ids` and pad id in `pad_ids`)."""

    def __init__(self, pad_id: int, pad_ids: dict[str, int] | None = None) -> None:
        self.pad_id = pad_id
        self.pad_ids = pad_ids or {}

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for key in rows[0]:
            if key in ("labels", "index"):  # regression labels are float target vectors: stacked
                values = [r[key] for r in rows]
                stacked = isinstance(values[0], torch.Tensor)
                batch[key] = torch.stack(values) if stacked else torch.tensor(values, dtype=torch.long)
                continue
            width = max(len(r[key]) for r in rows)
            fill = self.pad_ids.get(key, self.pad_id if key == "input_ids" else 0)
            batch[key] = torch.tensor([r[key] + [fill] * (width - len(r[key])) for r in rows], dtype=torch.long)
        return batch


def text_dataset(
    frame: Any, labels: list[Any], tokenizer: Any, max_length: int, truncation: str = "right"
) -> TextDataset:
    pairs = frame["x2"].tolist() if "x2" in frame else None
    return TextDataset(tokenize(tokenizer, frame["x"].tolist(), pairs, max_length, truncation), labels)


@proposes("data")
def propose_length(s: Situation) -> list[Change]:
    """When at least a tenth of the training texts are cut, try seeing more of them (twice the tokens,
    at most 512) or cutting them differently (head + tail); alternatives of one group."""
    if s.kind != "text" or s.long_share < 0.1:
        return []
    data, seen = s.recipe.data, f"{s.long_share:.0%} of training texts are longer than data.max_length"
    longer = min(2 * data.max_length, 512)
    changes = []
    if longer > data.max_length:
        changes.append(Change("max_length x2", overrides={"data.max_length": longer}, group="length", cost=2.0,
                              why=f"{seen}={data.max_length}: read up to {longer} tokens of each (about 2x compute)"))
    if data.truncation != "head_tail" and data.text_pair_column is None:
        changes.append(Change("head+tail truncation", overrides={"data.truncation": "head_tail"}, group="length",
                              why=f"{seen}: keep their first quarter and last three quarters (Sun et al. 2019)"))
    if data.truncation != "sliding" and data.text_pair_column is None and not s.recipe.train.cache_frozen_features:
        changes.append(Change("sliding windows", overrides={"data.truncation": "sliding"}, group="length",
                              cost=1.0 + 2 * s.long_share, why=f"{seen}: read all of each in overlapping windows, "
                              "their logits averaged"))
    return changes
