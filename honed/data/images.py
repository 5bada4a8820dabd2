"""Image datasets: PIL decoding, torchvision transforms v2 with the backbone's normalisation."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import v2

from honed.data.augment_image import AFTER_NORMALISE
from honed.errors import HonedError

WIDE_GREY = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # greyscale modes wider than 8 bits


def image_transform(
    size: int, mean: tuple[float, ...], std: tuple[float, ...], augment: list[v2.Transform] | None = None
) -> v2.Compose:
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
    return v2.Compose(
        [
            v2.ToImage(),
            *([] if crop_first else [resize]),
            *pixel_ops,
            *([resize] if augment else []),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
            *tensor_ops,
        ]
    )


def open_image(item: Any) -> Image.Image:
    """A path, numpy array or PIL image as an RGB PIL image, upright and in 8 bits (see `to_rgb`)."""
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, np.ndarray):
        return to_rgb(Image.fromarray(item))
    with _big_images_allowed(), Image.open(item) as img:
        return to_rgb(img)


@contextmanager
def _big_images_allowed() -> Iterator[None]:
    """PIL warns above MAX_IMAGE_PIXELS and refuses above twice that; a 100-megapixel photo is ordinary
    data, not an alarm, so only the refusal stays (it becomes a one-line error in `image_problem`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB, the way a viewer shows it: EXIF orientation applied (a phone's portrait
    photo is stored sideways), 16-bit and float greyscale scaled to 0-255 rather than clipped to white,
    transparency composited onto white rather than dropped to whatever colour hides under it, CMYK,
    palette and greyscale converted."""
    img = ImageOps.exif_transpose(img) or img
    if img.mode in WIDE_GREY:
        pixels = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or pixels.max(initial=0) > 255:
            pixels = pixels / 257.0  # 65535 -> 255
        img = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img.convert("RGB")


def image_problem(item: Any) -> str | None:
    """Why an image path cannot be used (None when it decodes fully: verify() alone misses truncated files)."""
    try:
        with _big_images_allowed(), Image.open(item) as img:
            img.load()
    except FileNotFoundError:
        return "not found"
    except Image.DecompressionBombError:
        return f"larger than the decompression-bomb limit of {Image.MAX_IMAGE_PIXELS * 2:,} pixels; shrink it"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return "unreadable or corrupt; remove or replace it"
    return None


def check_images(items: pd.Series, source: str, skip: bool = False) -> tuple[list[Any], str | None]:
    """Decode every image path once before training or predicting. A bad one is an error naming the file
    and its source row; with `skip` (data.skip_bad_rows) the bad rows' index labels come back for the
    caller to drop, with a note that counts and lists them."""
    bad = [
        (index, item, why)
        for index, item in items.items()
        if isinstance(item, str) and (why := image_problem(item)) is not None
    ]
    if not bad:
        return [], None
    index, item, why = bad[0]
    if not skip:
        more = f" ({len(bad)} bad images; data.skip_bad_rows=true skips them)" if len(bad) > 1 else ""
        raise HonedError(f"{source}: row {int(index) + 1}: image '{item}' is {why}{more}")
    listed = ", ".join(f"{Path(p).name} (row {int(i) + 1}: {w.split(';')[0]})" for i, p, w in bad[:20])
    note = f"{source}: skipped {len(bad)} unreadable images (data.skip_bad_rows): {listed}"
    return [i for i, _, _ in bad], note + (", ..." if len(bad) > 20 else "")


class ImageDataset(Dataset):
    def __init__(self, items: list[Any], labels: list[int], transform: v2.Compose) -> None:
        self.items = items
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"pixel_values": self.transform(open_image(self.items[i])), "labels": self.labels[i], "index": i}
