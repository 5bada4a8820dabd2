"""Rotation-prediction pretraining of a torchvision/timm image backbone (Gidaris et al. 2018): each
image is turned 0/90/180/270 degrees and a 4-way linear classifier on the pooled features predicts
the turn. The backbone's own classifier is left as it was, so the saved state dict loads strictly
as `model.weights:` in a fine-tuning recipe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from honed.errors import HonedError
from honed.models.kinds import ROTATION, kind_named
from honed.pretrain.common import run_epochs, shuffled_chunks
from honed.recipe import Recipe
from honed.rundir import LOG


def _kind(recipe: Recipe) -> Any:
    """The model kind whose backbone is pretrained ('auto': torchvision); one that cannot is one line."""
    source = recipe.model.source
    kind = kind_named("torchvision" if source == "auto" else source)
    if not kind.supports(ROTATION):
        raise HonedError(f"model.source: rotation pretraining needs a torchvision or timm model (got '{source}')")
    return kind


def _network(recipe: Recipe) -> tuple[nn.Module, nn.Linear, tuple[Any, Any]]:
    net, head_name, stats = _kind(recipe).backbone(recipe.model.name, recipe.model.weights, 4)
    return net, net.get_submodule(head_name), stats


def rotate_batch(images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image turned by a random multiple of 90 degrees, and the number of turns (the target)."""
    turns = torch.randint(4, (images.shape[0],), generator=generator)
    return torch.stack([torch.rot90(img, int(k), dims=(-2, -1)) for img, k in zip(images, turns, strict=True)]), turns


def pretrain_rotation(recipe: Recipe, paths: list[Any], begin: Callable[[], Path], quiet: bool) -> dict[str, Any]:
    """`paths`: image files, or image arrays (IDX data such as Fashion-MNIST)."""
    from safetensors.torch import save_file
    from torchvision.transforms import v2

    net, head, (mean, std) = _network(recipe)  # head: the 4-way rotation classifier in the classifier's place
    run_dir = begin()
    size = recipe.data.image_size
    tf = v2.Compose(
        [
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Resize((size, size), antialias=True),
            v2.Normalize(mean, std),
        ]
    )
    generator = torch.Generator().manual_seed(recipe.seed)
    epoch = [0]

    def batches() -> Any:
        epoch[0] += 1
        for chunk in shuffled_chunks(paths, recipe.pretrain.batch_size, recipe.seed + epoch[0]):
            yield rotate_batch(torch.stack([tf(_open(p).convert("RGB")) for p in chunk]), generator)

    net.train()
    losses = run_epochs(
        recipe,
        batches,
        -(-len(paths) // recipe.pretrain.batch_size),
        lambda b: nn.functional.cross_entropy(net(b[0]), b[1]),
        list(net.parameters()),
        quiet,
        "rotation",
        model=net,
    )
    state = _full_state(recipe, net, _prefix(net, head))
    out = run_dir / "backbone"
    out.mkdir()
    save_file(state, str(out / "backbone.safetensors"))
    LOG.info("backbone saved to %s; fine-tune with model.weights: %s/backbone.safetensors", out, out)
    return {
        "objective": "rotation",
        "rows": len(paths),
        "epochs": recipe.pretrain.epochs,
        "steps": recipe.pretrain.epochs * -(-len(paths) // recipe.pretrain.batch_size),
        "loss_per_epoch": losses,
        "backbone": str(out / "backbone.safetensors"),
        "classifier": "untrained placeholder (fine-tuning replaces it)",
    }


def _open(row: Any) -> Image.Image:
    return Image.fromarray(row) if isinstance(row, np.ndarray) else Image.open(row)


def _prefix(net: nn.Module, head: nn.Module) -> str:
    return next(n for n, m in net.named_modules() if m is head) + "."


def _full_state(recipe: Recipe, net: nn.Module, head_prefix: str) -> dict[str, torch.Tensor]:
    """The pretrained body plus the architecture's default-size (untrained) classifier, so the file
    loads strictly into the plain architecture, as `model.weights` requires."""
    template = _kind(recipe).architecture(recipe.model.name).state_dict()
    trained = {k: v for k, v in net.state_dict().items() if not k.startswith(head_prefix)}
    return {k: trained.get(k, v).contiguous() for k, v in template.items()}
