"""Report figures as base64 PNG strings (matplotlib's Agg backend: no display, no files, no URLs)."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

DPI = 90


def _encode(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def confusion_png(confusion: dict[str, Any]) -> str:
    """Row-normalised confusion matrix as a heatmap, each cell annotated with its count (up to 20 classes)."""
    labels, counts = confusion["labels"], np.array(confusion["counts"])
    normalised = np.array(confusion["normalised"])
    k = len(labels)
    size = min(3.0 + 0.45 * k, 14.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(k), labels, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for t in range(k):
            for p in range(k):
                ax.text(
                    p,
                    t,
                    f"{counts[t, p]}\n{normalised[t, p]:.0%}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if normalised[t, p] > 0.5 else "black",
                )
    ax.set_title("confusion matrix (row-normalised)")
    return _encode(fig)


def reliability_png(calibration: dict[str, Any]) -> str:
    """Reliability diagram: accuracy against confidence per bin, before and after temperature scaling."""
    fig, ax = plt.subplots(figsize=(5.0, 4.6))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    curves = [("reliability", f"uncalibrated (ECE {calibration['ece']:.3f})", "tab:red")]
    if calibration.get("reliability_calibrated"):
        curves.append(
            (
                "reliability_calibrated",
                f"T={calibration['temperature']:.2f} (ECE {calibration['ece_calibrated']:.3f})",
                "tab:blue",
            )
        )
    for key, label, color in curves:
        bins = [b for b in calibration[key] if b["count"]]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color=color, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    return _encode(fig)


def curves_png(history: list[dict[str, Any]]) -> str:
    """Training curves per epoch: losses, validation metrics, learning rate."""
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    panels = [
        ("loss", ["train_loss", "val_loss"]),
        ("validation metric", ["val_accuracy", "val_macro_f1"]),
        ("learning rate", ["lr"]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.4))
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            values = [h.get(key) for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _encode(fig)


def thumbnail_png(item: Any, size: int = 72) -> str | None:
    """A small PNG of an image input (path or array), or None when it cannot be read."""
    try:
        from honed.data.images import open_image

        image = open_image(item)
    except Exception:  # noqa: BLE001 - a missing thumbnail must not stop the report
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
