"""Run a model over a loader: logits and labels for every row, gathered across processes.

Shared by the training loop (val scoring) and the inference layer (saved models), so neither
imports the other."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from honed.data.batches import inputs_of


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loader: DataLoader, acc: Any, bars: Any = None, name: str = "predict") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for every row of `loader`, gathered across processes."""
    modes = {m: m.training for m in model.modules()}  # per module: frozen batch-norm may stay in eval
    model.eval()
    bar = bars.add_task(name, total=len(loader), info="") if bars is not None else None
    all_logits, all_labels = [], []
    for batch in loader:
        labels = batch["labels"]
        logits = model(**inputs_of(batch))
        logits, labels = acc.gather_for_metrics((logits.float(), labels))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
        if bar is not None:
            bars.update(bar, advance=1)
    for module, mode in modes.items():
        module.training = mode
    return torch.cat(all_logits), torch.cat(all_labels)
