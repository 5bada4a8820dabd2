"""Auxiliary objectives: an extra self-supervised loss on each training batch, through the same
backbone, with its own small head (ULMFiT-style "keep the language model alive"; rotation
prediction for images, Gidaris et al. 2018).

`aux_label` (text or images): a second label column of the training table, predicted from the
pooled features by its own head. `aux_mlm` (text): mask tokens of the batch (BERT's 80/10/10 rule) and predict them with a masked-LM
head tied to the backbone's word embeddings. `aux_rotation` (images): rotate each image by 0/90/180/270
degrees and predict the rotation from the backbone's pooled features. The loss added to the task
loss is `weight * aux_loss`, with the weight optionally decayed linearly to zero over training
(`decay: true`), so the auxiliary task shapes early features but not the end of the fine-tune.

The auxiliary head lives in the technique, never in the model: it trains with its own AdamW at the
loop's current LR, is saved with checkpoints (exact resume) and is dropped at the end, so the saved
model and prediction are the main task's only. Each auxiliary step costs one more forward and
backward pass through the backbone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from honed.errors import HonedError
from honed.techniques import TECHNIQUES
from honed.train import freezing


class AuxiliaryObjective:
    """Shared mechanics: weight schedule, private optimizer for the head, checkpoint state."""

    kind = ""
    field = ""

    def __init__(self, weight: float = 0.1, decay: bool = False, lr_scale: float = 1.0) -> None:
        if weight <= 0:
            raise ValueError(f"weight must be > 0 (got {weight})")
        if lr_scale <= 0:
            raise ValueError(f"lr_scale must be > 0 (got {lr_scale})")
        self.weight, self.decay, self.lr_scale = float(weight), bool(decay), float(lr_scale)
        self.head: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._pending: dict[str, Any] | None = None
        self.last_loss = 0.0

    def check(self, recipe: Any, model: Any) -> None:
        if self.kind and recipe.data.kind != self.kind:
            raise HonedError(f"{self.field}: works on data.kind={self.kind} only, this recipe is {recipe.data.kind}")

    def build_head(self, model: Any) -> nn.Module:
        raise NotImplementedError

    def aux_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def weight_at(self, step: int, total: int) -> float:
        return self.weight * (1.0 - step / max(total, 1)) if self.decay else self.weight

    def on_fit_start(self, state: Any) -> None:
        model = freezing.unwrap(state.accelerator.unwrap_model(state.model))
        with torch.random.fork_rng(devices=[]):  # RNG-neutral: a resumed run's random stream stays the uninterrupted one's
            torch.manual_seed(state.recipe.seed)
            self.head = self.build_head(model).to(state.accelerator.device)
        self.optimizer = torch.optim.AdamW(self.head.parameters(), lr=state.recipe.optim.lr * self.lr_scale,
                                           weight_decay=state.recipe.optim.weight_decay)
        if self._pending is not None:  # a resume restored state before the head existed
            self.head.load_state_dict(self._pending["head"])
            self.optimizer.load_state_dict(self._pending["optimizer"])
            self._pending = None

    def on_after_loss(self, state: Any) -> None:
        weight = self.weight_at(state.step, state.total_steps)
        if weight <= 0 or self.head is None:
            return
        model = freezing.unwrap(state.accelerator.unwrap_model(state.model))
        loss = self.aux_loss(model, state.batch)
        self.last_loss = float(loss.detach())
        state.loss = state.loss + weight * loss

    def on_after_optimizer_step(self, state: Any) -> None:
        """Step the head with the loop's current LR (the schedule's warmup and decay apply to it too)."""
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = state.lr * self.lr_scale
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any] | None:
        if self.head is None or self.optimizer is None:
            return None
        return {"head": self.head.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state


class MaskedLMHead(nn.Module):
    """BERT's prediction head: dense + GELU + LayerNorm, decoded with the (shared) word embeddings."""

    def __init__(self, hidden: int, embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))
        self.embeddings = [embeddings]  # a list: tied, not a submodule of the head (trains with the model)
        self.bias = nn.Parameter(torch.zeros(embeddings.num_embeddings))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.transform(hidden) @ self.embeddings[0].weight.T + self.bias


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, special: torch.Tensor, mask_id: int,
                vocab: int, probability: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked inputs, targets with -100 where nothing is predicted): of the chosen real tokens 80%
    become [MASK], 10% a random token, 10% stay."""
    candidates = attention_mask.bool() & ~torch.isin(input_ids, special)
    chosen = candidates & (torch.rand(input_ids.shape, device=input_ids.device) < probability)
    targets = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    roll = torch.rand(input_ids.shape, device=input_ids.device)
    masked = torch.where(chosen & (roll < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    random_ids = torch.randint(vocab, input_ids.shape, device=input_ids.device)
    masked = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, masked)
    return masked, targets


class AuxMaskedLM(AuxiliaryObjective):
    kind, field = "text", "techniques: aux_mlm"

    def __init__(self, weight: float = 0.1, decay: bool = False, lr_scale: float = 1.0, probability: float = 0.15) -> None:
        super().__init__(weight, decay, lr_scale)
        if not 0 < probability < 1:
            raise ValueError(f"probability must be in (0, 1) (got {probability})")
        self.probability = float(probability)

    def check(self, recipe: Any, model: Any) -> None:
        super().check(recipe, model)
        tokenizer = getattr(model, "preprocess", None)
        if not hasattr(model, "hf") or getattr(tokenizer, "mask_token_id", None) is None:
            raise HonedError(f"{self.field}: needs a Hugging Face text model whose tokenizer has a mask token")

    def build_head(self, model: Any) -> nn.Module:
        self.tokenizer = model.preprocess
        self.special = torch.tensor(sorted(set(self.tokenizer.all_special_ids)))
        embeddings = model.hf.get_input_embeddings()
        return MaskedLMHead(model.hf.config.hidden_size, embeddings)

    def aux_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self.head is not None
        ids = batch["input_ids"]
        masked, targets = mask_tokens(ids, batch["attention_mask"], self.special.to(ids.device),
                                      self.tokenizer.mask_token_id, self.head.bias.numel(), self.probability)
        if not (targets != -100).any():
            return torch.zeros((), device=ids.device)
        inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "labels")}
        hidden = model.hf.base_model(input_ids=masked, **inputs).last_hidden_state
        logits = self.head(hidden[targets != -100])
        return nn.functional.cross_entropy(logits, targets[targets != -100])


class AuxRotation(AuxiliaryObjective):
    kind, field = "image", "techniques: aux_rotation"

    def check(self, recipe: Any, model: Any) -> None:
        super().check(recipe, model)
        if not getattr(model, "head_params", None):
            raise HonedError(f"{self.field}: the model has no known classification head to take features from")

    def build_head(self, model: Any) -> nn.Module:
        self.head_module = _head_linear(model)
        return nn.Linear(self.head_module.in_features, 4)

    def aux_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self.head is not None
        images = batch["pixel_values"]
        turns = torch.randint(4, (images.shape[0],), device=images.device)
        rotated = torch.stack([torch.rot90(img, int(k), dims=(-2, -1)) for img, k in zip(images, turns, strict=True)])
        features: list[torch.Tensor] = []
        hook = self.head_module.register_forward_hook(lambda _m, args, _out: features.append(args[0]))
        try:
            model(pixel_values=rotated)
        finally:
            hook.remove()
        return nn.functional.cross_entropy(self.head(features[0].flatten(1)), turns)


class AuxLabel(AuxiliaryObjective):
    """A second classification target from a column of the training table (e.g. a genre next to
    the sentiment), predicted from the same pooled features the main head reads, captured in the
    main forward pass (no extra pass). Rows with an empty value in the column are skipped."""

    kind, field = "", "techniques: aux_label"

    def __init__(self, column: str = "", weight: float = 0.3, decay: bool = False, lr_scale: float = 1.0) -> None:
        super().__init__(weight, decay, lr_scale)
        if not column:
            raise ValueError("column must name a column of the training table")
        self.column = column
        self._features: torch.Tensor | None = None
        self._targets: torch.Tensor | None = None
        self._hook: Any = None

    def check(self, recipe: Any, model: Any) -> None:
        self._table(recipe)
        _head_linear(model, self.field)

    def _table(self, recipe: Any) -> Any:
        """The training table, which holds the auxiliary column (the run's frames keep its row numbers)."""
        from honed.assets import resolve_data_path
        from honed.data.tables import read_table

        source = recipe.data.train
        if not isinstance(source, str) or recipe.data.kind == "image" and resolve_data_path(source, "data.train").is_dir():
            raise HonedError(f"{self.field}: the auxiliary column is read from data.train, which must be a table file (got {source!r})")
        table = read_table(resolve_data_path(source, "data.train"), "data.train")
        if self.column not in table.columns:
            raise HonedError(f"{self.field}.column: no column '{self.column}' in data.train; columns are: "
                             f"{', '.join(map(str, table.columns))}")
        return table

    def on_fit_start(self, state: Any) -> None:
        from honed.data.build import make_collate, make_dataset
        from honed.data.labels import LabelMap
        from honed.techniques.distill import dataset_keys

        frame = state.frames["train"]
        values = self._table(state.recipe)[self.column].reindex(frame.index)
        present = values.notna() & (values.astype(str).str.strip() != "")
        self.classes = sorted(values[present].astype(str).unique())
        if len(self.classes) < 2:
            raise HonedError(f"{self.field}.column: '{self.column}' has {len(self.classes)} distinct value(s) in the training rows; "
                             "an auxiliary target needs at least 2")
        index = {c: i for i, c in enumerate(self.classes)}
        targets = [index[str(v)] if ok else -100 for v, ok in zip(values, present, strict=True)]
        model = state.accelerator.unwrap_model(state.model)
        dataset = make_dataset(frame, LabelMap(tuple(state.labels)), state.recipe, model.preprocess, train=True)
        self._by_key = dict(zip(dataset_keys(dataset, make_collate(state.recipe, model.preprocess)), targets, strict=True))
        super().on_fit_start(state)
        self._hook = self.head_module.register_forward_hook(self._capture)

    def _capture(self, _module: nn.Module, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        if _module.training:
            self._features = args[0]

    def build_head(self, model: Any) -> nn.Module:
        self.head_module = _head_linear(model, self.field)
        return nn.Linear(self.head_module.in_features, len(self.classes))

    def on_batch_start(self, state: Any) -> None:
        from honed.techniques.distill import row_keys

        targets = [self._by_key.get(key, -100) for key in row_keys(state.batch)]
        self._targets = torch.tensor(targets, dtype=torch.long)

    def aux_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self.head is not None and self._features is not None and self._targets is not None
        targets = self._targets.to(self._features.device)
        if not (targets != -100).any():
            return torch.zeros((), device=self._features.device)
        return nn.functional.cross_entropy(self.head(self._features.flatten(1)), targets, ignore_index=-100)

    def on_fit_end(self, state: Any) -> None:
        if self._hook is not None:
            self._hook.remove()


def _head_linear(model: Any, field: str = "techniques: aux_rotation") -> nn.Linear:
    """The nn.Linear that holds the model's fresh head weights (its input = pooled features)."""
    named = dict(model.named_modules())
    for name in sorted({p.rpartition(".")[0] for p in model.head_params}, key=len):
        if isinstance(named.get(name), nn.Linear):
            return named[name]
    raise HonedError(f"{field}: the model's head is not a linear layer; features cannot be taken from it")


TECHNIQUES.register("aux_mlm")(AuxMaskedLM)
TECHNIQUES.register("aux_rotation")(AuxRotation)
TECHNIQUES.register("aux_label")(AuxLabel)
