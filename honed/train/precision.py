"""Which mixed precision a run uses: `train.precision`, where "auto" picks bf16 on a GPU that has
it, fp16 on another GPU and fp32 on CPU (bf16 matmuls are several times slower on CPUs)."""

from __future__ import annotations

import torch


def mixed_precision(choice: str) -> str:
    """accelerate's `mixed_precision` value for the recipe's `train.precision` choice."""
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"
