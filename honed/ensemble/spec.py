"""The `ensemble:` section of a recipe, validated here (the recipe keeps it as plain data).

ensemble:
  method: selection            # voting | selection | stacking | bagging | soup
  members:                     # each member is its own honed recipe: the base plus overrides
    - {name: lr3e-5, overrides: {optim.lr: 3.0e-5}}
    - {name: other, recipe: recipes/other.yaml}
    - {name: old, prefit: runs/earlier/model}
    - {name: tfidf, kind: sklearn, pipeline: tfidf_logreg, params: {C: 4.0}}   # a scikit-learn pipeline (text)
  from_tune: runs/my-study     # or: members from RUN_DIR/top_trials.json (best first)
  top_k: 3
  snapshots: {cycles: 3}       # or: one cyclic-cosine run, a member saved at each cycle end
  soup: greedy                 # method soup: uniform | greedy weight average of members sharing one init

Each setting left unset takes the task's default (honed/ensemble/tasks.py): voting soft (regression: mean),
selection.metric accuracy (regression: rmse; multilabel: map), stacking.meta logistic_regression
(regression: ridge).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from honed.errors import HonedError, closest


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemberSpec(_Spec):
    """One member: trained from a recipe (the base one unless `recipe` names another) with dotted
    `overrides`, or an already trained model folder given as `prefit`."""

    name: str
    recipe: str | None = None
    overrides: dict[str, Any] = {}
    prefit: str | None = None
    kind: Literal["honed", "sklearn"] = "honed"  # sklearn: a scikit-learn text pipeline (honed/ensemble/classical.py)
    pipeline: str | None = None  # kind sklearn: a registered pipeline (tfidf_logreg) or an opt-in `pkg.module:factory`
    params: dict[str, Any] = {}  # kind sklearn: keyword arguments of the pipeline factory


class BaggingSpec(_Spec):
    """`n_members` copies of the base recipe (seeds seed, seed+1, ...) on resampled training rows."""

    n_members: int = Field(5, ge=2)
    bootstrap: bool = True  # sample with replacement; False draws a random subset without replacement
    max_samples: float = Field(1.0, gt=0.0, le=1.0)  # rows per member, as a fraction of the training rows


class StackingSpec(_Spec):
    """A scikit-learn classifier trained on out-of-fold member probabilities (k-fold cross-fitting); for
    regression a regressor on out-of-fold predicted values."""

    meta: str | None = None  # None: the task's (logistic_regression; regression: ridge)
    params: dict[str, Any] = {}
    folds: int = 5


class SelectionSpec(_Spec):
    """Greedy forward selection with replacement (Caruana et al. 2004) on validation data."""

    rounds: int = Field(20, ge=1)
    # None: the task's (accuracy; regression: rmse, minimised; multilabel: map); each metric serves one task
    metric: Literal["accuracy", "log_loss", "rmse", "mae", "map", "bce"] | None = None


class SnapshotSpec(_Spec):
    cycles: int = Field(3, ge=2)


class EnsembleSpec(_Spec):
    method: Literal["voting", "selection", "stacking", "bagging", "soup"] = "selection"
    voting: Literal["soft", "hard", "mean", "median"] | None = None  # None: the task's (soft; regression: mean)
    weights: list[float] | Literal["select"] | None = None  # given, fitted by selection on val, or equal
    members: list[MemberSpec] = []
    from_tune: str | None = None
    top_k: int = Field(3, ge=1)
    snapshots: SnapshotSpec | None = None
    bagging: BaggingSpec = BaggingSpec()
    stacking: StackingSpec = StackingSpec()
    selection: SelectionSpec = SelectionSpec()
    soup: Literal["uniform", "greedy"] = "greedy"  # method soup: average all members, or greedily by val score
    workers: int = Field(1, ge=1)
    keep_checkpoints: bool = False  # member runs drop checkpoints/ (optimizer state) once trained


def parse_spec(tree: dict[str, Any] | None) -> EnsembleSpec:
    """The validated section; an unknown key or bad value is one line naming `ensemble.<key>`."""
    if not tree:
        raise HonedError("ensemble: the recipe has no ensemble section; add one (see `honed ensemble --help`)")
    try:
        return EnsembleSpec.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(["ensemble", *(str(p) for p in err["loc"])])
        if err["type"] == "extra_forbidden":
            fields = _fields(err["loc"][:-1])
            hint = closest(str(err["loc"][-1]), fields)
            raise HonedError(
                f"unknown key '{path}'"
                + (f"; did you mean '{hint}'?" if hint else f"; valid keys: {', '.join(fields)}")
            ) from exc
        raise HonedError(f"'{path}': {err['msg']} (got {err.get('input')!r})") from exc


def _fields(loc: tuple[Any, ...]) -> list[str]:
    model: Any = EnsembleSpec
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        inner = getattr(field.annotation, "__args__", None) if field else None
        candidates = [field.annotation, *(inner or [])] if field else []
        found = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not found:  # list[MemberSpec]
            found = [
                a
                for c in candidates
                for a in getattr(c, "__args__", ())
                if isinstance(a, type) and issubclass(a, BaseModel)
            ]
        model = found[0] if found else None
    return sorted(model.model_fields) if model else []
