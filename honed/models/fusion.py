"""Several pretrained backbones as one classifier (feature fusion).

Each member keeps its own preprocessing: text members their own tokenizer (the batch carries
`f0.input_ids`, `f1.input_ids`, ...), image members their own normalisation (the data pipeline hands
over [0, 1] pixels and each member normalises with its own statistics). Each member's pooled
representation (mean over real tokens for text, the features before the classifier for images)
is concatenated, or attention-pooled after a projection to a common width, and a fresh head
classifies the result. How much of each backbone trains is the usual freezing technique's job
(`groups: [f0.embeddings, f0.block.0]`, `patterns: ["members.1.*"]`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer

from honed.assets import resolve_model_id
from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.models.base import Classifier, LayerGroup, layer_groups
from honed.models.huggingface import _from_pretrained
from honed.models.kinds import (
    CHANNEL_PRUNING,
    IMAGE_FUSION_MEMBER,
    MODEL_KINDS,
    TEXT_FUSION_MEMBER,
    ModelKind,
    kind_named,
    spec_source,
)
from honed.recipe import Recipe

TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class FusionTokenizer:
    """Looks like one tokenizer to the data pipeline; member i's ids come back as `f{i}.<key>`."""

    def __init__(self, tokenizers: list[Any]) -> None:
        self.tokenizers = tokenizers
        self.name_or_path = "+".join(t.name_or_path for t in tokenizers)
        self.pad_token_id = tokenizers[0].pad_token_id
        self.pad_ids = {f"f{i}.input_ids": t.pad_token_id or 0 for i, t in enumerate(tokenizers)}

    def __len__(self) -> int:
        return sum(len(t) for t in self.tokenizers)

    def __call__(self, texts: list[str], pairs: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, tokenizer in enumerate(self.tokenizers):
            encoded = tokenizer(texts, pairs, **kwargs)
            out.update({f"f{i}.{k}": v for k, v in encoded.items() if k in TEXT_KEYS})
        return out


class FusionHead(nn.Module):
    """The fusion layers: concatenated member features (in) -> logits, by concatenation or attention pooling."""

    def __init__(self, dims: list[int], pool: str, num_labels: int) -> None:
        super().__init__()
        self.dims, self.pool = list(dims), pool
        width = max(dims)
        if pool == "attention":
            self.project = nn.ModuleList(nn.Linear(d, width) for d in dims)
            self.score = nn.Linear(width, 1)
        self.head = nn.Linear(width if pool == "attention" else sum(dims), num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.pool == "concat":
            return self.head(features)
        parts = features.split(self.dims, dim=-1)
        projected = torch.stack([torch.tanh(p(x)) for p, x in zip(self.project, parts, strict=True)], dim=1)
        weights = torch.softmax(self.score(projected), dim=1)  # (batch, members, 1): which backbone to trust
        return self.head((weights * projected).sum(1))


class FusionClassifier(Classifier):
    def __init__(
        self,
        members: list[nn.Module],
        dims: list[int],
        kind: str,
        pool: str,
        num_labels: int,
        preprocess: Any,
        meta: dict[str, Any],
        stats: list[tuple[Any, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.kind = FusionKind()
        self.members = nn.ModuleList(members)
        self.data_kind, self.pool = kind, pool  # data_kind: "text" or "image", what every member reads
        self.fuse = FusionHead(dims, pool, num_labels)
        for i, (mean, std) in enumerate(stats or []):
            self.register_buffer(f"mean{i}", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer(f"std{i}", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.preprocess = preprocess
        self.head_params = {n for n, _ in self.named_parameters() if not n.startswith("members.")}
        self.meta = {"kind": kind, "pool": pool, "num_labels": num_labels, "dims": dims, **meta}

    def features(self, **inputs: torch.Tensor) -> list[torch.Tensor]:
        """Each member's pooled representation of the batch."""
        pooled = []
        for i, member in enumerate(self.members):
            if self.data_kind == "text":
                own = {k: inputs[f"f{i}.{k}"] for k in TEXT_KEYS if f"f{i}.{k}" in inputs}
                hidden = member(**own).last_hidden_state
                mask = own["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
            else:
                pixels = (inputs["pixel_values"] - getattr(self, f"mean{i}")) / getattr(self, f"std{i}")
                pooled.append(member(pixels).flatten(1))
        return pooled

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat(self.features(**inputs), dim=-1))


def _encoder(load: Any) -> nn.Module:
    """A text encoder without the BERT-style pooler, which fusion never uses (mean over tokens instead):
    an unused trainable layer would also break DDP. Architectures without that option load as they are."""
    try:
        return load(add_pooling_layer=False)
    except TypeError:
        return load()


def _text_member(name: str, field: str) -> tuple[nn.Module, Any, int]:
    path = resolve_model_id(name)
    model = _encoder(lambda **kw: _from_pretrained(AutoModel, path, name, **kw))
    if not hasattr(model.config, "hidden_size"):
        raise HonedError(f"{field}: '{name}' has no hidden_size; a text fusion needs encoder models")
    return model, _from_pretrained(AutoTokenizer, path, name), model.config.hidden_size


def _image_member(name: str, source: str, weights: str | None) -> tuple[nn.Module, int, tuple[Any, Any]]:
    net, head, stats = kind_named(source).backbone(name, weights, 1)  # a torchvision/timm kind
    parent_name, _, attr = head.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    dim = getattr(parent, attr).in_features
    setattr(parent, attr, nn.Identity())  # the member now returns its pooled features
    return net, dim, stats


def build_fusion(recipe: Any, num_labels: int) -> FusionClassifier:
    """Members from `model.fusion.members`, all of the recipe's data kind, with a fresh fusion head."""
    spec, kind = recipe.model.fusion, recipe.data.kind
    if any(rate is not None for rate in recipe.model.dropout.model_dump().values()):
        raise HonedError("model.dropout: not supported with model.fusion; set dropout per member model or drop it")
    if kind == "text" and recipe.augment.text:
        raise HonedError(
            "augment.text: token-level text augmentation does not work with model.fusion "
            "(one id stream per member); remove it"
        )
    sources = [spec_source(m) for m in spec.members]
    reads = TEXT_FUSION_MEMBER if kind == "text" else IMAGE_FUSION_MEMBER
    for i, source in enumerate(sources):
        if not kind_named(source, f"model.fusion.members.{i}.source").supports(reads):
            want = "Hugging Face text models" if kind == "text" else "torchvision/timm models (name + weights)"
            raise HonedError(
                f"model.fusion.members.{i}: '{spec.members[i].name}' is a {source} model, "
                f"but a data.kind={kind} "
                f"fusion takes {want}; members of one fusion must read the same input"
            )
    members, dims, stats, tokenizers = [], [], [], []
    for i, (member, source) in enumerate(zip(spec.members, sources, strict=True)):
        if kind == "text":
            net, tokenizer, dim = _text_member(member.name, f"model.fusion.members.{i}")
            tokenizers.append(tokenizer)
        else:
            net, dim, stat = _image_member(member.name, source, member.weights)
            stats.append(stat)
        members.append(net)
        dims.append(dim)
    preprocess = FusionTokenizer(tokenizers) if kind == "text" else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    meta = {
        "members": [{"name": m.name, "source": s} for m, s in zip(spec.members, sources, strict=True)],
        "stats": [[list(m), list(s)] for m, s in stats],
    }
    return FusionClassifier(members, dims, kind, spec.pool, num_labels, preprocess, meta, stats or None)


def load_fusion(folder: Path, meta: dict[str, Any]) -> FusionClassifier:
    """A fusion saved by `FusionClassifier.save`, every member from its own sub-folder."""
    members, tokenizers = [], []
    for i, member in enumerate(meta["members"]):
        sub = folder / f"f{i}"
        if meta["kind"] == "text":
            members.append(_encoder(partial(AutoModel.from_pretrained, sub, local_files_only=True)))
            tokenizers.append(AutoTokenizer.from_pretrained(sub, local_files_only=True))
        else:
            net, _, _ = _image_member(member["name"], member["source"], None)
            net.load_state_dict(load_file(str(sub / "model.safetensors")), strict=True)
            members.append(net)
    stats = [(tuple(m), tuple(s)) for m, s in meta["stats"]]
    preprocess = FusionTokenizer(tokenizers) if meta["kind"] == "text" else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    extra = {"members": meta["members"], "stats": meta["stats"]}
    model = FusionClassifier(
        members, meta["dims"], meta["kind"], meta["pool"], meta["num_labels"], preprocess, extra, stats or None
    )
    missing, unexpected = model.load_state_dict(load_file(str(folder / "fusion.safetensors")), strict=False)
    if unexpected or any(not k.startswith("members.") for k in missing):
        raise HonedError(
            f"model '{folder}': fusion.safetensors does not match honed.json "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model


@MODEL_KINDS.register("fusion")
class FusionKind(ModelKind):
    """Several backbones of one data kind side by side under one fresh head (`model.fusion`)."""

    name = "fusion"
    capabilities = frozenset({CHANNEL_PRUNING})

    def build(self, recipe: Recipe, labels: LabelMap) -> Classifier:
        return build_fusion(recipe, len(labels))

    def load(self, folder: Path, meta: dict[str, Any], labels: LabelMap) -> Classifier:
        return load_fusion(folder, meta)

    def save(self, model: Classifier, folder: Path) -> None:
        """Member i under f{i}/ (save_pretrained + tokenizer, or safetensors), fusion layers in fusion.safetensors."""
        for i, member in enumerate(model.members):
            sub = folder / f"f{i}"
            sub.mkdir(parents=True, exist_ok=True)
            if model.data_kind == "text":
                member.save_pretrained(sub)
                model.preprocess.tokenizers[i].save_pretrained(sub)
            else:
                save_file({k: v.contiguous() for k, v in member.state_dict().items()}, str(sub / "model.safetensors"))
        own = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("members.")}
        save_file(own, str(folder / "fusion.safetensors"))
        model.write_meta(folder)

    def layer_groups(self, model: Classifier) -> list[LayerGroup]:
        """Each member's own groups as f{i}.embeddings, f{i}.block.k, ...; the fusion layers are `head`."""
        groups = []
        for i, member in enumerate(model.members):
            own = layer_groups(member, set())
            for j, group in enumerate(own):  # depth within its own backbone: members sit side by side under the head
                params = [f"members.{i}.{n}" for n in group.params]
                groups.append(LayerGroup(f"f{i}.{group.name}", params, depth=len(own) - j))
        head = [n for n, _ in model.named_parameters() if n in model.head_params]
        return [*groups, LayerGroup("head", head, depth=0)]
