"""honed tune: search spaces, samplers, pruning, failures, storage, resume, workers, outputs, bad input."""

from __future__ import annotations

import json
import math
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

import optuna
import pytest
import yaml

import honed
from honed.cli import main
from honed.errors import HonedError
from honed.tune import tune
from honed.tune.objective import Objective
from honed.tune.spec import parse_search
from honed.tune.study import PRUNERS, open_storage, open_study, sqlalchemy_url
from tests.conftest import text_rows, tiny_recipe

GRID = {
    "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True, "grid": [1e-3, 1e-2]},
    "techniques.ema": {"type": "switch", "options": {"decay": 0.9}},
}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    text_rows(40).to_csv(path, index=False)
    return path


def recipe(tiny_bert: str, data: Path, out: Path, epochs: int = 1, **search: Any) -> dict:
    tree = tiny_recipe(tiny_bert, data, out, train__epochs=epochs)
    tree["report"] = {"enabled": False}
    tree["search"] = {"params": GRID, **search}
    return tree


def params_of(study: optuna.Study) -> list[tuple]:
    return sorted(tuple(sorted(t.params.items())) for t in study.trials)


def test_grid_visits_every_point_once_and_writes_outputs(tiny_bert: str, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid"
    result = tune(recipe(tiny_bert, data, out, sampler="grid", keep_top_k=2))
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    assert params_of(study) == sorted(
        {((("optim.lr", lr), ("techniques.ema", ema))) for lr in (1e-3, 1e-2) for ema in (False, True)}
    )
    assert result.summary["trials"]["complete"] == 4
    trials = (out / "trials.csv").read_text().splitlines()
    assert len(trials) == 5 and "params_optim.lr" in trials[0]
    best = yaml.safe_load((out / "best_recipe.yaml").read_text())
    assert best["optim"]["lr"] == result.best_params["optim.lr"] and best["search"] is None
    assert (best["train"]["metric"], best["train"]["mode"]) == (
        "accuracy",
        "max",
    )  # the checkpoint rule every trial used
    assert any(t["name"] == "ema" for t in best["techniques"]) == result.best_params["techniques.ema"]
    honed.load_recipe(best)  # ready to run
    top = json.loads((out / "top_trials.json").read_text())
    assert [t["number"] for t in top] == [
        result.summary["top_trials"][0]["number"],
        result.summary["top_trials"][1]["number"],
    ]
    assert top[0]["value"] >= top[1]["value"] and all(Path(t["model_dir"], "config.json").is_file() for t in top)
    kept = {t["number"] for t in top}
    for n in range(4):
        assert (out / "trials" / f"trial-{n}" / "model").is_dir() == (n in kept)  # others' weights deleted
        assert not (out / "trials" / f"trial-{n}" / "checkpoints").exists()
    html = (out / "tune_report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "optuna-dashboard" in html
    assert {"optimization_history", "parallel_coordinate", "slice"} <= set(result.summary["plots"])
    assert set(json.loads((out / "importances.json").read_text())) <= {"optim.lr", "techniques.ema"}


def test_rerun_resumes_the_study(tiny_bert: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "random"
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(tiny_bert, data, out, sampler="random", n_trials=1)))
    assert main(["tune", str(path), "--quiet"]) == 0
    assert main(["tune", str(path), "--quiet", "--trials", "2"]) == 0  # same command, bigger budget: one more trial
    assert main(["tune", str(path), "--quiet", "--trials", "2"]) == 0  # budget spent: nothing new
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    top = json.loads((out / "top_trials.json").read_text())  # no keep_top_k: every completed trial, models kept
    assert len(top) == 2 and all(Path(t["model_dir"]).is_dir() for t in top)
    assert main(["tune", str(path), "--quiet", "--study-name", "other"]) == 2  # would overwrite trial-0/1 of 'tiny'
    assert "holds the trials of study 'tiny'" in capsys.readouterr().err
    assert all(Path(t["model_dir"]).is_dir() for t in top)


@pytest.mark.parametrize("earlier", [2.0, -1.0], ids=["beaten", "beating"])
def test_median_pruning_stops_a_trial_after_an_epoch(
    earlier: float, tiny_bert: str, data: Path, tmp_path: Path
) -> None:
    """honed's median pruner, after one finished trial whose epoch-1 value was `earlier`: an accuracy of
    2.0 beats any real trial (pruned after epoch 1), -1.0 beats none (the trial runs both epochs)."""
    spec = parse_search({"params": GRID, "sampler": "random", "pruner": "median", "startup_trials": 1})
    pruner = PRUNERS[spec.pruner](spec, 2)
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.add_trial(optuna.trial.create_trial(value=earlier, intermediate_values={1: earlier, 2: earlier}))
    tree = recipe(tiny_bert, data, tmp_path / "p", epochs=2)
    study.optimize(Objective(tree, spec, tmp_path / "p"), n_trials=1)
    trial = study.trials[-1]
    model = tmp_path / "p" / "trials" / f"trial-{trial.number}" / "model"
    if earlier > 1:
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert list(trial.intermediate_values) == [1] and trial.user_attrs["epochs"] == 1
        assert not model.exists()  # pruned before saving a model
    else:
        assert trial.state == optuna.trial.TrialState.COMPLETE and list(trial.intermediate_values) == [1, 2]


def test_a_completed_trials_saved_recipes_run_outside_the_study(tiny_bert: str, data: Path, tmp_path: Path) -> None:
    spec = parse_search({"params": GRID, "sampler": "random", "pruner": "median"})
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(Objective(recipe(tiny_bert, data, tmp_path / "p"), spec, tmp_path / "p"), n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
    for path in (tmp_path / "p/trials/trial-0/recipe.yaml", tmp_path / "p/trials/trial-0/model/recipe.yaml"):
        tree = yaml.safe_load(path.read_text())
        assert all(t["name"] != "optuna_pruning" for t in tree.get("techniques") or []), path
        honed.load_recipe(tree)  # the pruning callback is run-time only: it never enters a saved recipe


def test_search_settings_that_contradict_or_overshoot_are_refused(tiny_bert: str, data: Path, tmp_path: Path) -> None:
    with pytest.raises(HonedError, match="direction minimize contradicts metric accuracy"):
        parse_search({"params": GRID, "metric": "accuracy", "direction": "minimize"})
    with pytest.raises(HonedError, match="whole step"):
        parse_search({"params": {"train.batch_size": {"type": "int", "low": 4, "high": 8, "step": 0.5}}})
    spec = parse_search(
        {"params": {"optim.weight_decay": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.35}}, "sampler": "grid"}
    )
    assert spec.params["optim.weight_decay"].grid_points("optim.weight_decay") == [0.0, 0.35, 0.7]  # never past high
    tree = recipe(tiny_bert, data, tmp_path / "noval")
    tree["data"]["split"]["val"] = 0.0
    with pytest.raises(HonedError, match="data.split.val is 0"):
        tune(tree)
    assert not (tmp_path / "noval").exists()


def test_failed_and_nan_trials_are_recorded_and_the_study_goes_on(
    tiny_bert: str, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "fail"
    tree = recipe(tiny_bert, data, out, sampler="grid")
    tree["search"]["params"] = {
        "model.name": {"type": "categorical", "choices": [str(tmp_path / "no-such-model"), tiny_bert]}
    }
    result = tune(tree)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    states = {t.params["model.name"]: t for t in study.trials}
    bad = states[str(tmp_path / "no-such-model")]
    assert bad.state.name == "FAIL" and "no-such-model" in bad.user_attrs["fail_reason"]
    assert states[tiny_bert].state.name == "COMPLETE" and result.summary["trials"]["fail"] == 1

    class NanRun:
        metrics: ClassVar[dict] = {"val_accuracy": math.nan, "epochs_run": 1, "train_seconds": 0.1}
        model_dir = tmp_path

    monkeypatch.setattr(sys.modules["honed.fit"], "fit", lambda *a, **k: NanRun())
    nan_study = optuna.create_study(direction="maximize")
    nan_study.optimize(Objective(tree, parse_search(tree["search"]), tmp_path / "nan"), n_trials=2, catch=(Exception,))
    assert [t.state.name for t in nan_study.trials] == ["FAIL", "FAIL"]
    assert "val accuracy is nan" in nan_study.trials[0].user_attrs["fail_reason"]


def test_killed_worker_trial_is_failed_and_retried(tiny_bert: str, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "hb"
    tree = recipe(tiny_bert, data, out, sampler="random", n_trials=2, heartbeat=1)
    spec = parse_search(tree["search"])
    out.mkdir()
    study = open_study(open_storage(f"sqlite:///{out / 'study.db'}", spec), "tiny", spec, 0, 2)
    trial = study.ask()  # a worker that suggested values, sent one heartbeat and died
    trial.suggest_float("optim.lr", 1e-4, 1e-2, log=True)
    trial.suggest_categorical("techniques.ema", [False, True])
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(3.5)  # past the 2 s grace period with a margin for a loaded machine
    tune(tree)
    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}").trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert (
        trials[1].system_attrs["failed_trial"] == 0 and trials[1].params == trials[0].params
    )  # the same point, retried


def _two_workers(tiny_bert: str, data: Path, out: Path, storage: str | None) -> None:
    tree = recipe(tiny_bert, data, out, sampler="grid")
    name = f"w-{uuid.uuid4().hex[:8]}"
    result = tune(tree, storage=storage, workers=2, study_name=name)
    study = optuna.load_study(study_name=name, storage=sqlalchemy_url(storage or f"sqlite:///{out / 'study.db'}"))
    assert len(study.trials) == 4 and len(set(params_of(study))) == 4  # every grid point exactly once
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert f":{os.getpid()}" not in " ".join(workers)  # trials ran in the worker processes
    assert result.summary["trials"]["complete"] == 4


def test_two_worker_processes_share_one_sqlite_study(tiny_bert: str, data: Path, tmp_path: Path) -> None:
    _two_workers(tiny_bert, data, tmp_path / "w", None)


def test_two_worker_processes_share_one_postgres_study(tiny_bert: str, data: Path, tmp_path: Path) -> None:
    url = os.environ.get("HONED_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(
            "no PostgreSQL server: run .ci/run (it starts one), or set HONED_TEST_POSTGRES_URL=postgresql://USER@/DB?host=SOCKET_DIR"
        )
    _two_workers(tiny_bert, data, tmp_path / "pg", url)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"optim.lrr": {"type": "float", "low": 1e-4, "high": 1e-2}},
            "search.params.optim.lrr = 0.0001: unknown key 'optim.lrr'; did you mean 'optim.lr'?",
        ),
        (
            {"optim.lr": {"type": "float", "low": 1e-2, "high": 1e-4}},
            "search.params.optim.lr: low (0.01) is greater than high (0.0001)",
        ),
        (
            {"optim.lr": {"type": "float", "low": 0.0, "high": 1e-2, "log": True}},
            "search.params.optim.lr: log scale needs low > 0 (got low=0)",
        ),
        (
            {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "grid": []}},
            "search.params.optim.lr: grid is empty",
        ),
        (
            {"train.batch_size": {"type": "categorical", "choices": []}},
            "search.params.train.batch_size: a categorical parameter needs a non-empty",
        ),
        (
            {"techniques.emma": {"type": "switch"}},
            "search.params.techniques.emma: a switch is named techniques.<technique>",
        ),
    ],
)
def test_bad_search_spaces_are_one_line_exit_2(
    tiny_bert: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, params: dict, message: str
) -> None:
    tree = recipe(tiny_bert, data, tmp_path / "bad")
    tree["search"]["params"] = params
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert main(["tune", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()  # nothing created


def test_float_without_grid_points_under_grid_sampler(tiny_bert: str, data: Path, tmp_path: Path) -> None:
    tree = recipe(tiny_bert, data, tmp_path / "g", sampler="grid")
    tree["search"]["params"] = {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}
    with pytest.raises(HonedError, match="grid sampler needs `grid: \\[values\\]` or a `step`"):
        tune(tree)


def test_bad_storage_and_direction_leave_the_study_untouched(tiny_bert: str, data: Path, tmp_path: Path) -> None:
    tree = recipe(tiny_bert, data, tmp_path / "s", sampler="random", n_trials=1)
    with pytest.raises(
        HonedError, match=r"--storage 'postgresql://u:\*\*\*@127.0.0.1:1/x': cannot open the study database"
    ):
        tune(tree, storage="postgresql://u:secret@127.0.0.1:1/x")
    with pytest.raises(HonedError, match="cannot open the study database"):
        tune(tree, storage=f"sqlite:///{tmp_path}/missing/dir/x.db")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = optuna.create_study(storage=url, study_name="tiny", direction="maximize")
    study.enqueue_trial({"optim.lr": 1e-3})
    tree["search"]["metric"] = "loss"  # -> minimize
    with pytest.raises(
        HonedError, match="study 'tiny' already exists with direction maximize, but search.direction is minimize"
    ):
        tune(tree, storage=url)
    again = optuna.load_study(study_name="tiny", storage=url)
    assert again.direction.name == "MAXIMIZE" and [t.state.name for t in again.trials] == ["WAITING"]


def test_tune_can_optimise_the_cv_mean(tiny_bert: str, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cvtune"
    tree = recipe(tiny_bert, data, out, sampler="random", n_trials=1, cv_folds=2)
    result = tune(tree)
    cv = json.loads((out / "trials" / "trial-0" / "cv.json").read_text())
    assert result.best_value == pytest.approx(cv["metrics_mean"]["accuracy"]) and cv["folds"] == 2
    trial = out / "trials" / "trial-0"
    assert not list(trial.glob("folds/fold-*/checkpoints")) and len(list(trial.glob("folds/fold-*/model"))) == 2


@pytest.mark.parametrize("sampler", ["grid", "random", "tpe"])
@pytest.mark.parametrize("pruner", ["none", "median", "hyperband", "successive_halving"])
def test_every_sampler_and_pruner_opens_a_study(sampler: str, pruner: str, tmp_path: Path) -> None:
    spec = parse_search({"params": GRID, "sampler": sampler, "pruner": pruner})
    study = open_study(open_storage(f"sqlite:///{tmp_path / 's.db'}", spec), "s", spec, 0, 3)
    assert type(study.sampler).__name__.lower().startswith(sampler) and study.user_attrs["pruner"] == pruner


def test_shipped_tune_recipe_is_valid(tmp_path: Path) -> None:
    from honed.tune.run import make_plan

    plan, spec = make_plan(
        Path(__file__).parent.parent / "recipes" / "tune-quickstart.yaml",
        None,
        None,
        None,
        None,
        {"output_dir": str(tmp_path / "t")},
    )
    assert plan.budget == 12 and spec.pruner == "median" and plan.storage.endswith("study.db")
