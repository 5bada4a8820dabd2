"""What a batch holds besides the model's inputs.

Every dataset row carries `labels` (the class id, -1 when unlabelled) and `index` (the row's
position in its frame), so techniques look rows up by index instead of by content; neither is
passed to the model."""

from __future__ import annotations

from typing import Any

NOT_INPUTS = ("labels", "index")


def inputs_of(batch: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments the model's forward takes: the batch without labels and row index."""
    return {k: v for k, v in batch.items() if k not in NOT_INPUTS}
