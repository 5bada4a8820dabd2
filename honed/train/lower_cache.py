"""The frozen-feature cache for a frozen lower part: when the freeze techniques leave the model's lowest
layer groups (embeddings and the first k blocks) frozen for the whole run and the inputs are not
augmented, every epoch would push the same rows through the same frozen layers. Compute the output of
the last frozen module once per training row, then train with the frozen part skipped: the upper
blocks, neck and head run as usual on the cached outputs.

Switched on by the same `train.cache_frozen_features: true`, with a freeze that leaves a frozen lower
part (`{name: freeze, groups: [embeddings, block.0, block.1]}` or `all_but_last: k`); a fully frozen
backbone takes the head cache instead (honed/train/feature_cache.py). Features are taken in eval
mode, so dropout in the frozen part does not apply (and frozen batch norm uses its running statistics),
as when the frozen part runs live with dropout 0. They are kept in memory (fp32, each row at its own
length, padded per batch as that batch's attention mask says), not on disk.

How training skips the frozen part: each frozen module is replaced, from fit start to fit end, by a
`Skipped` stand-in that shares the real module's parameter, buffer and submodule tables (so state
dicts, checkpoints, the optimizer and freezing see the ordinary model) and, in training mode, returns
the batch's cached output in the structure the real module returned; the parameter-free code between
frozen modules then runs on that tensor and its result is discarded by the next stand-in. In eval mode
the stand-ins call the real modules: validation and test evaluation run the full model. A stand-in
passes `.train()`/`.eval()` on to its real module and names it in `stands_in_for`, so a pass that sets
modes module by module (SWA's batch-norm update) can reach a frozen batch norm that a stand-in holds
the place of. The real modules come back at fit end, and also when training raises (`real_modules_back`).
The saved model is the real, whole model.

What the cache cannot stand in for (a frozen module returning several tensors, frozen groups that are
no lower part, a frozen module that never runs) is found before the run folder exists: `check_lower`
runs a couple of training rows through the frozen part (eval mode, no gradients).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from honed.data.batches import inputs_of
from honed.data.loaders import row_lengths
from honed.errors import HonedError
from honed.models.base import Classifier, LayerGroup
from honed.progress import progress_bar
from honed.rundir import LOG
from honed.train.events import Hooks

FIELD = "train.cache_frozen_features"
MASK = "attention_mask"  # the batch key whose ones mark a row's own tokens (dynamic padding)


def frozen_prefix(model: Classifier, frozen: set[str]) -> list[LayerGroup]:
    """The lowest layer groups whose parameters are all frozen, in order (empty when the first is not)."""
    prefix: list[LayerGroup] = []
    for group in model.layer_groups():
        if group.name == "head" or not set(group.params) <= frozen:
            break
        prefix.append(group)
    return prefix


def modules_of(model: nn.Module, params: set[str], group: str) -> list[str]:
    """The top-most modules whose parameters all belong to `params`, together owning exactly `params`."""
    chosen: list[str] = []
    covered: set[str] = set()
    for name, module in model.named_modules():
        if not name or any(name.startswith(f"{c}.") for c in chosen):
            continue
        owned = {f"{name}.{n}" for n, _ in module.named_parameters()}
        if owned and owned <= params:
            chosen.append(name)
            covered |= owned
    if covered != params:
        raise HonedError(f"{FIELD}: layer group '{group}' shares a module with other groups, so its output cannot be "
                         "cached; freeze whole groups (embeddings, block.0, ...) or drop the cache")
    return chosen


def lower_paths(model: Classifier, frozen: set[str]) -> list[str]:
    """The frozen lower part's modules, in order; one line naming what prevents caching it."""
    groups = model.layer_groups()
    if any(g.depth is not None for g in groups):
        raise HonedError(f"{FIELD}: side-by-side backbones (a fusion) have no single frozen lower part to cache; "
                         "freeze every backbone (techniques: [{name: freeze, all_but_head: true}]) or drop the cache")
    prefix = frozen_prefix(model, frozen)
    if not prefix:
        lowest = ", ".join(g.name for g in groups[:2])
        raise HonedError(
            f"{FIELD}: the backbone must stay frozen for the whole run, or at least its lowest layer groups "
            f"({lowest}, ...); add techniques: [{{name: freeze, all_but_head: true}}] (a linear probe) or "
            f"[{{name: freeze, groups: [{lowest}]}}] (a frozen lower part)"
        )
    return [path for g in prefix for path in modules_of(model, set(g.params), g.name)]


def check_lower(recipe: Any, model: Classifier, frozen: set[str], rows: Callable[[], dict[str, Any]]) -> None:
    """Before the run folder exists: the settings a cached frozen lower part cannot honour, and (by one forward
    of the batch `rows()` collates, a few training rows) the frozen modules a cache cannot stand in for."""
    paths = lower_paths(model, frozen)
    if recipe.train.compile:
        raise HonedError(f"{FIELD}: train.compile and a cached frozen lower part do not combine (the frozen modules "
                         "are swapped during training); use one or the other")
    probe(model, paths, rows())


@dataclass
class Template:
    """The structure a frozen module returned: the tensor itself (`container` None) or a tuple/list holding
    it first, followed by `rest` (non-tensors such as None)."""

    dtype: torch.dtype
    container: type | None = None
    rest: tuple[Any, ...] = ()

    @classmethod
    def of(cls, path: str, output: Any) -> Template:
        if isinstance(output, torch.Tensor):
            return cls(output.dtype)
        first, rest = (output[0], output[1:]) if isinstance(output, tuple | list) and output else (None, ())
        if isinstance(first, torch.Tensor) and not any(isinstance(x, torch.Tensor) for x in rest):
            return cls(first.dtype, type(output), tuple(rest))
        raise HonedError(f"{FIELD}: the frozen module '{path}' returns {type(output).__name__} with several tensors, "
                         "which one cache cannot stand in for; freeze fewer groups or drop the cache")

    def fill(self, hidden: torch.Tensor) -> Any:
        hidden = hidden.to(self.dtype)
        return hidden if self.container is None else self.container((hidden, *self.rest))


def tensor_of(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[0]


class RowCache:
    """The last frozen module's output per training row, concatenated: with a padding mask each row holds its
    own tokens only (`counts` of them), without one each row is one fixed-shape item."""

    def __init__(self, values: torch.Tensor, counts: list[int], indices: list[int], masked: bool) -> None:
        self.values, self.masked = values, masked
        self.counts = torch.tensor(counts, dtype=torch.long)
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        self.where = torch.full((max(indices) + 1,), -1, dtype=torch.long)
        self.where[torch.tensor(indices, dtype=torch.long)] = torch.arange(len(indices))

    def batch(self, index: torch.Tensor, mask: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """The batch's rows of cached output, padded (zeros) where the batch's mask says padding."""
        pos = self.where[index.cpu()]
        if (pos < 0).any():
            raise HonedError(f"{FIELD}: a training row is missing from the cache (its index was not cached)")
        if not self.masked:
            return self.values[pos].to(device, non_blocking=True)
        if mask is None or not torch.equal(mask.sum(1).cpu(), self.counts[pos]):
            raise HonedError(f"{FIELD}: a batch's token counts differ from the cached rows'; the data changed "
                             "during the run")
        rows = torch.cat([torch.arange(s, s + c) for s, c in zip(self.starts[pos].tolist(), self.counts[pos].tolist(),
                                                                  strict=True)])
        out = self.values.new_zeros((*mask.shape, *self.values.shape[1:]))
        out[mask.cpu().bool()] = self.values[rows]
        return out.to(device, non_blocking=True)


def by_length(dataset: Any, collate: Any, batch_size: int) -> DataLoader:
    """The rows in batches of like length (when the dataset knows its lengths): rows are stored unpadded, so
    their order is free, and short rows then do not pay for a long row's padding."""
    lengths = row_lengths(dataset)
    order = sorted(range(len(dataset)), key=lengths.__getitem__) if lengths else list(range(len(dataset)))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate)


class _Reached(Exception):
    """Raised from the last frozen module's hook while caching: the layers above need not run."""


@dataclass
class Watch:
    """What the frozen modules' hooks saw: each module's output structure, which ran in the current forward,
    and the last frozen module's output."""

    paths: list[str]
    templates: dict[str, Template] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    last: list[torch.Tensor] = field(default_factory=list)

    def hook(self, path: str) -> Any:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            self.templates.setdefault(path, Template.of(path, output))
            self.ran.append(path)
            if path == self.paths[-1]:
                self.last.append(tensor_of(output).detach())
                raise _Reached
        return hook


@contextmanager
def watching(model: nn.Module, paths: list[str]) -> Iterator[Watch]:
    """The frozen modules hooked and the model in eval mode; both undone on leaving."""
    watch = Watch(paths)
    handles = [model.get_submodule(p).register_forward_hook(watch.hook(p)) for p in paths]
    was_training = model.training
    model.eval()
    try:
        yield watch
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def run_to_last(model: nn.Module, watch: Watch, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
    """One forward that stops at the last frozen module, whose output it returns; every frozen module must
    have run before it."""
    paths = watch.paths
    watch.ran.clear()
    watch.last.clear()
    try:
        model(**{k: v.to(device) for k, v in inputs_of(batch).items()})
    except _Reached:
        if set(watch.ran[:-1]) != set(paths[:-1]):
            missed = sorted(set(paths[:-1]) - set(watch.ran[:-1]))
            raise HonedError(f"{FIELD}: the frozen module '{missed[0]}' does not run before '{paths[-1]}', so the "
                             "frozen groups are no lower part; freeze the lowest groups or drop the cache") from None
        return watch.last[0]
    raise HonedError(f"{FIELD}: the frozen module '{paths[-1]}' never ran in a forward pass, so its output cannot "
                     "be cached; drop the cache")


@torch.no_grad()
def probe(model: nn.Module, paths: list[str], batch: dict[str, Any]) -> None:
    """One eval forward of `batch` to the last frozen module: the refusals of `Template.of` and `run_to_last`
    before the run folder exists. No statistics or RNG state move (eval mode, the CPU generator forked)."""
    device = next(model.parameters()).device
    with watching(model, paths) as watch, torch.random.fork_rng(devices=[]):
        run_to_last(model, watch, batch, device)


@torch.no_grad()
def build_cache(model: Classifier, paths: list[str], dataset: Any, collate: Any, batch_size: int,
                device: torch.device, show: bool) -> tuple[RowCache, dict[str, Template]]:
    """Run the frozen part once per training row in eval mode and keep the last frozen module's output;
    also capture each frozen module's output structure for its stand-in."""
    values: list[torch.Tensor] = []
    counts: list[int] = []
    indices: list[int] = []
    masked: bool | None = None
    loader = by_length(dataset, collate, batch_size)
    with watching(model, paths) as watch, progress_bar(show) as bars:
        task = bars.add_task("frozen lower part", total=len(loader), info="once; the upper layers train on it")
        for batch in loader:
            out, mask = run_to_last(model, watch, batch, device), batch.get(MASK)
            if masked is None:
                masked = mask is not None and out.dim() >= 2 and tuple(out.shape[:2]) == tuple(mask.shape)
            values.append(out[mask.to(out.device).bool()].cpu() if masked else out.cpu())
            counts += mask.sum(1).tolist() if masked else [1] * len(out)
            indices += batch["index"].tolist()
            bars.update(task, advance=1)
    return RowCache(torch.cat(values), counts, indices, bool(masked)), watch.templates


class Feed:
    """The current training batch's cached output (None outside a training forward)."""

    current: torch.Tensor | None = None


class Skipped(nn.Module):
    """Stands in for a frozen module during training: shares its parameters, buffers and submodules (state
    dicts and the optimizer see the same model) and, in training mode with a batch fed, returns the cached
    output instead of computing; otherwise (evaluation, a pass without a batch fed) it calls the real module,
    in the real module's own mode. The real module is `stands_in_for`: not registered, so `model.modules()`
    yields the stand-in in its place (its submodules, shared, are yielded as usual)."""

    def __init__(self, real: nn.Module, feed: Feed, template: Template) -> None:
        super().__init__()
        self._parameters = real._parameters
        self._buffers = real._buffers
        self._non_persistent_buffers_set = real._non_persistent_buffers_set
        self._modules = real._modules
        self.__dict__["stands_in_for"] = real  # not registered: its tables are already ours
        self.feed, self.template, self.training = feed, template, real.training

    def train(self, mode: bool = True) -> Skipped:
        """The mode reaches the real module too (`model.train()`/`.eval()` do not visit it themselves)."""
        super().train(mode)
        self.stands_in_for.training = mode
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.training and self.feed.current is not None:
            return self.template.fill(self.feed.current)
        return self.stands_in_for(*args, **kwargs)


def place(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent), name, module)


def put_back(model: nn.Module) -> None:
    """Every stand-in in `model` replaced by the real module it stands in for."""
    for path, module in [(p, m) for p, m in model.named_modules() if isinstance(m, Skipped)]:
        place(model, path, module.stands_in_for)


@contextmanager
def real_modules_back(model: nn.Module) -> Iterator[None]:
    """Around the training: however it ends (an exception included), `model` leaves with its real modules."""
    try:
        yield
    finally:
        put_back(model)


class LowerCache:
    """Run-time callback: swaps the stand-ins in at fit start and the real modules back at fit end, and feeds
    each training batch's cached output to them between batch start and the forward's end."""

    acts_on_head_only = True

    def __init__(self, model: nn.Module, paths: list[str], cache: RowCache, templates: dict[str, Template]) -> None:
        self.model, self.paths, self.cache, self.templates = model, paths, cache, templates
        self.feed = Feed()

    def on_fit_start(self, state: Any) -> None:
        for path in self.paths:
            place(self.model, path, Skipped(self.model.get_submodule(path), self.feed, self.templates[path]))

    def on_batch_start(self, state: Any) -> None:
        if state.batch_index is None:
            raise HonedError(f"{FIELD}: training batches carry no row index, so cached rows cannot be looked up")
        device = next(iter(state.batch.values())).device
        self.feed.current = self.cache.batch(state.batch_index, state.batch.get(MASK), device)

    def on_after_forward(self, state: Any) -> None:
        self.feed.current = None  # any later forward (outside a training batch) runs the real modules

    def on_fit_end(self, state: Any) -> None:
        self.feed.current = None
        put_back(self.model)


def swap_in(model: Classifier, datasets: dict[str, Any], collate: Any, hooks: Hooks, batch_size: int,
            device: torch.device, show: bool, frozen: set[str]) -> tuple[Classifier, dict[str, Any], Hooks]:
    """(the same model, the same datasets, hooks with the LowerCache callback added last)."""
    paths = lower_paths(model, frozen)
    model.to(device)
    started = time.perf_counter()
    cache, templates = build_cache(model, paths, datasets["train"], collate, batch_size, device, show)
    LOG.info("%s: the frozen lower part (%s) ran once for %d training rows in %.1f s (%.0f MB kept); training "
             "skips it", FIELD, ", ".join(g.name for g in frozen_prefix(model, frozen)), len(cache.counts),
             time.perf_counter() - started, cache.values.numel() * cache.values.element_size() / 2**20)
    return model, datasets, Hooks(hooks.techniques, [*hooks.callbacks, LowerCache(model, paths, cache, templates)])
