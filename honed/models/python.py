"""Any nn.Module as a honed model: `model.source: python` (and `honed.fit(recipe, model=module)`).

The recipe names a factory, `model.name: "pkg.module:factory"` (a class or a function) with keyword
arguments `model.args`; honed imports it only because the recipe names it, as it does a custom loss.
A local state dict (`model.weights`, .safetensors or .pth, read with weights_only) is loaded strictly
unless `model.strict: false`; then the head (`model.head`, a dotted path, or the last nn.Linear) is
replaced by a fresh nn.Linear for the dataset's classes.

Inputs: images reach the module's forward as one normalised pixel tensor (statistics from
`model.args.mean/std`, else ImageNet's); text is tokenised by `model.tokenizer` (a Hugging Face id or
folder, resolved offline first) and the forward receives `input_ids` and `attention_mask`.

Saved as model.safetensors, the tokenizer files (text) and honed.json holding the import path, args,
head path and tokenizer. Trust note: loading such a folder imports and runs the factory it names,
exactly like a recipe's custom loss; load python-kind folders only from people whose code you would run.
A live module passed to `honed.fit` without a factory path is saved (weights and all) but cannot be
rebuilt by honed: loading it is refused with a line saying how to make it reloadable.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors
from torch import nn

from honed.assets import install_hint, resolve_model_id, resolve_weights
from honed.data.labels import LabelMap
from honed.data.preprocess import TRAIN_IMAGE_STATS
from honed.errors import HonedError, did_you_mean
from honed.models.base import Classifier, LayerGroup
from honed.models.kinds import CHANNEL_PRUNING, MODEL_KINDS, ModelKind
from honed.models.python_groups import PREFIX, child_groups, own_groups
from honed.models.vision import IMAGENET_MEAN, IMAGENET_STD, _load_strict, read_state_dict
from honed.recipe import ModelSpec, Recipe
from honed.registry import _import

LIVE = "<live {}>"  # model.name recorded for a live module passed without a factory path


class PythonClassifier(Classifier):
    """A user's nn.Module (`net`) with a fresh head at `head`; forward feeds it pixels or token ids."""

    def __init__(self, net: nn.Module, data_kind: str, head: str, preprocess: Any, meta: dict[str, Any]) -> None:
        super().__init__()
        self.kind = PythonKind()
        self.net = net
        self.data_kind = data_kind
        self.head_path = head
        self.preprocess = preprocess
        self.head_params = {f"{PREFIX}{head}.{n}" for n, _ in net.get_submodule(head).named_parameters()}
        self.meta = meta
        self.notes: list[str] = []

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        if self.data_kind == "text":
            out = self.net(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        else:
            out = self.net(inputs["pixel_values"])
        return logits_of(out)


def logits_of(out: Any) -> torch.Tensor:
    """The logits in what a forward returned: a tensor, an object or dict with `logits`, or a tuple's first item."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict) and "logits" in out:
        return out["logits"]
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise HonedError(f"model.name: the module's forward returned {type(out).__name__}; return the logits tensor")


def import_factory(path: str, field: str = "model.name") -> Callable[..., Any]:
    """The class or function at `pkg.module:attr` (an explicit opt-in import, as for custom losses)."""
    if ":" not in path:
        raise HonedError(
            f"{field}: '{path}' is not an import path; with model.source=python name the factory "
            "as 'pkg.module:factory' (a class or function returning an nn.Module)"
        )
    try:
        factory = _import(path, field)
    except HonedError as exc:
        raise HonedError(f"{exc}; the module must be importable (installed, or its folder on PYTHONPATH)") from exc
    if not callable(factory):
        raise HonedError(f"{field}: '{path}' is a {type(factory).__name__}, not a class or function")
    return factory


def call_factory(path: str, args: dict[str, Any]) -> nn.Module:
    """The module the factory returns for `args`; mean/std go to it only when its signature takes them."""
    factory = import_factory(path)
    kwargs = dict(args)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = None
    if params is not None and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k not in ("mean", "std") or k in params}
    try:
        net = factory(**kwargs)
    except TypeError as exc:
        raise HonedError(f"model.args: '{path}' does not take these arguments ({exc}); fix model.args") from exc
    if not isinstance(net, nn.Module):
        raise HonedError(f"model.name: '{path}' returned a {type(net).__name__}, not a torch nn.Module")
    return net


def load_weights(net: nn.Module, weights: str, strict: bool) -> str | None:
    """Load a local state dict into `net`: every key and shape must fit (one line naming the first
    mismatches) unless not strict, where the fitting tensors load and a note says what did not."""
    path = resolve_weights(weights)
    state = read_state_dict(path)
    if strict:
        _load_strict(net, state, path)
        return None
    own = net.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(fitting, strict=False)
    return (
        f"model.weights: loaded {len(fitting)} of {len(own)} tensors from '{path}' (model.strict=false: "
        f"{len(own) - len(fitting)} kept their initial values, {len(state) - len(fitting)} in the file unused)"
    )


def find_head(net: nn.Module, head: str | None, where: str) -> tuple[str, str | None]:
    """(dotted path of the nn.Linear to replace, a note when honed chose it)."""
    linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if head is None:
        if not linears:
            raise HonedError(
                f"model.head: {where} has no nn.Linear layer to replace; add one or name the head with model.head"
            )
        chosen = net.get_submodule(linears[-1])
        return linears[-1], (
            f"model.head: replacing the last nn.Linear '{linears[-1]}' ({chosen.in_features} -> "
            f"{chosen.out_features}); set model.head to choose another"
        )
    try:
        module = net.get_submodule(head)
    except AttributeError:
        raise HonedError(f"model.head: {where} has no submodule '{head}'{did_you_mean(head, linears)}") from None
    if not isinstance(module, nn.Linear):
        raise HonedError(
            f"model.head: '{head}' is a {type(module).__name__}, not an nn.Linear; name the final "
            f"nn.Linear layer{did_you_mean(head, linears)}"
        )
    return head, None


def replace_head(net: nn.Module, head: str, num_labels: int) -> None:
    """A fresh nn.Linear with `num_labels` outputs where `head` was (same input width, bias and dtype)."""
    parent_name, _, attr = head.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    old = getattr(parent, attr)
    fresh = nn.Linear(old.in_features, num_labels, bias=old.bias is not None)
    setattr(parent, attr, fresh.to(device=old.weight.device, dtype=old.weight.dtype))


def load_tokenizer(name: str, field: str = "model.tokenizer") -> Any:
    """A Hugging Face tokenizer by id or folder, local files first (an installed offline model, the cache)."""
    from transformers import AutoTokenizer

    path = resolve_model_id(name)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        pass
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise HonedError(
            f"{field}: cannot load tokenizer '{name}': not a local folder, an installed offline model "
            f"or a cached hub model{install_hint(name)}"
        ) from exc


def input_preprocess(spec: ModelSpec, data_kind: str) -> Any:
    """The tokenizer (text) or (mean, std) (images) the data pipeline prepares this model's inputs with."""
    if data_kind == "text":
        if not spec.tokenizer:
            raise HonedError(
                "model.tokenizer: a python text model needs a tokenizer (a Hugging Face id or folder, "
                "e.g. sentence-transformers/all-MiniLM-L6-v2); its forward gets input_ids, attention_mask"
            )
        return load_tokenizer(spec.tokenizer)
    if spec.tokenizer:
        raise HonedError("model.tokenizer: only text models use a tokenizer; drop it or set data.kind=text")
    mean, std = spec.args.get("mean", IMAGENET_MEAN), spec.args.get("std", IMAGENET_STD)
    try:
        stats = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise HonedError(f"model.args: mean and std must be lists of numbers, got {mean!r} and {std!r}") from None
    if len(stats[0]) != len(stats[1]):
        raise HonedError(
            f"model.args: mean has {len(stats[0])} values but std has {len(stats[1])}; give one per channel"
        )
    return stats


def build_python(recipe: Recipe, labels: LabelMap, live: nn.Module | None = None) -> PythonClassifier:
    """The factory's module (or a copy of a live one) with its weights loaded and a fresh head for `labels`."""
    spec, notes = recipe.model, []
    if live is not None:
        net = copy.deepcopy(live)  # the caller's module (an estimator's parameter) stays as it was
        where = f"the {type(live).__name__} passed as model"
    else:
        net = call_factory(spec.name, spec.args)
        where = f"'{spec.name}'"
    if spec.weights:
        notes.append(load_weights(net, spec.weights, spec.strict))
    preprocess = input_preprocess(spec, recipe.data.kind)
    head, chose = find_head(net, spec.head, where)
    replace_head(net, head, len(labels))
    notes.append(chose)
    meta = model_meta(spec, recipe.data.kind, head, len(labels), preprocess, rebuildable=not spec.name.startswith("<"))
    model = PythonClassifier(net, recipe.data.kind, head, preprocess, meta)
    groups = model.layer_groups()  # a malformed layer_groups() fails now, before the run folder exists
    model.notes = [n for n in notes if n] + [f"layer groups: {', '.join(g.name for g in groups)}"]
    return model


def model_meta(
    spec: ModelSpec, data_kind: str, head: str, num_labels: int, preprocess: Any, rebuildable: bool
) -> dict[str, Any]:
    """honed.json's content: what loading needs to rebuild the module (None as name: it cannot)."""
    meta: dict[str, Any] = {
        "kind": data_kind,
        "name": spec.name if rebuildable else None,
        "args": spec.args,
        "head": head,
        "num_labels": num_labels,
        "tokenizer": spec.tokenizer,
    }
    if data_kind != "text":
        meta.update(mean=list(preprocess[0]), std=list(preprocess[1]))
    if not rebuildable:
        meta["class"] = spec.name.removeprefix("<live ").removesuffix(">")  # what the user passed, for the message
    return meta


def live_recipe(recipe: Recipe, module: Any) -> Recipe:
    """The recipe for a live module: source python; its factory path kept when the recipe names one."""
    if not isinstance(module, nn.Module):
        raise HonedError(
            f"model: expected a torch nn.Module, got {type(module).__name__}; "
            "or name a factory with model.source=python, model.name='pkg.module:factory'"
        )
    spec = recipe.model
    keep = spec.source == "python" and ":" in spec.name
    name = spec.name if keep else LIVE.format(f"{type(module).__module__}.{type(module).__qualname__}")
    return recipe.model_copy(update={"model": spec.model_copy(update={"source": "python", "name": name})})


def load_python(folder: Path, meta: dict[str, Any]) -> PythonClassifier:
    """Rebuild the module from its factory (imported again: see the trust note above) and load the weights."""
    if not meta.get("name"):
        raise HonedError(
            f"model '{folder}': it was trained from a live {meta.get('class', 'nn.Module')} module with "
            "no factory path, so honed cannot rebuild it; fit with model.name='pkg.module:factory' (and "
            "model.args), or load model.safetensors into your own instance"
        )
    try:
        net = call_factory(meta["name"], meta.get("args") or {})
    except HonedError as exc:  # name the folder: the factory path came from its honed.json, not a recipe
        raise HonedError(f"model '{folder}': {exc}") from exc
    replace_head(net, meta["head"], meta["num_labels"])
    if meta["kind"] == "text":
        preprocess: Any = load_tokenizer(str(folder), f"model '{folder}'")
    else:
        preprocess = (tuple(meta["mean"]), tuple(meta["std"]))
    try:
        load_safetensors(net, str(folder / "model.safetensors"), strict=True)
    except RuntimeError as exc:
        raise HonedError(
            f"model '{folder}': model.safetensors does not fit what '{meta['name']}' builds now "
            f"({str(exc).splitlines()[0][:200]}); was the code changed since training?"
        ) from exc
    own = {k: v for k, v in meta.items() if k != "source"}
    return PythonClassifier(net, meta["kind"], meta["head"], preprocess, own)


@MODEL_KINDS.register("python")
class PythonKind(ModelKind):
    """A user's own nn.Module from an import path (or a live module), saved as safetensors + honed.json."""

    name = "python"
    capabilities = frozenset({CHANNEL_PRUNING, TRAIN_IMAGE_STATS})

    def build(self, recipe: Recipe, labels: LabelMap) -> Classifier:
        return build_python(recipe, labels)

    def load(self, folder: Path, meta: dict[str, Any], labels: LabelMap) -> Classifier:
        return load_python(folder, meta)

    def save(self, model: Classifier, folder: Path) -> None:
        """safetensors weights (shared tensors kept once), the tokenizer's files for text, honed.json."""
        save_safetensors(model.net, str(folder / "model.safetensors"))
        if model.data_kind == "text":
            model.preprocess.save_pretrained(folder)
        model.write_meta(folder)

    def layer_groups(self, model: Classifier) -> list[LayerGroup]:
        """The module's own `layer_groups()` when it has one, else its top-level children in order."""
        declared = getattr(model.net, "layer_groups", None)
        if callable(declared):
            return own_groups(model.net, declared(), model.head_params, f"{type(model.net).__name__}.layer_groups()")
        return child_groups(model.net, model.head_params)

    def set_image_stats(self, model: Classifier, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        """honed.json's mean/std too, so predict normalises the same way."""
        model.preprocess = (mean, std)
        model.meta.update(mean=list(mean), std=list(std))
