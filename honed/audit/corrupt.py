"""Empty, missing, unreadable or corrupt rows: listed, and marked so later checks skip them."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from honed.audit.base import CHECKS, AuditContext, Finding, row_table
from honed.progress import progress_bar


def image_problem(item: Any) -> str | None:
    """Why an image row cannot be used (None when it decodes fully)."""
    if isinstance(item, np.ndarray):
        return None if item.size else "empty image array"
    if item is None or (isinstance(item, float) and np.isnan(item)):
        return "missing image path"
    try:
        with Image.open(item) as img:
            img.load()  # verify() misses truncated files; a full decode does not
    except FileNotFoundError:
        return "image file not found"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return "unreadable or corrupt image"
    return None


def text_problem(text: Any) -> str | None:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return "missing text"
    return "empty text" if not str(text).strip() else None


@CHECKS.register("corrupt")
def corrupt(ctx: AuditContext) -> Finding:
    """Mark rows with a missing label, missing/empty text or an image that does not decode."""
    frame = ctx.data.frame
    judge = text_problem if ctx.data.kind == "text" else image_problem
    problems = []
    with progress_bar(not ctx.quiet and ctx.data.kind == "image") as bar:
        task = bar.add_task("checking images", total=len(frame), info="")
        for item, known in zip(frame["x"], frame["problem"]):
            problems.append(known if isinstance(known, str) else judge(item))
            bar.advance(task)
    frame["problem"] = problems
    bad = frame[frame["problem"].notna()]
    if len(bad) == len(frame):
        from honed.errors import HonedError

        first = bad.iloc[0]
        raise HonedError(
            f"data.{first['source']}: all {len(frame)} rows are unusable (e.g. row {first['row']}: "
            f"{first['problem']}); check the files and data.text_column/data.path_column"
        )
    counts = bad["problem"].value_counts()
    finding = Finding(
        "corrupt",
        "Empty, missing or corrupt rows",
        rows=row_table(bad, bad["problem"]),
        data={"count": len(bad), "by_reason": {str(k): int(v) for k, v in counts.items()}},
    )
    if bad.empty:
        finding.summary.append(f"no empty, missing or corrupt rows among {len(frame)}")
        return finding
    finding.summary.append(
        f"{len(bad)} unusable rows of {len(frame)}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
    )
    finding.recommendations.append("drop them: `honed clean` removes empty, missing and corrupt rows")
    if bad["problem"].isin(["missing label", "missing target"]).any():
        finding.recommendations.append("training refuses rows without a label; fill them in or clean them out")
    return finding
