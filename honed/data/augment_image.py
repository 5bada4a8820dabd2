"""Training-time image augmentation: named torchvision v2 transforms built from `augment.image`.

Each recipe entry `{name: flip, p: 0.5}` picks a factory here by name (or `package.module:attr`, e.g.
`torchvision.transforms.v2:RandomGrayscale`) and passes the other keys to it. A factory with an
`image_size` parameter is also given `data.image_size`. The train transform runs the geometric and
colour ops on the uint8 image and the tensor-stage ops (random erasing) after normalisation, as
torchvision requires (see honed.data.images.image_transform). Randomness comes from torch's global
RNG, which checkpoints save and restore.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from torchvision.transforms import v2

from honed.errors import HonedError
from honed.proposals import Change, Situation, proposes
from honed.recipe import TransformSpec
from honed.registry import Registry

IMAGE_AUGMENTATIONS: Registry[Any] = Registry("image augmentation")

AFTER_NORMALISE: tuple[type, ...] = (v2.RandomErasing,)  # ops that need a float, normalised tensor


def probability(value: Any, name: str = "p") -> float:
    """`value` as a probability, or ValueError naming the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _sometimes(transform: v2.Transform, p: Any) -> v2.Transform:
    """Apply `transform` with probability p (the whole op, as SimCLR-style recipes do)."""
    p = probability(p)
    return transform if p == 1.0 else v2.RandomApply([transform], p=p)


@IMAGE_AUGMENTATIONS.register("flip")
def flip(p: float = 0.5) -> v2.Transform:
    """Mirror left-right with probability p."""
    return v2.RandomHorizontalFlip(probability(p))


@IMAGE_AUGMENTATIONS.register("vflip")
def vflip(p: float = 0.5) -> v2.Transform:
    """Mirror top-bottom with probability p (for data without an up, e.g. microscopy, satellite)."""
    return v2.RandomVerticalFlip(probability(p))


@IMAGE_AUGMENTATIONS.register("rotation")
def rotation(degrees: float = 15.0, p: float = 1.0) -> v2.Transform:
    """Rotate by an angle drawn uniformly from [-degrees, degrees]."""
    if isinstance(degrees, bool) or not isinstance(degrees, (int, float)) or degrees < 0:
        raise ValueError(f"degrees must be a number >= 0, got {degrees!r}")
    return _sometimes(v2.RandomRotation(float(degrees)), p)


@IMAGE_AUGMENTATIONS.register("resized_crop")
def resized_crop(
    image_size: int, scale: float | Sequence[float] = 0.08, ratio: Sequence[float] = (3 / 4, 4 / 3)
) -> v2.Transform:
    """Crop a random area fraction in [scale, 1] (or [scale[0], scale[1]]) and resize it to data.image_size."""
    low, high = (scale, 1.0) if isinstance(scale, (int, float)) and not isinstance(scale, bool) else tuple(scale)
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale!r}")
    return v2.RandomResizedCrop(
        (image_size, image_size), scale=(float(low), float(high)), ratio=tuple(ratio), antialias=True
    )


@IMAGE_AUGMENTATIONS.register("color_jitter")
def color_jitter(
    brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0, p: float = 1.0
) -> v2.Transform:
    """Random brightness, contrast, saturation (factors in [1-x, 1+x]) and hue (shift in [-hue, hue], at most 0.5)."""
    return _sometimes(v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue), p)


@IMAGE_AUGMENTATIONS.register("randaugment")
def randaugment(num_ops: int = 2, magnitude: int = 9) -> v2.Transform:
    """RandAugment (Cubuk et al. 2020): num_ops random ops per image at a fixed magnitude in [0, 30]."""
    if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 0:
        raise ValueError(f"num_ops must be an integer >= 0, got {num_ops!r}")
    if isinstance(magnitude, bool) or not isinstance(magnitude, int) or not 0 <= magnitude <= 30:
        raise ValueError(f"magnitude must be an integer in [0, 30], got {magnitude!r}")
    return v2.RandAugment(num_ops=num_ops, magnitude=magnitude)


@IMAGE_AUGMENTATIONS.register("trivialaugment")
def trivialaugment() -> v2.Transform:
    """TrivialAugment Wide (Müller and Hutter 2021): one random op at a random magnitude, no settings."""
    return v2.TrivialAugmentWide()


@IMAGE_AUGMENTATIONS.register("random_erasing")
def random_erasing(p: float = 0.25, scale: Sequence[float] = (0.02, 0.33), value: float = 0.0) -> v2.Transform:
    """Erase a random rectangle (area fraction in scale) with probability p; runs on the normalised tensor."""
    return v2.RandomErasing(p=probability(p), scale=tuple(scale), value=value)


def build_image_ops(specs: list[TransformSpec], image_size: int) -> list[v2.Transform]:
    """The transforms for `augment.image`, in recipe order; a bad entry is a HonedError naming it."""
    ops = []
    for i, spec in enumerate(specs):
        factory = IMAGE_AUGMENTATIONS.get(spec.name, f"augment.image.{i}.name")
        kwargs = {k: v for k, v in spec.model_dump().items() if k != "name"}
        if "image_size" in inspect.signature(factory).parameters:
            kwargs.setdefault("image_size", image_size)
        op = IMAGE_AUGMENTATIONS.build(spec.name, f"augment.image.{i}", **kwargs)
        if not callable(op):
            raise HonedError(f"augment.image.{i} '{spec.name}': built a {type(op).__name__}, not a transform")
        ops.append(op)
    return ops


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    """The usual light training augmentation (a mirror flip, alone or with a random resized crop), for an
    image recipe that has none; alternatives of each other."""
    if s.kind != "image" or s.recipe.augment.image:
        return []
    flip_op = {"name": "flip", "p": 0.5}
    crop = {"name": "resized_crop", "scale": 0.5}
    return [Change("augment.image flip", {"augment.image": [flip_op]}, group="augment_image",
                   why="a left-right mirror: the same object, a new picture, for classes without a handedness"),
            Change("augment.image flip + resized_crop 0.5", {"augment.image": [crop, flip_op]}, group="augment_image",
                   why="random crops of half the image or more, resized back, plus a mirror: torchvision's "
                   "standard training views, mild enough for short fine-tunes")]
