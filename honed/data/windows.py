"""Sliding-window chunks for texts longer than data.max_length (`data.truncation: sliding`).

Each text is encoded in full; one longer than max_length becomes several windows of the content tokens
(each wrapped in the tokenizer's own special tokens), overlapping by half a window, so every token is
read and none sits only at a window's edge. Training sees each window as a row with its text's label;
evaluation and predict average the logits of a text's windows (`merge_windows`) into one row (BERT's
document stride for long SQuAD passages, and HF tokenizers' `stride` with overflowing tokens, cut texts the
same way). A text that fits is one window: its tokens as `right` truncation encodes them.
"""

from __future__ import annotations

from typing import Any

import torch

from honed.errors import HonedError


def window_starts(content: int, room: int) -> list[int]:
    """Start positions of windows of `room` tokens over `content` tokens, a half-window apart, the last
    one ending at the end: 10 tokens, room 4 -> [0, 2, 4, 6]."""
    if content <= room:
        return [0]
    step = max(room // 2, 1)
    starts = list(range(0, content - room, step))
    return starts + [content - room]


def window_encode(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, list[list[int]]]:
    """The tokenizer's columns (ids, attention mask, token types), one row per window (the text's leading
    special tokens, a window of its content, its trailing ones), plus `window_row`: the text each window came
    from (in order)."""
    if getattr(tokenizer, "tokenizers", None):
        raise HonedError("data.truncation=sliding: a fusion model's tokenizers cut windows differently; use right "
                         "or head_tail")
    encoded = tokenizer(texts, truncation=False, return_special_tokens_mask=True, verbose=False)
    special = encoded.pop("special_tokens_mask")
    out: dict[str, list[list[int]]] = {k: [] for k in encoded}
    out["window_row"] = []
    for row, mask in enumerate(special):
        content = [j for j, m in enumerate(mask) if not m]
        lead = list(range(content[0])) if content else list(range(len(mask)))
        trail = list(range(content[-1] + 1, len(mask))) if content else []
        room = max_length - len(lead) - len(trail)
        if room < 1:
            raise HonedError(f"data.max_length={max_length} leaves no room for text between the special tokens")
        for start in window_starts(len(content), room):
            keep = lead + content[start : start + room] + trail  # every column (ids, mask, token types) alike
            for key, values in encoded.items():
                out[key].append([values[row][j] for j in keep])
            out["window_row"].append([row])
    return out


def merge_windows(logits: torch.Tensor, labels: torch.Tensor, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each text's windows' logits averaged into one row; its label from its first window (`rows`, the text
    of each window, is non-decreasing: a text's windows are side by side)."""
    index = torch.as_tensor(rows, dtype=torch.long)
    texts = int(index.max()) + 1 if len(index) else 0
    sums = torch.zeros((texts, *logits.shape[1:]), dtype=logits.dtype).index_add_(0, index, logits)
    counts = torch.bincount(index, minlength=texts)
    first = torch.cumsum(counts, 0) - counts
    return sums / counts.to(logits.dtype).reshape(-1, *([1] * (logits.dim() - 1))), labels[first]
