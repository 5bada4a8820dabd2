"""Experiment trackers ride on the run-time callbacks: the recipe as parameters, each epoch's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import honed
from honed.techniques.trackers import flatten
from tests.conftest import tiny_recipe


def test_flatten_spells_keys_as_overrides_do() -> None:
    assert flatten({"optim": {"lr": 1e-3, "betas": [0.9, 0.99]}, "seed": 0, "x": None}) == {
        "optim.lr": 1e-3,
        "optim.betas": "[0.9, 0.99]",
        "seed": 0,
        "x": "None",
    }


def test_mlflow_gets_the_recipe_and_every_epoch(
    tiny_bert: str, text_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the local file store behind a switch
    run = honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "run", log={"trackers": ["mlflow"]}), quiet=True)
    client = mlflow.tracking.MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("tiny")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.data.params["optim.lr"] == "0.001" and found.data.params["train.epochs"] == "2"
    history = client.get_metric_history(found.info.run_id, "val_accuracy")
    epochs = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m.value for m in history] == pytest.approx([e["val_accuracy"] for e in epochs])
    assert [m.step for m in history] == [e["step"] for e in epochs]


def test_wandb_offline_writes_a_local_run(
    tiny_bert: str, text_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "run", log={"trackers": ["wandb"]}), quiet=True)
    (log,) = (tmp_path / "wandb").glob("offline-run-*/*.wandb")  # W&B's record log: config and history as protobuf
    records = log.read_bytes()
    assert b"optim.lr" in records and b"train.epochs" in records, "the recipe as the run's config"
    assert records.count(b"val_accuracy") >= 2, "a val_accuracy entry per epoch (2 epochs)"


def test_unknown_tracker_is_refused(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(honed.HonedError, match="log.trackers"):
        honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "run", log={"trackers": ["comet"]}), quiet=True)
    assert not (tmp_path / "run").exists()


class Explode:
    """A run-time callback that fails the fit after its first evaluation (as a pruned trial ends)."""

    def on_evaluate_end(self, state: object) -> None:
        raise RuntimeError("stop here")


def test_a_failed_fit_leaves_no_tracker_run_open(
    tiny_bert: str, text_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tune runs trials in one process: after a pruned or failed trial the next one must start its own run."""
    mlflow = pytest.importorskip("mlflow")
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    recipe = tiny_recipe(tiny_bert, text_csv, tmp_path / "a", log={"trackers": ["mlflow"]})
    with pytest.raises(RuntimeError, match="stop here"):
        honed.fit(recipe, callbacks=[Explode()], quiet=True)
    assert mlflow.active_run() is None
    honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "b", log={"trackers": ["mlflow"]}), quiet=True)
    client = mlflow.tracking.MlflowClient(tracking_uri=store.as_uri())
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
