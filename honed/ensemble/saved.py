"""An ensemble on disk, used like one model by `honed predict` / `honed evaluate`.

    ENSEMBLE_DIR/
      ensemble.json      method, labels, members (name, model folder, weight), how they combine
      meta.json          stacking with logistic regression: its coefficients as plain JSON
      meta.joblib        stacking with any other scikit-learn classifier (a pickle: load trusted folders only)
      members/NAME/      member run folders (model/ inside); prefit members are referenced by path

Member paths inside the folder are stored relative to it, so the folder can be moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.ensemble.members import member_probs, model_folder
from honed.ensemble.stacking import meta_probs
from honed.ensemble.voting import VOTES
from honed.errors import HonedError
from honed.rundir import write_text_atomic

ENSEMBLE_FILE = "ensemble.json"
FORMAT = "honed-ensemble/1"


def is_ensemble(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


@dataclass
class SavedEnsemble:
    """Members (name, model folder, weight) and the rule that combines their probabilities."""

    folder: Path
    labels: tuple[str, ...]
    members: list[tuple[str, Path, float]]
    combine: str  # soft | hard | stacking
    meta: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    def member_probs(self, frame: pd.DataFrame) -> np.ndarray:
        """(members, rows, classes): every member's probabilities in the ensemble's class order."""
        return np.stack([member_probs(path, frame, self.labels)[0] for _, path, _ in self.members])

    def combine_probs(self, probs: np.ndarray) -> np.ndarray:
        if self.combine == "stacking":
            return meta_probs(self.meta, probs, len(self.labels))
        return VOTES[self.combine](probs, [w for _, _, w in self.members])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.combine_probs(self.member_probs(frame))

    @property
    def first_model(self) -> Path:
        return self.members[0][1]


def save_ensemble(folder: Path, labels: tuple[str, ...], members: list[tuple[str, Path, float]], combine: str,
                  meta: Any = None, info: dict[str, Any] | None = None) -> Path:
    """Write ensemble.json (+ the meta-learner); returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, path, weight in members:
        path = Path(path).resolve()
        try:
            stored = str(path.relative_to(folder.resolve()))
        except ValueError:
            stored = str(path)
        entries.append({"name": name, "path": stored, "weight": float(weight)})
    doc: dict[str, Any] = {"format": FORMAT, "combine": combine, "labels": list(labels), "members": entries, **(info or {})}
    if meta is not None:
        doc["meta"] = _save_meta(folder, meta)
    target = folder / ENSEMBLE_FILE
    write_text_atomic(target, json.dumps(doc, indent=1, default=float))  # a crash never leaves a half-written ensemble.json
    return target


def load_ensemble(folder: str | Path) -> SavedEnsemble:
    folder = Path(folder)
    path = folder / ENSEMBLE_FILE
    if not path.is_file():
        raise HonedError(f"ensemble '{folder}': no {ENSEMBLE_FILE}; build one with `honed ensemble RECIPE`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HonedError(f"ensemble '{folder}': {ENSEMBLE_FILE} is not valid JSON ({exc}); rebuild it with `honed ensemble RECIPE`") from None
    found = doc.get("format") if isinstance(doc, dict) else None
    if found != FORMAT:
        raise HonedError(f"ensemble '{folder}': {ENSEMBLE_FILE} is format {found!r}, expected {FORMAT}")
    members = []
    for entry in doc["members"]:
        where = Path(entry["path"]) if Path(entry["path"]).is_absolute() else folder / entry["path"]
        members.append((entry["name"], model_folder(where, f"ensemble '{folder}' member '{entry['name']}'"), entry["weight"]))
    meta = _load_meta(folder, doc["meta"]) if doc.get("meta") else None
    info = {k: v for k, v in doc.items() if k not in ("format", "combine", "labels", "members", "meta")}
    return SavedEnsemble(folder, tuple(doc["labels"]), members, doc["combine"], meta, info)


def _save_meta(folder: Path, meta: Any) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    if type(meta) is LogisticRegression:  # plain JSON: no pickle needed to load it back
        state = {"coef": meta.coef_.tolist(), "intercept": meta.intercept_.tolist(), "classes": meta.classes_.tolist(),
                 "params": {k: v for k, v in meta.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))}}
        (folder / "meta.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
        return {"kind": "logistic_regression", "file": "meta.json"}
    import joblib

    joblib.dump(meta, folder / "meta.joblib")
    return {"kind": type(meta).__name__, "file": "meta.joblib"}


def _load_meta(folder: Path, entry: dict[str, Any]) -> Any:
    if entry["file"] == "meta.json":
        from sklearn.linear_model import LogisticRegression

        state = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        meta = LogisticRegression(**state["params"])
        meta.coef_, meta.intercept_ = np.asarray(state["coef"]), np.asarray(state["intercept"])
        meta.classes_ = np.asarray(state["classes"])
        meta.n_features_in_ = meta.coef_.shape[1]
        return meta
    import joblib

    return joblib.load(folder / entry["file"])


def ensemble_predict_frame(folder: str | Path, source: Any, overrides: dict[str, Any] | None = None) -> pd.DataFrame:
    """`honed predict ENSEMBLE_DIR DATA`: the same columns as for one model."""
    from honed.predict import saved_recipe, unlabelled_frame

    ensemble = load_ensemble(folder)
    frame = unlabelled_frame(source, saved_recipe(ensemble.first_model, overrides))
    probs = ensemble.predict_proba(frame)
    out = pd.DataFrame({"input": frame["x"].map(lambda v: v if isinstance(v, str) else "<array>")})
    out["predicted"] = [ensemble.labels[i] for i in probs.argmax(axis=1)]
    for i, name in enumerate(ensemble.labels):
        out[f"prob_{name}"] = probs[:, i]
    return out


def ensemble_evaluate(folder: str | Path, source: Any, overrides: dict[str, Any] | None = None,
                      report_dir: str | Path | None = None) -> dict[str, float]:
    """`honed evaluate ENSEMBLE_DIR DATA`: loss, accuracy, macro-F1 (and the error-analysis report)."""
    import torch

    from honed.data.build import keep_labels
    from honed.data.sources import load_source, slice_columns
    from honed.metrics import classification_metrics
    from honed.predict import saved_recipe

    ensemble = load_ensemble(folder)
    recipe = saved_recipe(ensemble.first_model, overrides)
    keep = slice_columns(recipe) if report_dir is not None else ()
    frame = keep_labels(load_source(source, recipe.data, "data", keep=keep), recipe.data.labels, "data")
    unseen = sorted(set(frame["label"]) - set(ensemble.labels))
    if unseen:
        raise HonedError(f"data: label '{unseen[0]}' is not one the ensemble was trained on ({', '.join(ensemble.labels)})")
    probs = ensemble.predict_proba(frame)
    y = np.asarray([ensemble.labels.index(v) for v in frame["label"]])
    if report_dir is not None:
        from honed.evaluate.report import build_report, write_report

        report = build_report(labels=list(ensemble.labels), y_true=y, probs=probs, frame=frame, slices=recipe.report.slices,
                              top_k=recipe.report.top_k, split="evaluate", title=f"honed report: ensemble {folder}",
                              group_name=recipe.data.group_column)
        write_report(report_dir, report)
    logits = torch.log(torch.from_numpy(probs).clamp_min(1e-12))
    return classification_metrics(logits, torch.from_numpy(y))
