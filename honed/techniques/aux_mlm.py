"""`aux_mlm`: masked-LM on each text batch next to the task, with a head tied to the word embeddings
(see aux_base.py)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from honed.errors import HonedError
from honed.models.kinds import MASKED_LM, spec_kind
from honed.proposals import Change, Situation, proposes
from honed.techniques import TECHNIQUES
from honed.techniques.aux_base import AuxiliaryObjective


class MaskedLMHead(nn.Module):
    """BERT's prediction head: dense + GELU + LayerNorm, decoded with the (shared) word embeddings."""

    def __init__(self, hidden: int, embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))
        self.embeddings = [embeddings]  # a list: tied, not a submodule of the head (trains with the model)
        self.bias = nn.Parameter(torch.zeros(embeddings.num_embeddings))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.transform(hidden) @ self.embeddings[0].weight.T + self.bias


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special: torch.Tensor,
    mask_id: int,
    vocab: int,
    probability: float,
) -> tuple[torch.Tensor, torch.Tensor]:
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

    def __init__(
        self, weight: float = 0.1, decay: bool = False, lr_scale: float = 1.0, probability: float = 0.15
    ) -> None:
        super().__init__(weight, decay, lr_scale)
        if not 0 < probability < 1:
            raise ValueError(f"probability must be in (0, 1) (got {probability})")
        self.probability = float(probability)

    def check(self, recipe: Any, model: Any) -> None:
        super().check(recipe, model)
        tokenizer = getattr(model, "preprocess", None)
        kind = getattr(model, "kind", None)
        if kind is None or not kind.supports(MASKED_LM) or getattr(tokenizer, "mask_token_id", None) is None:
            raise HonedError(f"{self.field}: needs a Hugging Face text model whose tokenizer has a mask token")

    def build_head(self, model: Any) -> nn.Module:
        self.tokenizer = model.preprocess
        self.special = torch.tensor(sorted(set(self.tokenizer.all_special_ids)))
        embeddings = model.hf.get_input_embeddings()
        return MaskedLMHead(model.hf.config.hidden_size, embeddings)

    def aux_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self.head is not None
        ids = batch["input_ids"]
        masked, targets = mask_tokens(
            ids,
            batch["attention_mask"],
            self.special.to(ids.device),
            self.tokenizer.mask_token_id,
            self.head.bias.numel(),
            self.probability,
        )
        if not (targets != -100).any():
            return torch.zeros((), device=ids.device)
        inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "labels")}
        hidden = model.hf.base_model(input_ids=masked, **inputs).last_hidden_state
        logits = self.head(hidden[targets != -100])
        return nn.functional.cross_entropy(logits, targets[targets != -100])


TECHNIQUES.register("aux_mlm")(AuxMaskedLM)


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    """Masked-LM next to the task on a Hugging Face text model, its weight decayed to zero over the run."""
    spec = s.recipe.model
    if s.kind != "text" or s.has_technique("aux_mlm") or spec.fusion is not None:
        return []
    if not spec_kind(spec).supports(MASKED_LM):
        return []
    return [Change("aux mlm weight 0.1", techniques=[{"name": "aux_mlm", "weight": 0.1, "decay": True}],
                   group="auxiliary", cost=2.0,
                   why="keeping the language-model objective alive limits forgetting of the pretrained features")]
