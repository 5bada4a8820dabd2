"""Image datasets: PIL decoding, torchvision transforms v2 with the backbone's normalisation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import v2

from honed.data.augment_image import AFTER_NORMALISE
from honed.errors import HonedError


def image_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...],
                    augment: list[v2.Transform] | None = None) -> v2.Compose:
    """Decode, resize to size x size, scale to [0, 1] and normalise with the backbone's statistics.

    `augment` (training only) runs in recipe order on the uint8 image, except tensor-stage ops such as
    random erasing, which run after normalisation. A leading RandomResizedCrop takes the full-resolution
    image (as torchvision's reference recipes do); otherwise the image is resized first. The resize
    after the ops is a no-op when they kept the size, and guarantees it when they did not.
    """
    augment = augment or []
    pixel_ops = [op for op in augment if not isinstance(op, AFTER_NORMALISE)]
    tensor_ops = [op for op in augment if isinstance(op, AFTER_NORMALISE)]
    crop_first = bool(pixel_ops) and isinstance(pixel_ops[0], v2.RandomResizedCrop)
    resize = v2.Resize((size, size), antialias=True)
    return v2.Compose([
        v2.ToImage(),
        *([] if crop_first else [resize]),
        *pixel_ops,
        *([resize] if augment else []),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
        *tensor_ops,
    ])


def open_image(item: Any) -> Image.Image:
    """A path, numpy array or PIL image as an RGB PIL image."""
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, np.ndarray):
        return Image.fromarray(item).convert("RGB")
    with Image.open(item) as img:
        return img.convert("RGB")


def check_images(items: Any, source: str) -> None:
    """Fail early, naming the file and source row, when an image path is missing or cannot be decoded."""
    for index, item in items.items():
        if not isinstance(item, str):
            continue
        try:
            with Image.open(item) as img:
                img.verify()
        except FileNotFoundError as exc:
            raise HonedError(f"{source}: row {index + 1}: image file '{item}' not found") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise HonedError(f"{source}: row {index + 1}: image '{item}' is unreadable or corrupt; remove or replace it") from exc


class ImageDataset(Dataset):
    def __init__(self, items: list[Any], labels: list[int], transform: v2.Compose) -> None:
        self.items = items
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"pixel_values": self.transform(open_image(self.items[i])), "labels": self.labels[i], "index": i}
