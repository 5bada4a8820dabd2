"""Text datasets: tokenised once (cached on disk by content hash), padded per batch."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

CACHE_ENV = "HONED_CACHE_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "honed"))


def _cache_key(tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int) -> str:
    digest = hashlib.sha1()
    digest.update(f"{tokenizer.name_or_path}|{type(tokenizer).__name__}|{len(tokenizer)}|{max_length}".encode())
    for text in texts + (pairs or []):
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def tokenize(tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int) -> dict[str, list[list[int]]]:
    """Token ids for every row, from the cache when the same texts were tokenised before."""
    path = cache_dir() / "tokens" / f"{_cache_key(tokenizer, texts, pairs, max_length)}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    columns = {
        k: v for k, v in encoded.items() if k.rpartition(".")[2] in ("input_ids", "attention_mask", "token_type_ids")
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(columns, tmp)
    tmp.replace(path)
    return columns


class TextDataset(Dataset):
    """Rows of token ids plus an integer label (-1 when unlabelled; a float target vector for regression)
    and the row's index."""

    def __init__(self, columns: dict[str, list[list[int]]], labels: list[Any]) -> None:
        self.columns = columns
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> list[int]:
        """Each row's token count (summed over a fusion's members), for batching rows of like length."""
        ids = [v for k, v in self.columns.items() if k.rpartition(".")[2] == "input_ids"]
        return [sum(len(column[i]) for column in ids) for i in range(len(self.labels))]

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = {k: v[i] for k, v in self.columns.items()}
        row["labels"] = self.labels[i]
        row["index"] = i
        return row


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


def text_dataset(frame: Any, labels: list[Any], tokenizer: Any, max_length: int) -> TextDataset:
    pairs = frame["x2"].tolist() if "x2" in frame else None
    return TextDataset(tokenize(tokenizer, frame["x"].tolist(), pairs, max_length), labels)
