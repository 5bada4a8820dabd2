"""climb.html's figures as base64 PNG (matplotlib's Agg backend: no display, no files, no URLs).

Two pictures: the ladder (val and test per rung with their seed/fold spread, cumulative compute on a
second axis) and every candidate's paired Δval with its interval, so a near miss is visible at a glance.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless; must precede pyplot
import matplotlib.pyplot as plt

from honed.climb.acceptance import spread

DPI = 90
LABEL_CHARS = 30
MAX_FOREST = 40  # candidates drawn in the Δval chart (the table lists them all)


def number(value: Any) -> float | None:
    """A finite float, or None for a missing, non-numeric or NaN/inf value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def mean_std(entry: dict[str, Any], split: str) -> tuple[float | None, float | None]:
    """(mean, std) of one split's per-seed scores: the stored `<split>_mean/_std`, else computed from the list."""
    values = [v for v in (number(x) for x in entry.get(split) or []) if v is not None]
    mean, std = number(entry.get(f"{split}_mean")), number(entry.get(f"{split}_std"))
    computed = spread(values)
    return (computed[0] if mean is None else mean), (computed[1] if std is None and len(values) > 1 else std)


def label(text: Any) -> str:
    """A change name made safe for a matplotlib label: shortened, and `$` kept literal (no mathtext)."""
    text = " ".join(str(text).split())
    if len(text) > LABEL_CHARS:
        text = text[: LABEL_CHARS - 1] + "…"
    return text.replace("$", r"\$")


def _encode(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _compute_unit(seconds: list[float]) -> tuple[float, str]:
    top = max(seconds, default=0.0)
    return (1.0, "s") if top < 120 else (60.0, "min") if top < 7200 else (3600.0, "h")


def ladder_png(summary: dict[str, Any]) -> str | None:
    """Val and test mean ± std per rung (x: the rung's change), cumulative compute as grey bars on the
    right axis; None when the ladder is empty."""
    ladder = summary.get("ladder") or []
    if not ladder:
        return None
    xs = list(range(len(ladder)))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(ladder) + 3.0), 4.4))
    compute = [number(r.get("cum_seconds")) for r in ladder]
    if any(c is not None for c in compute):
        scale, unit = _compute_unit([c for c in compute if c is not None])
        right = ax.twinx()
        right.bar(xs, [(c or 0.0) / scale for c in compute], width=0.5, color="0.85", label="cumulative compute")
        right.set_ylabel(f"cumulative compute ({unit})", color="0.45")
        right.tick_params(axis="y", colors="0.45")
        ax.set_zorder(right.get_zorder() + 1)  # the score lines above the bars
        ax.patch.set_visible(False)
    pairs = summary.get("pairing") or "seeds"
    for split, colour, shift in (("val", "tab:blue", -0.07), ("test", "tab:orange", 0.07)):
        stats = [mean_std(r, split) for r in ladder]
        points = [(x + shift, m, s or 0.0) for x, (m, s) in zip(xs, stats) if m is not None]
        if points:
            px, py, pe = zip(*points)
            ax.errorbar(px, py, yerr=pe, marker="o", capsize=4, color=colour, label=f"{split} mean ± std over {pairs}")
    ax.set_xticks(xs, [f"{r.get('step', i)}: {label(r.get('change', ''))}" for i, r in enumerate(ladder)])
    ax.tick_params(axis="x", labelrotation=25 if len(ladder) > 2 else 0)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right" if len(ladder) > 2 else "center")
    ax.set_xlim(-0.6, len(ladder) - 0.4)
    ax.set_ylabel(label(summary.get("metric") or "score"))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("the ladder: baseline, then each accepted step")
    return _encode(fig)


def deltas_png(candidates: list[dict[str, Any]], maximize: bool) -> str | None:
    """Each candidate's paired Δval (mean, with its interval where there is one), best first, accepted
    ones in green; None when no candidate has a Δval."""
    rows = [(c, number((c.get("delta_val") or {}).get("mean"))) for c in candidates]
    rows = sorted([(c, m) for c, m in rows if m is not None], key=lambda r: -r[1] if maximize else r[1])[:MAX_FOREST]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.32 * len(rows)))
    for y, (cand, mean) in enumerate(rows):
        delta = cand.get("delta_val") or {}
        low, high = number(delta.get("low")), number(delta.get("high"))
        colour = "tab:green" if cand.get("accepted") else "0.45"
        if low is not None and high is not None:
            ax.plot([low, high], [y, y], color=colour, linewidth=2)
        ax.plot([mean], [y], marker="o", color=colour)
    ax.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(rows)), [label(c.get("change", "")) for c, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("Δval vs the rung it was tried on (mean of paired differences and its interval)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("every candidate: green accepted, grey rejected")
    return _encode(fig)
