"""What an ensemble does per task beyond combining: the small contract `honed ensemble` composes through,
so its build code never asks which task it runs.

An EnsembleTask says how the shared frames become the members' in-memory data and the truth the outputs
are scored against, which scores it reports (honed.metrics, as for single models), its defaults (voting
rule, selection metric, stacking meta-learner), how bagging stratifies and scores out of bag, what stacking
checks of its folds before training (honed.cv.cross_validate makes them, for every task), what label map
the saved folder holds (a multi-label ensemble's thresholds, tuned on val for its own probabilities) and
which report it writes. ENSEMBLE_TASKS maps the task names of honed.metrics.TASKS to them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from honed.data.labels import LABELS, TARGET, LabelMap, MultiLabelMap, TargetMap
from honed.ensemble.bagging import oob_average, oob_estimate
from honed.ensemble.members import as_data
from honed.ensemble.stacking import check_fold_rows, fold_indices, meta_learner, meta_regressor
from honed.errors import HonedError
from honed.metrics import best_thresholds, label_set_metrics, probability_bce, probability_metrics, regression_metrics
from honed.recipe import Recipe


class EnsembleTask:
    """Classification: members' class probabilities, scored by accuracy and macro-F1 (the base behaviour)."""

    name: ClassVar[str] = "classification"
    vote: ClassVar[str] = "soft"  # ensemble.voting when unset
    selection_metric: ClassVar[str] = "accuracy"  # ensemble.selection.metric when unset
    meta: ClassVar[str | None] = "logistic_regression"  # ensemble.stacking.meta when unset
    summary: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")  # the scores `honed ensemble` prints per split
    pin_task: ClassVar[bool] = False  # member recipes of task auto are told this task (targets are not re-guessed)
    snapshots: ClassVar[bool] = True  # whether snapshot models keep this task's label map when saved

    def data(self, train: pd.DataFrame, val: pd.DataFrame) -> dict[str, Any]:
        """Train and val rows as `honed.fit` in-memory splits (test empty: the ensemble scores it itself)."""
        return as_data(train, val)

    def truth(self, frame: pd.DataFrame, labels: tuple[str, ...]) -> np.ndarray:
        """What the outputs are scored against: class indices in `labels` order."""
        return np.asarray([labels.index(v) for v in frame["label"]])

    def scores(self, outputs: np.ndarray, truth: np.ndarray, names: tuple[str, ...],
               decision: LabelMap | None = None) -> dict[str, float]:
        """The task's scores of (rows, columns) outputs; `decision` is the scored model's map (thresholds)."""
        return probability_metrics(outputs, truth)

    def meta_learner(self, name: str, params: dict[str, Any]) -> Any:
        return meta_learner(name, params)

    def strata(self, train: pd.DataFrame) -> np.ndarray | None:
        """Per training row, what bagging draws within (so every bag holds every class); None: no strata."""
        return train["label"].astype(str).to_numpy()

    def check_folds(self, train: pd.DataFrame, folds: int, seed: int) -> None:
        """Stacking's folds checked before training (honed.cv.cross_validate makes the folds themselves)."""
        fold_indices(train["label"], folds, seed)  # a class with fewer rows than folds: one line

    def oob(self, oob: list[tuple[np.ndarray, np.ndarray]], train: pd.DataFrame, labels: tuple[str, ...]
            ) -> dict[str, float]:
        """Bagging's out-of-bag estimate from (row positions, outputs) per member."""
        return oob_estimate(oob, self.truth(train, labels), len(labels))

    def decision(self, labels: tuple[str, ...], frames: dict[str, pd.DataFrame], recipe: Recipe,
                 val: np.ndarray, val_truth: np.ndarray) -> LabelMap | None:
        """The label map the ensemble folder saves (None: classes need none beside ensemble.json)."""
        return None

    def member_decision(self, model_dir: Path) -> LabelMap | None:
        """The map a member decides by when it is scored (None: the class names)."""
        return None

    def report(self, folder: Path, recipe: Recipe, labels: tuple[str, ...], decision: LabelMap | None,
               outputs: np.ndarray, truth: np.ndarray, frame: pd.DataFrame, split: str) -> None:
        """The ensemble's error-analysis report on `split` into `folder`."""
        from honed.evaluate.report import build_report, write_report

        report = build_report(labels=list(labels), y_true=truth, probs=outputs, frame=frame,
                              top_k=recipe.report.top_k, split=split, title=f"honed report: ensemble {recipe.name}",
                              group_name=recipe.data.group_column)
        write_report(folder, report)


class RegressionEnsemble(EnsembleTask):
    """Regression: members' predicted values in the targets' units, scored per target and averaged."""

    name = "regression"
    vote = "mean"
    selection_metric = "rmse"
    meta = "ridge"
    summary = ("rmse", "r2")
    pin_task = True

    def data(self, train: pd.DataFrame, val: pd.DataFrame) -> dict[str, Any]:
        targets = [c for c in train.columns if c.startswith(TARGET)]
        pair = lambda f: (f["x"].tolist(), f[targets].to_numpy(dtype=np.float64).tolist())  # noqa: E731
        return {"train": pair(train), "val": pair(val), "test": ([], [])}

    def truth(self, frame: pd.DataFrame, labels: tuple[str, ...]) -> np.ndarray:
        return frame[[TARGET + n for n in labels]].to_numpy(dtype=np.float64)

    def scores(self, outputs: np.ndarray, truth: np.ndarray, names: tuple[str, ...],
               decision: LabelMap | None = None) -> dict[str, float]:
        """RMSE, MAE, R², Pearson, Spearman averaged over targets (and per target with several), in the
        targets' units; no `loss` (that is training's, in standardised units), as `honed evaluate` reports."""
        scores = regression_metrics(outputs, truth, names)
        scores.pop("loss")
        return scores

    def meta_learner(self, name: str, params: dict[str, Any]) -> Any:
        return meta_regressor(name, params)

    def strata(self, train: pd.DataFrame) -> np.ndarray | None:
        return None

    def check_folds(self, train: pd.DataFrame, folds: int, seed: int) -> None:
        check_fold_rows(train, folds)

    def oob(self, oob: list[tuple[np.ndarray, np.ndarray]], train: pd.DataFrame, labels: tuple[str, ...]
            ) -> dict[str, float]:
        mean, seen = oob_average(oob, len(train), len(labels))
        if not seen.any():
            return {"oob_rmse": float("nan"), "oob_rows": 0}
        scores = self.scores(mean[seen], self.truth(train, labels)[seen], labels)
        return {**{f"oob_{k}": v for k, v in scores.items()}, "oob_rows": int(seen.sum())}

    def decision(self, labels: tuple[str, ...], frames: dict[str, pd.DataFrame], recipe: Recipe,
                 val: np.ndarray, val_truth: np.ndarray) -> LabelMap | None:
        """The targets and their training mean/std: a regression folder is known by its targets.json."""
        return TargetMap.fit(frames["train"], labels)

    def report(self, folder: Path, recipe: Recipe, labels: tuple[str, ...], decision: LabelMap | None,
               outputs: np.ndarray, truth: np.ndarray, frame: pd.DataFrame, split: str) -> None:
        from honed.evaluate.regression import build_regression_report, write_regression_report

        write_regression_report(folder, build_regression_report(
            names=list(labels), y_true=truth, y_pred=outputs, frame=frame, top_k=recipe.report.top_k, split=split,
            title=f"honed report: ensemble {recipe.name}", slices=recipe.report.slices))


class MultiLabelEnsemble(EnsembleTask):
    """Multi-label: members' per-label sigmoid probabilities; the ensemble's own thresholds are tuned on val
    (honed.metrics.best_thresholds, as for a single model) and scored by micro/macro-F1 and mAP."""

    name = "multilabel"
    vote = "soft"
    selection_metric = "map"
    meta = None  # no stacking combiner serves label sets yet
    summary = ("micro_f1", "macro_f1", "map")
    pin_task = True
    snapshots = False  # the snapshots technique refuses multi-label (its thresholds would be lost)

    def data(self, train: pd.DataFrame, val: pd.DataFrame) -> dict[str, Any]:
        pair = lambda f: (f["x"].tolist(), [list(s) for s in f[LABELS]])  # noqa: E731
        return {"train": pair(train), "val": pair(val), "test": ([], [])}

    def truth(self, frame: pd.DataFrame, labels: tuple[str, ...]) -> np.ndarray:
        return MultiLabelMap(tuple(labels)).multi_hot(frame)

    def scores(self, outputs: np.ndarray, truth: np.ndarray, names: tuple[str, ...],
               decision: LabelMap | None = None) -> dict[str, float]:
        """Micro/macro-F1 at the decision's thresholds (0.5 without), mAP, per-label scores and the BCE."""
        thresholds = decision.thresholds if isinstance(decision, MultiLabelMap) else None
        return {"loss": probability_bce(outputs, truth), **label_set_metrics(outputs, truth, names, thresholds)}

    def meta_learner(self, name: str, params: dict[str, Any]) -> Any:
        raise HonedError("ensemble.method: stacking does not serve task multilabel yet; use voting or selection")

    def strata(self, train: pd.DataFrame) -> np.ndarray | None:
        """Each row's rarest training label ('' for none): every bag then holds each label that is some row's
        rarest, which keeps the members' label sets equal on all but contrived data."""
        counts = pd.Series([n for s in train[LABELS] for n in s]).value_counts()
        return np.asarray([min(s, key=lambda n: (counts[n], n)) if s else "" for s in train[LABELS]])

    def check_folds(self, train: pd.DataFrame, folds: int, seed: int) -> None:
        check_fold_rows(train, folds)

    def oob(self, oob: list[tuple[np.ndarray, np.ndarray]], train: pd.DataFrame, labels: tuple[str, ...]
            ) -> dict[str, float]:
        """Micro/macro-F1 at 0.5 and mAP of the averaged out-of-bag probabilities (the thresholds are tuned
        on val afterwards)."""
        mean, seen = oob_average(oob, len(train), len(labels))
        if not seen.any():
            return {"oob_micro_f1": float("nan"), "oob_rows": 0}
        scores = label_set_metrics(mean[seen], self.truth(train, labels)[seen], labels)
        return {**{f"oob_{k}": scores[k] for k in self.summary}, "oob_rows": int(seen.sum())}

    def decision(self, labels: tuple[str, ...], frames: dict[str, pd.DataFrame], recipe: Recipe,
                 val: np.ndarray, val_truth: np.ndarray) -> LabelMap | None:
        """Per-label thresholds maximising each label's F1 on the ensemble's val probabilities."""
        plain = MultiLabelMap(tuple(labels), delimiter=recipe.data.label_delimiter)
        return replace(plain, thresholds=best_thresholds(val, val_truth), tuned_on=f"val, {len(val)} rows")

    def member_decision(self, model_dir: Path) -> LabelMap | None:
        return LabelMap.load(model_dir)

    def report(self, folder: Path, recipe: Recipe, labels: tuple[str, ...], decision: LabelMap | None,
               outputs: np.ndarray, truth: np.ndarray, frame: pd.DataFrame, split: str) -> None:
        from honed.evaluate.multilabel import build_multilabel_report, write_multilabel_report

        write_multilabel_report(folder, build_multilabel_report(
            labels=decision, y_true=truth, probs=outputs, frame=frame, top_k=recipe.report.top_k, split=split,
            title=f"honed report: ensemble {recipe.name}"))


ENSEMBLE_TASKS: dict[str, EnsembleTask] = {
    "classification": EnsembleTask(), "regression": RegressionEnsemble(), "multilabel": MultiLabelEnsemble(),
}
