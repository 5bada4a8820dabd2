"""Shared duplicate detection: exact keys and near-duplicate pairs by chunked cosine similarity.

Exact duplicates share a normalised key (text: Unicode NFKC, case-folded, whitespace collapsed;
images: a hash of the file's bytes or the array). Near duplicates are pairs whose normalised
embeddings have cosine similarity at or above the threshold, found with X[chunk] @ X.T products
(memory chunk x N, no Python double loop), excluding pairs that are already exact duplicates.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

import numpy as np
import pandas as pd

from honed.audit.base import AuditContext

CHUNK = 1024
MAX_PAIRS = 200_000  # more pairs than this means the threshold is too low for the embeddings


def exact_keys(ctx: AuditContext) -> pd.Series:
    """A duplicate key per usable row (same key = same content)."""
    if "exact_keys" not in ctx.cache:
        usable = ctx.data.usable()
        key = _text_key if ctx.data.kind == "text" else _image_key
        keys = usable["x"].map(key)
        if "x2" in usable:
            keys = keys + "\x1f" + usable["x2"].map(_text_key)
        ctx.cache["exact_keys"] = keys
    return ctx.cache["exact_keys"]


def _text_key(text: Any) -> str:
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


def _image_key(item: Any) -> str:
    if isinstance(item, np.ndarray):
        return hashlib.sha1(item.tobytes()).hexdigest()
    with open(item, "rb") as handle:
        return hashlib.sha1(handle.read()).hexdigest()


def near_pairs(ctx: AuditContext) -> pd.DataFrame:
    """Pairs (a, b, cosine) of frame indices with a < b in embedding order, not exact duplicates."""
    if "near_pairs" not in ctx.cache:
        index, vectors = ctx.embeddings()
        keys = exact_keys(ctx).loc[index].to_numpy()
        rows_a, rows_b, sims = [], [], []
        found = 0
        for start in range(0, len(vectors), CHUNK):
            block = vectors[start : start + CHUNK] @ vectors.T
            local, other = np.nonzero(block >= ctx.settings.near_duplicate)
            first = local + start
            keep = (other > first) & (keys[first] != keys[other])
            rows_a.append(first[keep])
            rows_b.append(other[keep])
            sims.append(block[local[keep], other[keep]])
            found += int(keep.sum())
            if found > MAX_PAIRS:
                break
        a, b = np.concatenate(rows_a), np.concatenate(rows_b)
        ctx.cache["near_truncated"] = found > MAX_PAIRS
        ctx.cache["near_pairs"] = pd.DataFrame({"a": index[a], "b": index[b], "cosine": np.concatenate(sims).round(4)})
    return ctx.cache["near_pairs"]


def exact_groups(ctx: AuditContext) -> list[pd.Index]:
    """Frame indices of each set of two or more rows with the same content."""
    keys = exact_keys(ctx)
    sizes = keys.map(keys.value_counts())
    dup = keys[sizes > 1]
    return [group.index for _, group in dup.groupby(dup, sort=False)]


def where(frame: pd.DataFrame, i: Any) -> str:
    """'train row 12' for frame index i (the split it is in, the row in its source)."""
    row = frame.loc[i]
    if row["source"] == row["split"]:
        return f"{row['split']} row {row['row']}"
    return f"row {row['row']} ({row['split']})"
