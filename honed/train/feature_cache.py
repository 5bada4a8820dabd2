"""Frozen-feature caching: when the whole backbone is frozen and the input is not augmented, every
epoch would push the same rows through the same backbone. Compute the head's input once per row
(in eval mode, cached on disk), then train only the head on the cache: a linear probe or a fusion
of frozen backbones then costs a few milliseconds per epoch instead of a backbone pass.

Switched on by `train.cache_frozen_features: true` together with a `freeze` technique that leaves
only the head trainable (`{name: freeze, all_but_head: true}`: a linear probe).
The head module is shared, not copied: training it on the cache trains the full model's head, which
is what is saved. Features are taken in eval mode, so backbone dropout does not apply, as in a
usual linear probe.

When the freeze leaves only a lower part frozen (the embeddings and the first blocks), the same switch
caches that part's output instead and trains the layers above it: honed/train/lower_cache.py.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from honed.data.batches import NOT_INPUTS, inputs_of
from honed.data.loaders import row_lengths
from honed.errors import HonedError
from honed.models.base import Classifier
from honed.progress import progress_bar
from honed.train import lower_cache
from honed.train.events import Hooks, capable

FIELD = "train.cache_frozen_features"


def head_module(model: nn.Module) -> tuple[str, nn.Module]:
    """The deepest module that owns every head parameter (its input is what the head reads)."""
    heads = set(model.head_params)
    best = ("", model)
    for name, module in model.named_modules():
        owned = {f"{name}.{n}" if name else n for n, _ in module.named_parameters()}
        if heads <= owned and len(name) > len(best[0]):
            best = (name, module)
    owned = {f"{best[0]}.{n}" if best[0] else n for n, _ in best[1].named_parameters()}
    if best[1] is model or owned - heads:  # e.g. a fresh pooler + classifier: their common parent holds the body too
        fresh = ", ".join(sorted({n.rsplit(".", 2)[0] for n in heads})[:3])
        raise HonedError(
            f"{FIELD}: this model's fresh layers ({fresh}) are not one head module, so their input cannot be "
            "cached; train without the cache or use a checkpoint whose only fresh layer is the classifier"
        )
    return best


def frozen_names(model: Classifier, hooks: Hooks) -> set[str]:
    """Every parameter some freezing technique keeps frozen for the whole run."""
    frozen: set[str] = set()
    for technique in hooks.techniques:
        if hasattr(technique, "frozen_names"):
            frozen |= technique.frozen_names(model)
    return frozen


def backbone_frozen(model: Classifier, frozen: set[str]) -> bool:
    """Whether everything but the head is frozen (the head cache); else a frozen lower part is cached."""
    return {n for n, _ in model.named_parameters() if n not in model.head_params} <= frozen


def check_cacheable(recipe: Any, model: Classifier, hooks: Hooks, rows: Callable[[], dict[str, Any]]) -> None:
    """Caching must give the same training as without it: one line naming what prevents that. `rows()` collates
    a few training rows, for a frozen lower part's probe forward (honed/train/lower_cache.py)."""
    if recipe.augment.text or recipe.augment.image:
        raise HonedError(
            f"{FIELD}: augmented inputs change every epoch, so their features cannot be cached; remove augment.*"
        )
    names = [t.name for t in recipe.techniques] + [type(c).__name__ for c in hooks.callbacks]
    others = [(n, t) for n, t in zip(names, hooks.everyone, strict=True) if not capable(t, "acts_on_head_only")]
    if others:  # techniques declare `acts_on_head_only` (honed/train/events.py)
        why = " (it changes which layers train during the run)" if capable(others[0][1], "changes_trainable") else ""
        raise HonedError(
            f"{FIELD}: technique '{others[0][0]}' needs the full model in the loop{why}; drop it or the cache "
            "(compatible: techniques that act on the head alone, e.g. freeze, ema, swa, early_stopping, l1)"
        )
    frozen = frozen_names(model, hooks)
    if backbone_frozen(model, frozen):
        head_module(model)
    else:  # a frozen lower part, or one line saying that nothing usable is frozen
        lower_cache.check_lower(recipe, model, frozen, rows)


class FeatureDataset(Dataset):
    """Rows of cached head inputs and their labels; `source_lengths` are the token counts of the rows
    they came from, so length-grouped batches group as in a live run and the cache changes no batch."""

    def __init__(self, features: torch.Tensor, labels: list[int], source_lengths: list[int] | None = None) -> None:
        self.features, self.labels, self.source_lengths = features, labels, source_lengths

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> list[int] | None:
        return self.source_lengths

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"features": self.features[i], "labels": self.labels[i], "index": i}


class CachedHead(Classifier):
    """The full model's head (the same module object), fed cached features."""

    source = "cached-head"

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head
        self.head_params = {f"head.{n}" for n, _ in head.named_parameters()}
        self.meta = {}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


def _digest(model: Classifier, dataset: Any, collate: Any) -> str:
    """Cache key: the backbone's weights and every input row, as collated."""
    digest = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        if f"{name}" not in model.head_params:
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for batch in DataLoader(dataset, batch_size=256, collate_fn=collate):
        for key in sorted(batch):
            if key not in NOT_INPUTS:
                digest.update(batch[key].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def extract(
    model: Classifier, dataset: Any, collate: Any, batch_size: int, device: torch.device, show: bool, name: str
) -> torch.Tensor:
    """The head's input for every row, from the on-disk cache when the same backbone saw the same rows."""
    from honed.data.text import cache_dir

    path = cache_dir() / "features" / f"{_digest(model, dataset, collate)}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    _, head = head_module(model)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    try:
        with progress_bar(show) as bars:
            task = bars.add_task(f"features ({name})", total=len(loader), info="once; the head trains on them")
            for batch in loader:
                model(**{k: v.to(device) for k, v in inputs_of(batch).items()})
                bars.update(task, advance=1)
    finally:
        hook.remove()
        model.train(was_training)
    features = torch.cat(captured)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(features, tmp)
    tmp.replace(path)
    return features


def swap_in(
    model: Classifier,
    datasets: dict[str, Any],
    collate: Any,
    hooks: Hooks,
    batch_size: int,
    device: torch.device,
    show: bool,
) -> tuple[Classifier, dict[str, Any], Hooks]:
    """(head-only model, feature datasets, hooks without the freezing that the cache makes moot); for a frozen
    lower part (honed/train/lower_cache.py): the same model and datasets, hooks that skip that part in training."""
    frozen = frozen_names(model, hooks)
    if not backbone_frozen(model, frozen):
        return lower_cache.swap_in(model, datasets, collate, hooks, batch_size, device, show, frozen)
    model.to(device)
    features = {
        k: FeatureDataset(extract(model, d, collate, batch_size, device, show, k), list(d.labels), row_lengths(d))
        for k, d in datasets.items()
    }
    _, head = head_module(model)
    kept = Hooks([t for t in hooks.techniques if not hasattr(t, "frozen_names")], hooks.callbacks)
    return CachedHead(head), features, kept
