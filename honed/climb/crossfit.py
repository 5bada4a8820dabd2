"""Selection and stacking in the climb's ensemble stage: fitted on val, yet never judged on the rows they
were fitted to.

A combiner that learns from val (greedy selection's weights, a stacking meta-learner) scores itself too well
on those same rows, and the climb compares candidates on val. So the val score is cross-fitted: val is cut
into stratified folds, each fold's ensemble probabilities come from a combiner fitted on the other folds, and
the val metric is computed on those out-of-fold rows. The saved ensemble folder holds the combiner fitted on
all of val, and the test split is scored with it (test stays out of every choice, as elsewhere in the climb).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from honed.ensemble.saved import save_ensemble
from honed.ensemble.stacking import meta_learner
from honed.errors import HonedError
from honed.inference.base import load_predictor
from honed.inference.combiners import COMBINERS, Combiner
from honed.metrics import probability_metrics

FOLDS = 5
MAKERS = {
    "selection": lambda: COMBINERS.build("selection"),
    "stacking": lambda: COMBINERS.build("stacking", meta=meta_learner("logistic_regression", {"max_iter": 1000})),
}


def crossfit(section: dict[str, Any], frames: dict[str, Any], folder: Path, seed: int) -> dict[str, Any]:
    """Val scores cross-fitted and test scores of the fitted combiner; the ensemble saved in `folder`.
    `section` is the ensemble's: its `method` and `members` (each a `prefit` folder of this pair)."""
    members = [(m["name"], Path(m["prefit"])) for m in section["members"]]
    predictors = [load_predictor(path) for _, path in members]
    labels = tuple(predictors[0].labels)
    probs, y = {}, {}
    for split in ("val", "test"):
        frame = frames[split].reset_index(drop=True)
        if len(frame):  # a recipe may have no test split
            probs[split] = np.stack([p.proba_in(frame, labels) for p in predictors])
            y[split] = np.asarray([labels.index(v) for v in frame["label"].astype(str)])
    make = MAKERS[section["method"]]
    out_of_fold, folds = cross_fitted(make, probs["val"], y["val"], seed)
    final = make().fit(probs["val"], y["val"])
    weights = final.member_weights(len(members))
    listed = [(name, path, float(w)) for (name, path), w in zip(members, weights, strict=True)]
    save_ensemble(folder, labels, listed, final.rule, meta=final.meta,
                  info={"method": section["method"], "crossfit_folds": folds})
    test = probability_metrics(final(probs["test"]), y["test"]) if "test" in probs else {}
    return {"val": probability_metrics(out_of_fold, y["val"]), "test": test}


def cross_fitted(make: Any, probs: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """(rows, classes) ensemble probabilities of val, each fold's from a combiner fitted on the other folds, and
    how many folds (up to FOLDS: no more than the rarest class has rows)."""
    folds = min(FOLDS, int(np.unique(y, return_counts=True)[1].min()))
    if folds < 2:
        raise HonedError("climb: a class has a single val row, so no cross-fitted combiner can hold it out")
    out = np.zeros(probs.shape[1:])
    for fit_rows, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(probs[0], y):
        combiner: Combiner = make().fit(probs[:, fit_rows], y[fit_rows])
        out[held] = combiner(probs[:, held])
    return out, folds
