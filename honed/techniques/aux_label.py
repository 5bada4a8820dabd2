"""`aux_label`: a second label column of the training table as an auxiliary target (see aux_base.py)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from honed.errors import HonedError
from honed.techniques import TECHNIQUES, flagged
from honed.techniques.aux_base import AuxiliaryObjective, head_linear


class AuxLabel(AuxiliaryObjective):
    """A second classification target from a column of the training table (e.g. a genre next to
    the sentiment), predicted from the same pooled features the main head reads, captured in the
    main forward pass (no extra pass). Rows with an empty value in the column are skipped. Each batch
    row's target is looked up by its index in the training frame, so augmented rows keep theirs."""

    kind, field = "", "techniques: aux_label"
    needs_row_index = True
    tasks = ("classification",)  # a second classification head

    def __init__(self, column: str = "", weight: float = 0.3, decay: bool = False, lr_scale: float = 1.0) -> None:
        super().__init__(weight, decay, lr_scale)
        if not column:
            raise ValueError("column must name a column of the training table")
        self.column = column
        self._features: torch.Tensor | None = None
        self._targets: torch.Tensor | None = None
        self._hook: Any = None

    def check(self, recipe: Any, model: Any) -> None:
        mixing = flagged(recipe, "mixes_batches")
        if mixing:
            raise HonedError(f"{self.field}: {mixing[0]} blends rows, but a row's auxiliary target is its own; "
                             f"drop {mixing[0]} or aux_label")
        self._table(recipe)
        head_linear(model, self.field)

    def _table(self, recipe: Any) -> Any:
        """The training table, which holds the auxiliary column (the run's frames keep its row numbers)."""
        from honed.assets import resolve_data_path
        from honed.data.tables import read_table

        source = recipe.data.train
        if not isinstance(source, str) or (recipe.data.kind == "image"
                                           and resolve_data_path(source, "data.train").is_dir()):
            raise HonedError(f"{self.field}: the auxiliary column is read from data.train, "
                             f"which must be a table file (got {source!r})")
        table = read_table(resolve_data_path(source, "data.train"), "data.train")
        if self.column not in table.columns:
            raise HonedError(f"{self.field}.column: no column '{self.column}' in data.train; columns are: "
                             f"{', '.join(map(str, table.columns))}")
        return table

    def on_fit_start(self, state: Any) -> None:
        frame = state.frames["train"]
        values = self._table(state.recipe)[self.column].reindex(frame.index)
        present = values.notna() & (values.astype(str).str.strip() != "")
        self.classes = sorted(values[present].astype(str).unique())
        if len(self.classes) < 2:
            raise HonedError(f"{self.field}.column: '{self.column}' has {len(self.classes)} distinct value(s) "
                             "in the training rows; an auxiliary target needs at least 2")
        index = {c: i for i, c in enumerate(self.classes)}
        self._by_row = torch.tensor([index[str(v)] if ok else -100 for v, ok in zip(values, present, strict=True)])
        super().on_fit_start(state)
        self._hook = self.head_module.register_forward_hook(self._capture)

    def _capture(self, _module: nn.Module, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        if _module.training:
            self._features = args[0]

    def build_head(self, model: Any) -> nn.Module:
        self.head_module = head_linear(model, self.field)
        return nn.Linear(self.head_module.in_features, len(self.classes))

    def on_batch_start(self, state: Any) -> None:
        self._targets = self._by_row[state.batch_index.cpu()]

    def aux_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self.head is not None and self._features is not None and self._targets is not None
        targets = self._targets.to(self._features.device)
        if not (targets != -100).any():
            return torch.zeros((), device=self._features.device)
        return nn.functional.cross_entropy(self.head(self._features.flatten(1)), targets, ignore_index=-100)

    def on_fit_end(self, state: Any) -> None:
        if self._hook is not None:
            self._hook.remove()


TECHNIQUES.register("aux_label")(AuxLabel)
