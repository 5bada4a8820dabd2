"""A saved ensemble as a Predictor: its members are Predictors themselves, combined by a
registered combiner (honed/inference/combiners.py). `honed ensemble` writes the folder
(honed/ensemble/saved.py); this module reads it. The ensemble's task (classification, regression or
multilabel, in ensemble.json) says what it combines (honed/inference/outputs.py): class or label
probabilities (predict_proba), or predicted values (predict_values).

    ENSEMBLE_DIR/
      ensemble.json      format, task, combine rule, labels, members (name, folder, weight), build info
      labels.json        regression and multilabel: the label map, beside targets.json (target names and
      targets.json       training mean/std) or thresholds.json (per-label thresholds tuned on val for the
      thresholds.json    ensemble's own probabilities: what predict decides by)
      meta.json          stacking with logistic regression or ridge: its coefficients as plain JSON
      meta.joblib        stacking with any other scikit-learn estimator (a pickle: load trusted folders only)
      members/NAME/      member run folders (model/ inside); prefit members are referenced by path
      members/NAME/      or a scikit-learn member: sklearn.json + pipeline.joblib (a pickle, as meta.joblib)

Member paths inside the folder are stored relative to it, so the folder can be moved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.inference.base import Predictor, load_predictor
from honed.inference.combiners import COMBINERS, Combiner
from honed.inference.frames import saved_recipe
from honed.inference.outputs import TASK_OUTPUTS, outputs_in
from honed.recipe import Recipe

ENSEMBLE_FILE = "ensemble.json"
FORMAT = "honed-ensemble/1"
META_JSON = "meta.json"


class EnsemblePredictor(Predictor):
    """Members (name, predictor, weight) and the combiner of their outputs (probabilities or values)."""

    priority = 10  # an ensemble folder wins over the model/ a soup may also write into it

    def __init__(
        self,
        folder: Path,
        labels: tuple[str, ...],
        members: list[tuple[str, Predictor, float]],
        combiner: Combiner,
        recipe: Recipe,
        info: dict[str, Any] | None = None,
        task: str = "classification",
        label_map: LabelMap | None = None,
    ) -> None:
        self.folder, self.labels, self.members, self.combiner = folder, labels, members, combiner
        self.recipe, self.info, self.task = recipe, dict(info or {}), task
        if label_map is not None:  # a multi-label ensemble decides by its own thresholds (Predictor.decision_map)
            self.label_map = label_map

    @property
    def combine(self) -> str:
        """The combine rule recorded in ensemble.json (soft, hard, mean, median, stacking, value_stacking)."""
        return self.combiner.rule

    @property
    def meta(self) -> Any:
        """Stacking's fitted meta-learner (None for voting)."""
        return self.combiner.meta

    @classmethod
    def claims(cls, folder: Path) -> bool:
        return (folder / ENSEMBLE_FILE).is_file()

    @classmethod
    def load(cls, folder: Path, overrides: dict[str, Any] | None = None) -> EnsemblePredictor:
        doc = _read(folder)
        members = []
        for entry in doc["members"]:
            where = Path(entry["path"]) if Path(entry["path"]).is_absolute() else folder / entry["path"]
            member = load_predictor(where, field=f"ensemble '{folder}' member '{entry['name']}'")
            members.append((entry["name"], member, entry["weight"]))
        meta = _load_meta(folder, doc["meta"]) if doc.get("meta") else None
        if doc["combine"] not in COMBINERS:  # a registered rule only: the file never names code to import
            raise HonedError(
                f"ensemble '{folder}': {ENSEMBLE_FILE} names combine rule {doc['combine']!r}; "
                f"expected one of {', '.join(COMBINERS.names())}"
            )
        if COMBINERS.get(doc["combine"]).needs_meta and meta is None:  # type: ignore[attr-defined]
            raise HonedError(
                f"ensemble '{folder}': {ENSEMBLE_FILE} combines by {doc['combine']} but names no meta-learner; "
                "rebuild the ensemble with `honed ensemble RECIPE`"
            )
        task = doc.get("task", "classification")  # folders written before regression and multi-label: classes
        if task not in TASK_OUTPUTS:
            raise HonedError(f"ensemble '{folder}': {ENSEMBLE_FILE} names task {task!r}; expected one of "
                             f"{', '.join(TASK_OUTPUTS)}")
        combiner = COMBINERS.build(doc["combine"], weights=[m[2] for m in members], meta=meta)
        recipe = saved_recipe(members[0][1].folder, overrides)  # how inputs are read: as the first member reads them
        info = {k: v for k, v in doc.items() if k not in ("format", "combine", "labels", "members", "meta")}
        label_map = LabelMap.load(folder) if (folder / "labels.json").is_file() else None
        return cls(folder, tuple(doc["labels"]), members, combiner, recipe, info, task, label_map)

    def member_probs(self, frame: pd.DataFrame) -> np.ndarray:
        """(members, rows, columns): every member's outputs (probabilities, or a regression ensemble's predicted
        values) in the ensemble's column order."""
        return np.stack([outputs_in(member, frame, self.labels, self.task) for _, member, _ in self.members])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if not TASK_OUTPUTS[self.task].probabilities:
            raise HonedError(f"'{self.describe()}' is a {self.task} ensemble: it predicts values (predict_values), "
                             "not class probabilities")
        return self.combiner(self.member_probs(frame))

    def predict_values(self, frame: pd.DataFrame) -> np.ndarray:
        if TASK_OUTPUTS[self.task].probabilities:
            return super().predict_values(frame)
        return self.combiner(self.member_probs(frame))

    def require_temperature(self) -> float:
        raise HonedError(
            f"--calibrated: '{self.folder}' is an ensemble, which has no saved temperature; drop --calibrated"
        )

    def describe(self) -> str:
        return f"ensemble {self.folder}"


def load_ensemble(folder: str | Path) -> EnsemblePredictor:
    """The ensemble saved in `folder`; a folder without ensemble.json is a one-line error."""
    folder = Path(folder)
    if not EnsemblePredictor.claims(folder):
        raise HonedError(f"ensemble '{folder}': no {ENSEMBLE_FILE}; build one with `honed ensemble RECIPE`")
    return EnsemblePredictor.load(folder)


def _read(folder: Path) -> dict[str, Any]:
    """ensemble.json, checked: valid JSON in the format this version reads."""
    try:
        doc = json.loads((folder / ENSEMBLE_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HonedError(
            f"ensemble '{folder}': {ENSEMBLE_FILE} is not valid JSON ({exc}); rebuild it with `honed ensemble RECIPE`"
        ) from None
    found = doc.get("format") if isinstance(doc, dict) else None
    if found != FORMAT:
        raise HonedError(f"ensemble '{folder}': {ENSEMBLE_FILE} is format {found!r}, expected {FORMAT}")
    return doc


def _load_meta(folder: Path, entry: dict[str, Any]) -> Any:
    """Stacking's meta-learner: logistic regression or ridge from plain JSON, anything else from joblib."""
    path = folder / str(entry.get("file", ""))
    if not path.is_file():
        raise HonedError(
            f"ensemble '{folder}': the stacking meta-learner file '{path.name}' is missing; "
            "rebuild the ensemble with `honed ensemble RECIPE`"
        )
    if entry["file"] == META_JSON:
        from sklearn.linear_model import LogisticRegression, Ridge

        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HonedError(f"ensemble '{folder}': {META_JSON} is damaged ({exc}); rebuild the ensemble") from None
        kinds = {"logistic_regression": LogisticRegression, "ridge": Ridge}
        linear = kinds.get(entry.get("kind", ""), LogisticRegression)
        meta = linear(**state["params"])
        meta.coef_, meta.intercept_ = np.asarray(state["coef"]), np.asarray(state["intercept"])
        if "classes" in state:
            meta.classes_ = np.asarray(state["classes"])
        meta.n_features_in_ = meta.coef_.shape[-1]
        return meta
    import joblib

    return joblib.load(folder / entry["file"])
