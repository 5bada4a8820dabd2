"""Run a model over a loader: logits and labels for every row, gathered across processes.

Shared by the training loop (val scoring) and the inference layer (saved models), so neither
imports the other."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from honed.data.batches import inputs_of


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module, loader: DataLoader, acc: Any, bars: Any = None, name: str = "predict"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for every row of `loader`, gathered across processes, in row order: a loader
    that sorts rows by length (less padding) has its results put back by the batches' `index`."""
    modes = {m: m.training for m in model.modules()}  # per module: frozen batch-norm may stay in eval
    model.eval()
    bar = bars.add_task(name, total=len(loader), info="") if bars is not None else None
    all_logits, all_labels, all_index = [], [], []
    for batch in loader:
        labels = batch["labels"]
        logits = model(**inputs_of(batch))
        extra = (batch["index"],) if "index" in batch else ()
        logits, labels, *index = acc.gather_for_metrics((logits.float(), labels, *extra))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
        all_index += [i.cpu() for i in index]
        if bar is not None:
            bars.update(bar, advance=1)
    for module, mode in modes.items():
        module.training = mode
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    order = _row_order(torch.cat(all_index)) if len(all_index) == len(all_logits) and all_index else None
    if order is not None:
        logits, labels = logits[order], labels[order]
    merge = getattr(loader.dataset, "merge", None)  # sliding windows: each text's windows averaged into one row
    return merge(logits, labels) if callable(merge) and order is not None else (logits, labels)


def _row_order(index: torch.Tensor) -> torch.Tensor | None:
    """The permutation that puts rows back in dataset order, or None when the indices are not one
    (a dataset whose `index` means something else keeps the loader's order, as before)."""
    order = torch.argsort(index, stable=True)
    return order if torch.equal(index[order], torch.arange(len(index))) else None
