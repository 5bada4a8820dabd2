"""Gradual unfreezing survives the hard cases: a resume after groups were added to the optimizer,
and a 2-process DDP run where parameters start frozen and join later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, text_rows, tiny_recipe

GRADUAL = {"name": "gradual_unfreezing", "every": 1}


def _train(recipe_path: Path, *extra: str, ddp: bool = False) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"] if ddp else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *launcher, "-m", "honed.cli", "train", str(recipe_path), "--quiet", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_resume_after_unfreezing_matches_uninterrupted(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    results = {}
    for name, marker in (("straight", tmp_path / "done"), ("killed", tmp_path / "kill")):
        (tmp_path / "done").touch()
        recipe = tiny_recipe(
            tiny_bert,
            text_csv,
            tmp_path / name,
            train__batch_size=4,
            train__checkpoint_every_steps=5,
            train__epochs=3,
            optim={"lr": 1e-3, "layer_decay": 0.8},
        )
        # 48 rows / 4 = 12 steps per epoch: the kill at step 17 resumes from step 15, after the first unfreeze
        recipe["techniques"] = [GRADUAL, {"name": "tests.killer:KillAtStep", "step": 17, "marker": str(marker)}]
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        first = _train(path)
        if name == "killed":
            assert first.returncode == -9, first.stderr[-2000:]
            first = _train(path, "--resume")
        assert first.returncode == 0, first.stderr[-2000:]
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
    for key in ("val_loss", "test_loss", "steps"):
        assert results["straight"][key] == results["killed"][key], key


def test_two_process_gradual_unfreezing_keeps_replicas_equal(tiny_bert: str, tmp_path: Path) -> None:
    text_rows(64, seed=1).to_csv(tmp_path / "train.csv", index=False)
    recipe = tiny_recipe(tiny_bert, tmp_path / "train.csv", tmp_path / "run", train__batch_size=8, train__epochs=3)
    recipe["data"]["split"] = {"val": 0.25, "test": 0.0}
    recipe["techniques"] = [{**GRADUAL, "stages": 3}, {"name": "tests.recorder:RankDigest", "folder": str(tmp_path)}]
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = _train(path, "train.cpu=true", ddp=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["processes"] == 2
    a, b = (json.loads((tmp_path / f"digest-{rank}.json").read_text()) for rank in (0, 1))
    assert a == b, "every replica holds the same weights, including groups unfrozen during training"
    from transformers import AutoModel

    start = float(AutoModel.from_pretrained(tiny_bert).embeddings.word_embeddings.weight.double().sum())
    assert a["hf.bert.embeddings.word_embeddings.weight"] != start, "the last stage (embeddings) did train"
