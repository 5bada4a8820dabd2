"""Classical ensemble members: scikit-learn pipelines over the text (`kind: sklearn`).

A member that errs differently from the fine-tunes is worth more to an ensemble than another seed:
TF-IDF over word and character n-grams + logistic regression scores far below MiniLM on its own
(0.74 on the 4,000-review Rotten Tomatoes subset) but makes other mistakes. It trains in seconds on
the same train rows as the other members, gives out-of-fold probabilities for stacking by k-fold
cross-fitting, and is saved inside the ensemble folder as a `sklearn` saved kind
(honed/inference/sklearn.py):

    members:
      - {name: tfidf, kind: sklearn, pipeline: tfidf_logreg, params: {C: 4.0, char_ngrams: [2, 5]}}
      - {name: mine, kind: sklearn, pipeline: "mypkg.pipes:make_pipeline"}   # opt-in import, as custom losses

A factory returns an unfitted scikit-learn classifier (usually a Pipeline) that accepts a list of
strings and has predict_proba.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone, is_classifier

from honed.ensemble.spec import MemberSpec
from honed.ensemble.stacking import out_of_fold
from honed.errors import HonedError
from honed.inference.sklearn import PIPELINE_FILE, SKLEARN_FILE, SKLEARN_FORMAT, pipeline_proba, pipeline_texts
from honed.recipe import Recipe
from honed.registry import Registry
from honed.rundir import write_text_atomic

PIPELINES: Registry[Any] = Registry("sklearn pipeline")
TASK = "classification"  # what a pipeline member is: a classifier with predict_proba (build_pipeline checks)


@PIPELINES.register("tfidf_logreg")
def tfidf_logreg(
    word_ngrams: tuple[int, int] | list[int] = (1, 2),
    char_ngrams: tuple[int, int] | list[int] = (2, 5),
    min_df: int | float = 1,
    max_features: int | None = None,
    C: float = 4.0,
    max_iter: int = 2000,
    class_weight: str | None = None,
) -> Any:
    """TF-IDF of word n-grams and of character n-grams within word boundaries (sublinear tf), side by side,
    into an L2 logistic regression: the classical text baseline (and what the design notes' 0.74-0.76 is)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    common = {"min_df": min_df, "max_features": max_features, "sublinear_tf": True, "strip_accents": "unicode"}
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(analyzer="word", ngram_range=tuple(word_ngrams), **common)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(char_ngrams), **common)),
        ]
    )
    logreg = LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight)
    return Pipeline([("tfidf", features), ("logreg", logreg)])


def build_pipeline(member: MemberSpec, field: str) -> Any:
    """The member's unfitted pipeline; an unknown name, a bad parameter or a non-classifier is one line."""
    if not member.pipeline:
        raise HonedError(
            f"{field}.pipeline: member '{member.name}' is kind sklearn but names no pipeline; "
            f"set pipeline: {' | '.join(PIPELINES.names())} or pkg.module:factory"
        )
    pipeline = PIPELINES.build(member.pipeline, f"{field}.pipeline", **member.params)
    if not is_classifier(pipeline) or not hasattr(pipeline, "predict_proba"):
        raise HonedError(
            f"{field}.pipeline: '{member.pipeline}' did not return a scikit-learn classifier with predict_proba"
        )
    return pipeline


def check_members(members: list[MemberSpec], data_kind: str, method: str) -> None:
    """sklearn members read text and are not weight-averageable: refused before anything trains."""
    for i, member in enumerate(members):
        if member.kind != "sklearn":
            continue
        field = f"ensemble.members.{i}"
        if data_kind != "text":
            raise HonedError(
                f"{field}.kind: member '{member.name}' is a scikit-learn text pipeline but data.kind is "
                f"{data_kind}; sklearn members need text data"
            )
        if member.prefit is not None or member.recipe is not None or member.overrides:
            raise HonedError(
                f"{field}: member '{member.name}' is kind sklearn; it takes pipeline and params, not "
                "prefit, recipe or overrides"
            )
        if method == "soup":
            raise HonedError(
                f"{field}.kind: a soup averages the weights of fine-tunes of one model; member "
                f"'{member.name}' is a scikit-learn pipeline; drop it or use another method"
            )
        build_pipeline(member, field)


def fit_sklearn_member(
    member: MemberSpec, train: pd.DataFrame, labels: tuple[str, ...], recipe: Recipe, folder: Path, overwrite: bool
) -> Path:
    """Fit the member's pipeline on the train rows and save it as a `sklearn` saved kind in `folder`
    (kept as it is when a re-run finds it finished and `overwrite` is off)."""
    if not overwrite and (folder / SKLEARN_FILE).is_file():
        return folder
    import joblib

    pipeline = build_pipeline(member, f"ensemble member '{member.name}'")
    pipeline.fit(pipeline_texts(train, recipe), train["label"].astype(str).tolist())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SKLEARN_FILE).unlink(missing_ok=True)  # the marker goes last: a crash leaves no half-saved member
    tmp = folder / f"{PIPELINE_FILE}.tmp{os.getpid()}"
    joblib.dump(pipeline, tmp)
    tmp.replace(folder / PIPELINE_FILE)
    (folder / "labels.json").write_text(json.dumps(list(labels)), encoding="utf-8")
    (folder / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    doc = {"format": SKLEARN_FORMAT, "pipeline": member.pipeline, "params": member.params, "file": PIPELINE_FILE}
    write_text_atomic(folder / SKLEARN_FILE, json.dumps(doc, indent=1, default=str))
    return folder


def sklearn_out_of_fold(
    member: MemberSpec, train: pd.DataFrame, labels: tuple[str, ...], recipe: Recipe, folds: int, seed: int
) -> np.ndarray:
    """(train rows, classes) probabilities, each row from a copy of the pipeline fitted on the other folds."""
    pipeline = build_pipeline(member, f"ensemble member '{member.name}'")

    def fit_predict(fold: int, part: pd.DataFrame, held: pd.DataFrame) -> np.ndarray:
        fitted = clone(pipeline).fit(pipeline_texts(part, recipe), part["label"].astype(str).tolist())
        return pipeline_proba(fitted, pipeline_texts(held, recipe), labels)

    return out_of_fold(train, folds, seed, fit_predict, len(labels))
