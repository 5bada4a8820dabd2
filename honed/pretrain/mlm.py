"""Masked-language-model pretraining of a Hugging Face text backbone with transformers' own
collator (DataCollatorForLanguageModeling; with `whole_word`, its whole-word masking, which groups
sub-word pieces by the fast tokenizer's offsets).
A checkpoint without an MLM head (MiniLM ships as a plain BertModel) gets a freshly initialised
head; the log and pretrain.json say so."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from honed.assets import resolve_model_id
from honed.errors import HonedError
from honed.models.kinds import MASKED_LM, kind_named
from honed.pretrain.common import run_epochs, shuffled_chunks
from honed.recipe import Recipe
from honed.rundir import LOG


def load_masked_lm(name: str) -> tuple[Any, Any, list[str]]:
    """(AutoModelForMaskedLM, tokenizer, names of freshly initialised weights)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = resolve_model_id(name)
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(path, local_files_only=True, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise HonedError(f"model.name: cannot load '{name}' as a masked language model: "
                         f"{str(exc).splitlines()[0]}") from exc
    if tokenizer.mask_token is None:
        raise HonedError(f"model.name: the tokenizer of '{name}' has no mask token, "
                         "so masked-LM pretraining cannot run")
    return model, tokenizer, sorted(info.get("missing_keys", []))


def masking_collate(tokenizer: Any, mlm_probability: float, whole_word: bool,
                    max_length: int) -> Callable[[list[str]], dict[str, torch.Tensor]]:
    """Texts -> a masked batch (input_ids, attention_mask, labels with -100 where nothing is predicted)
    by transformers' DataCollatorForLanguageModeling; with `whole_word`, all pieces of a word are masked
    together (its whole_word_mask, which needs the fast tokenizer's offsets)."""
    from transformers import DataCollatorForLanguageModeling

    extra = {"whole_word_mask": True, "mask_replace_prob": 1.0, "random_replace_prob": 0.0} if whole_word else {}
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=mlm_probability,
                                               return_tensors="pt", **extra)

    def collate(chunk: list[str]) -> dict[str, torch.Tensor]:
        # padded per batch here: the collator's own padding leaves word offsets ragged
        enc = tokenizer(chunk, truncation=True, max_length=max_length, padding=True, return_offsets_mapping=whole_word)
        return collator([{k: enc[k][i] for k in enc} for i in range(len(chunk))])

    return collate


def pretrain_mlm(recipe: Recipe, texts: list[Any], begin: Callable[[], Path], quiet: bool) -> dict[str, Any]:
    if recipe.model.source != "auto" and not kind_named(recipe.model.source).supports(MASKED_LM):
        raise HonedError("model.source: masked-LM pretraining needs a Hugging Face text model "
                         f"(got '{recipe.model.source}')")
    if recipe.model.source == "auto" and _is_vision_name(recipe.model.name):
        raise HonedError(f"model.name: '{recipe.model.name}' is an image model; masked-LM pretraining needs "
                         "a Hugging Face text model (for images set data.kind: image to pretrain by rotation "
                         "prediction)")
    spec = recipe.pretrain
    model, tokenizer, fresh = load_masked_lm(recipe.model.name)
    if spec.whole_word and not tokenizer.is_fast:
        raise HonedError(f"pretrain.whole_word: needs a fast tokenizer (word offsets); "
                         f"'{recipe.model.name}' has a slow one")
    run_dir = begin()
    if fresh:
        LOG.warning("'%s' has no masked-LM head; %d weights (%s ...) start freshly initialised",
                    recipe.model.name, len(fresh), fresh[0])
    collate = masking_collate(tokenizer, spec.mlm_probability, spec.whole_word, recipe.data.max_length)
    epoch = [0]

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        epoch[0] += 1
        return (collate(chunk) for chunk in shuffled_chunks(texts, spec.batch_size, recipe.seed + epoch[0]))

    model.train()
    n_batches = -(-len(texts) // spec.batch_size)
    losses = run_epochs(recipe, batches, n_batches, lambda b: model(**b).loss,
                        [p for p in model.parameters() if p.requires_grad], quiet, "masked-LM", model=model)
    out = run_dir / "backbone"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    LOG.info("backbone saved to %s (fine-tune with model.name: %s)", out, out)
    return {"objective": "whole_word_mlm" if spec.whole_word else "mlm", "rows": len(texts), "epochs": spec.epochs,
            "steps": spec.epochs * n_batches, "warmup_ratio": spec.warmup_ratio, "loss_per_epoch": losses,
            "fresh_head_weights": fresh, "backbone": str(out)}


def _is_vision_name(name: str) -> bool:
    """True for a torchvision architecture name (e.g. mobilenet_v2), which no text objective can use."""
    import torchvision

    return name in torchvision.models.list_models()
