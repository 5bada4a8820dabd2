"""Frozen-backbone embeddings for the audit, computed once and cached on disk.

Text rows are embedded by the recipe's backbone (mean of the last hidden states over real tokens,
the pooling sentence-transformers uses for MiniLM); images by the backbone's pooled features (the
input of its classification head). Rows are batched by length, run under `torch.no_grad`, and the
result is cached in HONED_CACHE_DIR/embeddings keyed by the model and a hash of the inputs, so a
second audit (or `honed clean` after `honed audit`) does not embed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from honed.data.images import image_transform, open_image
from honed.data.labels import LabelMap
from honed.data.text import cache_dir
from honed.errors import HonedError
from honed.progress import progress_bar
from honed.recipe import Recipe


def embed(
    recipe: Recipe, items: list[Any], pairs: list[str] | None, batch_size: int = 64, quiet: bool = False
) -> np.ndarray:
    """(N, D) float32 L2-normalised embeddings of `items` (texts, image paths or arrays)."""
    if recipe.model.fusion is not None:
        raise HonedError(
            "model.fusion: the audit embeds with one backbone; set model.name to one of the fusion members"
        )
    path = _cache_path(recipe, items, pairs)
    if path.is_file():
        return np.load(path)
    model = _backbone(recipe)
    with torch.no_grad():
        if recipe.data.kind == "text":
            vectors = _embed_text(model, items, pairs, recipe.data.max_length, batch_size, quiet)
        else:
            vectors = _embed_images(model, items, recipe.data.image_size, batch_size, quiet)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors


def _cache_path(recipe: Recipe, items: list[Any], pairs: list[str] | None) -> Path:
    digest = hashlib.sha1()
    spec = recipe.model
    digest.update(
        f"{spec.name}|{spec.source}|{spec.weights}|{recipe.data.kind}|{recipe.data.max_length}|{recipe.data.image_size}".encode()
    )
    for i, item in enumerate(items):
        raw = item.tobytes() if isinstance(item, np.ndarray) else str(item).encode("utf-8", "surrogatepass")
        digest.update(raw)
        if pairs is not None:
            digest.update(b"\1" + pairs[i].encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return cache_dir() / "embeddings" / f"{digest.hexdigest()}.npy"


def _backbone(recipe: Recipe) -> Any:
    """The recipe's pretrained model (a throwaway two-class head), frozen, in eval mode."""
    from honed.models.build import build_model

    model = build_model(recipe, LabelMap(("a", "b")))
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def _embed_text(
    model: Any, texts: list[str], pairs: list[str] | None, max_length: int, batch_size: int, quiet: bool
) -> np.ndarray:
    tokenizer, encoder = model.preprocess, model.hf.base_model
    order = np.argsort([len(t) for t in texts])[::-1]  # similar lengths together: little padding
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    with progress_bar(not quiet) as bar:
        task = bar.add_task("embedding", total=len(texts), info="")
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                [pairs[i] for i in idx] if pairs else None,
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out[idx] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().numpy()
            bar.advance(task, len(idx))
    return out


def _head_module(model: Any) -> torch.nn.Module:
    """The module holding the fresh head's parameters (its input is the pooled feature vector)."""
    head = min(model.head_params).rsplit(".", 1)[0]
    return model.get_submodule(head)


def _embed_images(model: Any, items: list[Any], size: int, batch_size: int, quiet: bool) -> np.ndarray:
    mean, std = model.preprocess
    transform = image_transform(size, mean, std)
    captured: list[torch.Tensor] = []
    hook = _head_module(model).register_forward_pre_hook(lambda _m, args: captured.append(args[0].flatten(1)))
    chunks = []
    try:
        with progress_bar(not quiet) as bar:
            task = bar.add_task("embedding", total=len(items), info="")
            for start in range(0, len(items), batch_size):
                pixels = torch.stack([transform(open_image(item)) for item in items[start : start + batch_size]])
                model(pixel_values=pixels)
                chunks.append(captured.pop().float().numpy())
                bar.advance(task, len(pixels))
    finally:
        hook.remove()
    return np.concatenate(chunks).astype(np.float32)
