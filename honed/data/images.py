"""Image datasets: PIL decoding, torchvision transforms v2 with the backbone's normalisation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import v2

from honed.errors import HonedError


def image_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    return v2.Compose([
        v2.ToImage(),
        v2.Resize((size, size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
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
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise HonedError(f"{source}: row {index + 1}: image '{item}' is unreadable or corrupt; remove or replace it") from exc


class ImageDataset(Dataset):
    def __init__(self, items: list[Any], labels: list[int], transform: v2.Compose) -> None:
        self.items = items
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"pixel_values": self.transform(open_image(self.items[i])), "labels": self.labels[i]}
