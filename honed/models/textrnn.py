"""Recurrent and convolutional text classifiers over a pretrained word-piece embedding: `model.source: textrnn`.

    model:
      source: textrnn
      name: bilstm            # or textcnn
      tokenizer: sentence-transformers/all-MiniLM-L6-v2   # whose embedding matrix and tokenizer (the default)
      args: {hidden: 256, layers: 1, freeze_embeddings: true}

- bilstm: a bidirectional LSTM (`cell: gru` for a GRU) over the token embeddings, packed by the attention
  mask so padding never enters either direction; its outputs mean- and max-pooled over the real tokens,
  dropout, a linear head.
- textcnn (Kim 2014): parallel 1-D convolutions (`widths` 3/4/5, `filters` each) with ReLU, max-over-time
  pooling over the windows that start on real tokens, dropout, a linear head.

Both read the input-embedding matrix of a Hugging Face model (its word-piece table, MiniLM's is 30522 x
384) with that model's tokenizer, so they err differently from the transformer while sharing its
inputs (a distillation teacher's tokenizer, for live scoring). Frozen (`freeze_embeddings: true`, the
default) the table is a buffer, which no optimizer, technique or unfreezing schedule moves; tuned, it
joins the `embeddings` layer group beside the fresh LayerNorm over it. Layer groups: embeddings, encoder, head.

Saved as model.safetensors (the table included: loading needs no Hugging Face model), the tokenizer's
files and honed.json with the architecture's settings and the table's shape.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from honed.assets import install_hint, resolve_model_id
from honed.data.labels import LabelMap
from honed.errors import HonedError, did_you_mean
from honed.models.base import Classifier, LayerGroup
from honed.models.kinds import MODEL_KINDS, ModelKind
from honed.models.python import load_tokenizer
from honed.recipe import Recipe

DEFAULT_EMBEDDINGS = "sentence-transformers/all-MiniLM-L6-v2"
COMMON = {"freeze_embeddings": True}
DEFAULTS: dict[str, dict[str, Any]] = {  # model.name -> its model.args and their defaults
    "bilstm": {**COMMON, "hidden": 256, "layers": 1, "cell": "lstm", "dropout": 0.3},
    "textcnn": {**COMMON, "filters": 100, "widths": [3, 4, 5], "dropout": 0.5},
}
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class WordEmbedding(nn.Module):
    """A lookup in a pretrained table (a parameter when tuned, a saved buffer when frozen), then a fresh
    LayerNorm: a transformer's raw word-piece vectors are small (MiniLM's: std 0.056 per element, made for
    the LayerNorm after its position embeddings), too small for an LSTM's or a convolution's initial scale."""

    def __init__(self, table: torch.Tensor, trainable: bool) -> None:
        super().__init__()
        self.dim = table.shape[1]
        if trainable:
            self.weight = nn.Parameter(table)
        else:
            self.register_buffer("weight", table)
        self.norm = nn.LayerNorm(self.dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.norm(F.embedding(input_ids, self.weight))


def real_lengths(attention_mask: torch.Tensor) -> torch.Tensor:
    """Tokens per row (right padding), at least 1 so an empty row still has one position."""
    return attention_mask.sum(1).clamp(min=1)


class BiLSTM(nn.Module):
    """embed -> bidirectional LSTM/GRU (packed) -> [mean; max] over real tokens -> dropout -> head."""

    def __init__(self, embed: WordEmbedding, num_labels: int, hidden: int, layers: int, cell: str,
                 dropout: float) -> None:
        super().__init__()
        self.embed = embed
        self.encoder = CELLS[cell](embed.dim, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                                   dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(4 * hidden, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        lengths = real_lengths(attention_mask)
        packed = pack_padded_sequence(self.embed(input_ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.encoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=input_ids.shape[1])
        out = out.float()
        valid = (torch.arange(out.shape[1], device=out.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        mean = (out * valid).sum(1) / lengths[:, None].to(out.dtype)
        top = out.masked_fill(~valid, float("-inf")).amax(1)
        return self.head(self.dropout(torch.cat([mean, top], dim=-1)))


class TextCNN(nn.Module):
    """embed -> parallel Conv1d (one per width) + ReLU -> max over windows starting on real tokens -> head.

    The sequence is zero-padded on the right by the widest window less one, so every real token starts
    a window whatever the batch's padding: a row's logits do not depend on the rows batched with it."""

    def __init__(self, embed: WordEmbedding, num_labels: int, filters: int, widths: list[int],
                 dropout: float) -> None:
        super().__init__()
        self.embed = embed
        self.widest = max(widths)
        self.encoder = nn.ModuleList(nn.Conv1d(embed.dim, filters, width) for width in widths)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(filters * len(widths), num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        vectors = self.embed(input_ids)
        vectors = vectors * attention_mask.unsqueeze(-1).to(vectors.dtype)
        x = F.pad(vectors.transpose(1, 2), (0, self.widest - 1))  # (batch, dim, tokens + widest - 1)
        lengths = real_lengths(attention_mask)
        pooled = []
        for conv in self.encoder:
            h = torch.relu(conv(x))  # (batch, filters, windows); ReLU >= 0, so masked windows can be 0
            starts = torch.arange(h.shape[-1], device=h.device)
            pooled.append(h.masked_fill((starts[None, :] >= lengths[:, None]).unsqueeze(1), 0.0).amax(-1))
        return self.head(self.dropout(torch.cat(pooled, dim=-1)))


class TextRNNClassifier(Classifier):
    """A BiLSTM or TextCNN (`net`) with the tokenizer of the model whose embeddings it reads."""

    def __init__(self, net: nn.Module, tokenizer: Any, meta: dict[str, Any]) -> None:
        super().__init__()
        self.kind = TextRNNKind()
        self.net = net
        self.preprocess = tokenizer
        self.head_params = {f"net.head.{n}" for n, _ in net.head.named_parameters()}
        self.meta = meta

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids, attention_mask)  # token_type_ids and the like carry nothing for these models


def _check_setting(name: str, key: str, value: Any, default: Any) -> None:
    """One setting of model.args against its default's type and range; a wrong one is one line."""
    where = f"model.args.{key}"
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value < 1.0
    elif isinstance(default, list):
        ok = isinstance(value, list) and bool(value) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    else:
        ok = value in CELLS
    if not ok:
        want = {bool: "true or false", int: "an integer >= 1", float: "a number in [0, 1)",
                list: "a non-empty list of integers >= 1", str: f"one of {', '.join(CELLS)}"}[type(default)]
        raise HonedError(f"{where}: {name} needs {want}, got {value!r}")


def settings(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """model.args over the architecture's defaults, every key known and every value of the right kind."""
    if name not in DEFAULTS:
        raise HonedError(f"model.name: model.source=textrnn builds {' or '.join(DEFAULTS)}, not '{name}'"
                         f"{did_you_mean(name, list(DEFAULTS))}")
    defaults = DEFAULTS[name]
    for key in args:
        if key not in defaults:
            raise HonedError(f"model.args: {name} takes no '{key}'{did_you_mean(key, list(defaults))}; "
                             f"its settings: {', '.join(defaults)}")
    chosen = {**defaults, **args}
    for key, value in chosen.items():
        _check_setting(name, key, value, defaults[key])
    if name == "textcnn":
        chosen["widths"] = list(chosen["widths"])
    if isinstance(chosen["dropout"], int):
        chosen["dropout"] = float(chosen["dropout"])
    return chosen


def make_net(name: str, table: torch.Tensor, num_labels: int, chosen: dict[str, Any]) -> nn.Module:
    """The architecture `name` over `table` with a head for `num_labels` classes."""
    embed = WordEmbedding(table, trainable=not chosen["freeze_embeddings"])
    if name == "bilstm":
        return BiLSTM(embed, num_labels, chosen["hidden"], chosen["layers"], chosen["cell"], chosen["dropout"])
    return TextCNN(embed, num_labels, chosen["filters"], chosen["widths"], chosen["dropout"])


def embedding_table(name: str) -> torch.Tensor:
    """A float32 copy of the input-embedding matrix of the Hugging Face model `name` (local files first)."""
    from transformers import AutoModel

    path, error = resolve_model_id(name), None
    for local in (True, False):
        try:
            backbone = AutoModel.from_pretrained(path, local_files_only=local)
            break
        except (OSError, ValueError) as exc:
            error = exc
    else:
        raise HonedError(f"model.tokenizer: cannot load the embeddings of '{name}': not a local folder, an installed "
                         f"offline model or a cached hub model{install_hint(name)}") from error
    return backbone.get_input_embeddings().weight.detach().float().clone()


def check_spec(recipe: Recipe) -> None:
    """What a textrnn recipe cannot ask for, refused before anything loads."""
    spec = recipe.model
    if recipe.data.kind != "text":
        raise HonedError("model.source: textrnn builds text models; set data.kind=text or use torchvision/timm")
    if spec.weights:
        raise HonedError("model.weights: textrnn models start from model.tokenizer's embeddings; drop model.weights")
    if spec.head:
        raise HonedError("model.head: textrnn models have one head, 'head'; drop model.head")


def build_textrnn(recipe: Recipe, labels: LabelMap) -> TextRNNClassifier:
    """The recipe's architecture over model.tokenizer's (default MiniLM's) embeddings, with a fresh head."""
    check_spec(recipe)
    spec = recipe.model
    chosen = settings(spec.name, spec.args)
    source = spec.tokenizer or DEFAULT_EMBEDDINGS
    tokenizer = load_tokenizer(source)
    table = embedding_table(source)
    if table.shape[0] < len(tokenizer):
        raise HonedError(f"model.tokenizer: '{source}' has {len(tokenizer)} tokens but only {table.shape[0]} "
                         "embedding rows; name a model whose tokenizer and embeddings belong together")
    meta = {"kind": "text", "name": spec.name, "args": chosen, "tokenizer": source, "vocab": table.shape[0],
            "dim": table.shape[1], "num_labels": len(labels)}
    model = TextRNNClassifier(make_net(spec.name, table, len(labels), chosen), tokenizer, meta)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    state = "frozen" if chosen["freeze_embeddings"] else "tuned"
    model.notes = [f"textrnn {spec.name}: {table.shape[0]} x {table.shape[1]} embeddings of '{source}' ({state}), "
                   f"{trainable:,} trainable parameters; layer groups: embeddings, encoder, head"]
    return model


def load_textrnn(folder: Path, meta: dict[str, Any]) -> TextRNNClassifier:
    """Rebuild the saved architecture (a zero table of the saved shape) and load its weights strictly."""
    try:
        chosen = settings(meta["name"], meta.get("args") or {})
        table = torch.zeros(int(meta["vocab"]), int(meta["dim"]))
        net = make_net(meta["name"], table, int(meta["num_labels"]), chosen)
    except (HonedError, KeyError, TypeError, ValueError) as exc:
        raise HonedError(f"model '{folder}': honed.json does not describe a textrnn model ({exc}); "
                         "retrain it or restore the folder") from exc
    tokenizer = load_tokenizer(str(folder), f"model '{folder}'")
    try:
        load_safetensors(net, str(folder / "model.safetensors"), strict=True)
    except RuntimeError as exc:
        raise HonedError(f"model '{folder}': model.safetensors does not fit the {meta['name']} its honed.json "
                         f"describes ({str(exc).splitlines()[0][:200]}); retrain it or restore the folder") from exc
    own = {k: v for k, v in meta.items() if k != "source"}
    return TextRNNClassifier(net, tokenizer, own)


@MODEL_KINDS.register("textrnn")
class TextRNNKind(ModelKind):
    """BiLSTM and TextCNN text models over a Hugging Face model's embeddings, saved as safetensors + honed.json."""

    name = "textrnn"

    def build(self, recipe: Recipe, labels: LabelMap) -> Classifier:
        return build_textrnn(recipe, labels)

    def load(self, folder: Path, meta: dict[str, Any], labels: LabelMap) -> Classifier:
        return load_textrnn(folder, meta)

    def save(self, model: Classifier, folder: Path) -> None:
        """The weights (the embedding table too, trained or not), the tokenizer's files, honed.json."""
        save_safetensors(model.net, str(folder / "model.safetensors"))
        model.preprocess.save_pretrained(folder)
        model.write_meta(folder)

    def layer_groups(self, model: Classifier) -> list[LayerGroup]:
        """embeddings (the table when tuned, and its LayerNorm), encoder, head."""
        names = [n for n, _ in model.named_parameters()]
        embeddings = [n for n in names if n.startswith("net.embed.")]
        head = [n for n in names if n in model.head_params]
        encoder = [n for n in names if n not in head and n not in embeddings]
        return [LayerGroup("embeddings", embeddings), LayerGroup("encoder", encoder), LayerGroup("head", head)]

    def dropout_regions(self, model: Classifier) -> Callable[[str], bool]:
        """The dropout before the head is the classifier's; an LSTM's between-layer rate is hidden."""
        return lambda name: name == "net.dropout"
