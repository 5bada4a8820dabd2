"""Ensembles of fine-tuned models: voting, bagging, stacking, ensemble selection, snapshots.

`build_ensemble(recipe)` (CLI `honed ensemble RECIPE`) trains the members named by the recipe's
`ensemble:` section and saves one folder that `honed predict` / `honed evaluate` use like a model;
`EnsembleClassifier` does the same in scikit-learn's style. Imports stay lazy to keep `import honed` light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EnsembleClassifier", "build_ensemble", "load_ensemble", "tfidf_logreg"]


def __getattr__(name: str) -> Any:
    if name == "build_ensemble":
        from honed.ensemble.build import build_ensemble

        return build_ensemble
    if name == "load_ensemble":
        from honed.inference.ensemble import load_ensemble

        return load_ensemble
    if name == "EnsembleClassifier":
        from honed.ensemble.estimators import EnsembleClassifier

        return EnsembleClassifier
    if name == "tfidf_logreg":  # the classical member, for EnsembleClassifier([("tfidf", tfidf_logreg()), ...])
        from honed.ensemble.classical import tfidf_logreg

        return tfidf_logreg
    raise AttributeError(name)
