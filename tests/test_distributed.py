"""A 2-process CPU run (accelerate launch, DDP over gloo) trains and gives one consistent result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from honed.evaluate.saved import evaluate_saved
from tests.conftest import REPO, text_rows, tiny_recipe


def test_two_process_cpu_run(tiny_bert: str, tmp_path: Path) -> None:
    for name, n in (("train", 64), ("val", 24)):
        text_rows(n, seed=n).to_csv(tmp_path / f"{name}.csv", index=False)
    recipe = tiny_recipe(tiny_bert, tmp_path / "train.csv", tmp_path / "run", train__batch_size=8, train__epochs=2)
    recipe["data"].update(val=str(tmp_path / "val.csv"), split={"val": 0.0, "test": 0.0})
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(  # what `accelerate launch` runs for multi-process jobs: torchrun
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            "-m",
            "honed.cli",
            "train",
            str(path),
            "--quiet",
            "train.cpu=true",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "results.json").read_text())
    assert metrics["processes"] == 2
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2, "one record per epoch, written once (by the main process)"
    assert metrics["steps"] == 2 * 4, "64 rows / (8 per process x 2 processes) = 4 steps per epoch"
    # The val metrics gathered across both processes equal a single-process evaluation of the saved model.
    single = evaluate_saved(tmp_path / "run" / "model", str(tmp_path / "val.csv"))
    assert single["accuracy"] == metrics["val_accuracy"]
    assert abs(single["loss"] - metrics["val_loss"]) < 1e-5
