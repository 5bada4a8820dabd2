"""Test-only techniques that record what the loop did, named in recipes by import path."""

from __future__ import annotations

from typing import Any

import torch

RECORDS: dict[str, list[dict[str, Any]]] = {}


class Snapshot:
    """At each epoch end: a copy of every parameter, which ones train, and the optimizer's groups."""

    def __init__(self, key: str) -> None:
        self.key = key
        RECORDS[key] = []

    def on_epoch_end(self, state: Any) -> None:
        model = state.accelerator.unwrap_model(state.model)
        optimizer = getattr(state.optimizer, "optimizer", state.optimizer)
        RECORDS[self.key].append(
            {
                "params": {n: p.detach().clone() for n, p in model.named_parameters()},
                "trainable": {n for n, p in model.named_parameters() if p.requires_grad},
                "groups": [(g["group"], g["decay"], g["base_lr"], len(g["params"])) for g in optimizer.param_groups],
                "steps": {
                    n: int(optimizer.state[p]["step"]) for n, p in model.named_parameters() if p in optimizer.state
                },
                "bn_training": [
                    m.training for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                ],
            }
        )


class RankDigest:
    """At fit end, each process writes a checksum of every parameter (DDP replicas must agree)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_fit_end(self, state: Any) -> None:
        import json
        from pathlib import Path

        model = state.accelerator.unwrap_model(state.model)
        sums = {n: float(p.detach().double().sum()) for n, p in model.named_parameters()}
        Path(self.folder, f"digest-{state.accelerator.process_index}.json").write_text(json.dumps(sums))
