"""Writing an ensemble folder (`honed ensemble`); reading it back is the inference layer's
(honed/inference/ensemble.py, which documents the layout), so `honed predict` / `honed evaluate`
use it like one model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from honed.data.labels import LabelMap
from honed.inference.ensemble import ENSEMBLE_FILE, FORMAT, META_JSON
from honed.rundir import write_text_atomic

__all__ = ["ENSEMBLE_FILE", "save_ensemble"]


def save_ensemble(
    folder: Path,
    labels: tuple[str, ...],
    members: list[tuple[str, Path, float]],
    combine: str,
    meta: Any = None,
    info: dict[str, Any] | None = None,
    label_map: LabelMap | None = None,
) -> Path:
    """Write ensemble.json (+ the meta-learner, + `label_map`: a regression ensemble's targets, a multi-label
    one's thresholds tuned for it); returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    if label_map is not None:
        label_map.save(folder)
    entries = []
    for name, path, weight in members:
        path = Path(path).resolve()
        try:
            stored = str(path.relative_to(folder.resolve()))
        except ValueError:
            stored = str(path)
        entries.append({"name": name, "path": stored, "weight": float(weight)})
    doc: dict[str, Any] = {
        "format": FORMAT,
        "combine": combine,
        "labels": list(labels),
        "members": entries,
        **(info or {}),
    }
    if meta is not None:
        doc["meta"] = _save_meta(folder, meta)
    target = folder / ENSEMBLE_FILE
    write_text_atomic(
        target, json.dumps(doc, indent=1, default=float)
    )  # a crash never leaves a half-written ensemble.json
    return target


def _save_meta(folder: Path, meta: Any) -> dict[str, Any]:
    """Logistic regression and ridge as plain JSON (no pickle needed to load them back); any other
    meta-learner by joblib."""
    from sklearn.linear_model import LogisticRegression, Ridge

    linear = {LogisticRegression: "logistic_regression", Ridge: "ridge"}.get(type(meta))
    if linear is not None:
        state = {
            "coef": meta.coef_.tolist(),
            "intercept": np.asarray(meta.intercept_).tolist(),
            **({"classes": meta.classes_.tolist()} if hasattr(meta, "classes_") else {}),
            "params": {
                k: v for k, v in meta.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))
            },
        }
        (folder / META_JSON).write_text(json.dumps(state, indent=1), encoding="utf-8")
        return {"kind": linear, "file": META_JSON}
    import joblib

    joblib.dump(meta, folder / "meta.joblib")
    return {"kind": type(meta).__name__, "file": "meta.joblib"}
