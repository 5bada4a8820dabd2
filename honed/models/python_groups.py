"""Layer groups of a user's own nn.Module (`model.source: python`).

Freezing, layer-wise LR decay, gradual unfreezing and the other techniques name parameters by layer
group, bottom (embeddings) to top (head). A module that knows its own structure says so with a
`layer_groups()` method; any other module is grouped by its top-level children in registration order,
which for almost every hand-written network is the forward order (stem first, classifier last).
The fresh head is always the last group, `head`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from honed.errors import HonedError
from honed.models.base import LayerGroup

PREFIX = "net."  # the user's module sits at `net` inside honed's wrapper


def child_groups(net: nn.Module, head: set[str]) -> list[LayerGroup]:
    """Top-level children with parameters, in order: the first is `embeddings`, the rest `block.i`, then `head`.

    Parameters held by the module itself (a class token, a positional table) join the first group;
    `head` holds prefixed names of the fresh head's parameters."""
    direct = [PREFIX + n for n, _ in net.named_parameters(recurse=False) if PREFIX + n not in head]
    chunks: list[list[str]] = []
    for child_name, child in net.named_children():
        names = [f"{PREFIX}{child_name}.{n}" for n, _ in child.named_parameters()]
        kept = [n for n in names if n not in head]
        if kept:
            chunks.append(kept)
    if direct:
        chunks = [direct + chunks[0], *chunks[1:]] if chunks else [direct]
    groups = [LayerGroup("embeddings" if i == 0 else f"block.{i - 1}", names) for i, names in enumerate(chunks)]
    return [*groups, head_group(net, head)]


def head_group(net: nn.Module, head: set[str]) -> LayerGroup:
    return LayerGroup("head", [PREFIX + n for n, _ in net.named_parameters() if PREFIX + n in head])


def own_groups(net: nn.Module, declared: Any, head: set[str], where: str) -> list[LayerGroup]:
    """The groups a module's `layer_groups()` returned, as honed's LayerGroups, bottom to top, then `head`.

    Accepted shapes: a mapping {name: members}, a sequence of (name, members) pairs, or objects with
    `.name` and `.params` (honed's own LayerGroup). Members are an nn.Module, an nn.Parameter, a
    parameter or submodule name, or a list of these. The fresh head's parameters always go to `head`;
    every other parameter must be in exactly one group, so nothing silently drops out of the optimizer."""
    ids = {id(p): n for n, p in net.named_parameters()}
    groups: list[LayerGroup] = []
    seen: dict[str, str] = {}
    for name, members in _pairs(declared, where):
        names = [PREFIX + n for n in _member_names(net, members, ids, f"{where} group '{name}'")]
        kept = [n for n in dict.fromkeys(names) if n not in head]
        for param in kept:
            if param in seen:
                raise HonedError(
                    f"{where}: parameter '{param[len(PREFIX) :]}' is in two groups ('{seen[param]}' and "
                    f"'{name}'); put each parameter in one group"
                )
            seen[param] = name
        if name == "head" and kept:
            raise HonedError(f"{where}: a group is called 'head', the name honed gives the fresh head; rename it")
        if kept:
            groups.append(LayerGroup(name, kept))
    left = [n for n, _ in net.named_parameters() if PREFIX + n not in seen and PREFIX + n not in head]
    if left:
        raise HonedError(
            f"{where}: {len(left)} parameters are in no group (e.g. '{left[0]}'); every parameter "
            "outside the head must be in a group, or it would never train"
        )
    return [*groups, head_group(net, head)]


def _pairs(declared: Any, where: str) -> list[tuple[str, Any]]:
    """(name, members) pairs from the accepted shapes of a `layer_groups()` result."""
    if isinstance(declared, Mapping):
        return [(str(k), v) for k, v in declared.items()]
    pairs = []
    for item in declared if isinstance(declared, Iterable) else ():
        if hasattr(item, "name") and hasattr(item, "params"):
            pairs.append((str(item.name), item.params))
        elif isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str):
            pairs.append((item[0], item[1]))
        else:
            raise HonedError(
                f"{where}: expected (name, modules) pairs, a {{name: modules}} mapping or LayerGroups; "
                f"got an item of type {type(item).__name__}"
            )
    if not pairs:
        raise HonedError(f"{where}: returned no groups; return at least one (name, module) pair or drop the method")
    return pairs


def _member_names(net: nn.Module, members: Any, ids: dict[int, str], where: str) -> list[str]:
    """Parameter names (relative to `net`) of one group's members."""
    if isinstance(members, nn.Parameter):
        if id(members) not in ids:
            raise HonedError(f"{where}: holds a parameter that is not part of the module")
        return [ids[id(members)]]
    if isinstance(members, nn.Module):
        found = [ids[id(p)] for p in members.parameters() if id(p) in ids]
        if not found and any(True for _ in members.parameters()):
            raise HonedError(f"{where}: holds a module that is not part of the model")
        return found
    if isinstance(members, str):
        return _names_of_path(net, members, where)
    if isinstance(members, Iterable):
        return [n for member in members for n in _member_names(net, member, ids, where)]
    raise HonedError(
        f"{where}: cannot read a member of type {type(members).__name__}; use modules, parameters or their names"
    )


def _names_of_path(net: nn.Module, path: str, where: str) -> list[str]:
    """A parameter name itself, or every parameter of the submodule at `path`."""
    params = dict(net.named_parameters())
    if path in params:
        return [path]
    try:
        module = net.get_submodule(path)
    except AttributeError:
        raise HonedError(f"{where}: '{path}' names no parameter or submodule of the model") from None
    return [f"{path}.{n}" for n, _ in module.named_parameters()]
