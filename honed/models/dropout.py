"""Replace a pretrained model's dropout rates (`model.dropout.{hidden,attention,classifier}`).

Dropout lives in two places: `nn.Dropout` modules (whose `p` the forward reads, also where
Hugging Face attention passes `self.dropout.p` into sdpa/eager attention) and plain float
attributes read at forward time (`nn.MultiheadAttention.dropout`, timm's head `drop_rate`,
`attention_dropout` of many HF attention classes). Both are rewritten; for Hugging Face models the
config attributes are updated too, so code reading the config and `save_pretrained` agree.

Each site is classified by where it sits:
- classifier: where the model's kind says its head is (`ModelKind.dropout_regions`: outside the
  Hugging Face base model, or in the vision head: its container, a `head*`/`classifier*` module,
  timm's top-level `drop_rate`);
- attention: named after attention (`attn_drop`, `attention_dropout`), or the dropout of an
  attention class (BERT's `BertSelfAttention.dropout`) that is not its output projection;
- hidden: every other dropout (embeddings, residual/output, MLP).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from honed.errors import HonedError
from honed.models.kinds import spec_source
from honed.proposals import Change, Situation, proposes
from honed.recipe import DropoutSpec

KINDS = ("hidden", "attention", "classifier")
CONFIG_KEYS = {
    "hidden": ("hidden_dropout_prob", "dropout", "hidden_dropout"),
    "attention": ("attention_probs_dropout_prob", "attention_dropout"),
    "classifier": ("classifier_dropout", "seq_classif_dropout"),
}
FLOAT_ATTRS = ("dropout", "attention_dropout", "drop_rate")
ATTENTION_WORDS = ("attn", "attention")
NOT_ATTENTION_WORDS = ("proj", "out", "resid", "hidden")


@dataclass
class Site:
    """One place a dropout rate is stored: `owner.attr` (`p` of an nn.Dropout, or a float)."""

    name: str
    owner: Any
    attr: str
    kind: str = "hidden"

    @property
    def rate(self) -> float:
        return float(getattr(self.owner, self.attr))

    def set(self, rate: float) -> None:
        setattr(self.owner, self.attr, rate)


def _candidates(parent_name: str, parent: nn.Module) -> list[tuple[str, Site]]:
    """(local name, site) for the dropout modules and float dropout attributes directly in `parent`."""
    join = (lambda local: f"{parent_name}.{local}") if parent_name else (lambda local: local)
    found = [
        (local, Site(join(local), child, "p"))
        for local, child in parent.named_children()
        if isinstance(child, nn.modules.dropout._DropoutNd)
    ]
    for attr in FLOAT_ATTRS:
        value = vars(parent).get(attr)
        if isinstance(value, int | float) and not isinstance(value, bool):
            found.append((attr, Site(join(attr), parent, attr)))
    return found


def _names_attention(local: str) -> bool:
    return any(w in local.lower() for w in ATTENTION_WORDS)


def _is_attention(local: str, parent: nn.Module, siblings: list[str]) -> bool:
    if _names_attention(local):
        return True
    words = local.lower().split("_")
    if any(w in words for w in NOT_ATTENTION_WORDS) or any(_names_attention(s) for s in siblings):
        return False  # e.g. timm's proj_drop beside attn_drop, Swin's projection `dropout` beside `attention_dropout`
    cls = type(parent).__name__.lower()
    return "attention" in cls and "output" not in cls


def find_sites(model: nn.Module, in_classifier: Callable[[str], bool]) -> list[Site]:
    """Every dropout site of `model`, classified as hidden, attention or classifier."""
    sites = []
    for parent_name, parent in model.named_modules():
        found = _candidates(parent_name, parent)
        locals_ = [local for local, _ in found]
        for local, site in found:
            if in_classifier(site.name):
                site.kind = "classifier"
            elif _is_attention(local, parent, [s for s in locals_ if s != local]):
                site.kind = "attention"
            sites.append(site)
    return sites


def model_sites(model: Any) -> list[Site]:
    """Every dropout site of a honed model; its kind says which sites belong to the head."""
    return find_sites(model, model.kind.dropout_regions(model))


def apply_dropout(model: Any, spec: DropoutSpec) -> dict[str, int]:
    """Set the rates `spec` names (None keeps the model's own); returns sites changed per kind.

    A rate the model has nowhere to apply is an error rather than a silent no-op."""
    sites = model_sites(model)
    config = getattr(getattr(model, "hf", None), "config", None)
    present = set(config.to_dict()) if config is not None else set()
    _pin_classifier(config, present, spec, sites)
    changed = {}
    for kind in KINDS:
        rate = getattr(spec, kind)
        if rate is None:
            continue
        chosen = [s for s in sites if s.kind == kind]
        keys = [k for k in CONFIG_KEYS[kind] if k in present]
        if not chosen and not keys:
            raise HonedError(
                f"model.dropout.{kind}: this model has no {kind} dropout; leave model.dropout.{kind} unset"
            )
        for site in chosen:
            site.set(rate)
        for key in keys:
            setattr(config, key, rate)
        changed[kind] = len(chosen)
    return changed


def _pin_classifier(config: Any, present: set[str], spec: DropoutSpec, sites: list[Site]) -> None:
    """BERT-style configs fall back to the hidden rate when `classifier_dropout` is None; when only
    the hidden rate changes, pin the head's current rate so the saved config still describes it."""
    if config is None or spec.classifier is not None or spec.hidden is None:
        return
    rates = {s.rate for s in sites if s.kind == "classifier"}
    if "classifier_dropout" in present and config.classifier_dropout is None and len(rates) == 1:
        config.classifier_dropout = rates.pop()


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    """More dropout in a Hugging Face text transformer's body (their default is usually 0.1)."""
    spec = s.recipe.model
    if s.kind != "text" or spec.dropout.hidden == 0.2 or spec_source(spec) != "huggingface":
        return []
    return [Change("model.dropout.hidden 0.2", {"model.dropout.hidden": 0.2}, group="dropout",
                   why="stronger dropout in the transformer's layers regularises a fine-tune on little data")]
