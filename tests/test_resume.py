"""A run killed with SIGKILL mid-epoch resumes from its last checkpoint to the same final metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from honed.cli import main
from tests.conftest import REPO, tiny_recipe


def _train(recipe_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "honed.cli", "train", str(recipe_path), "--quiet", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _recipe(tiny_bert: str, text_csv: Path, tmp_path: Path, name: str, marker: Path) -> Path:
    recipe = tiny_recipe(tiny_bert, text_csv, tmp_path / name, train__batch_size=4, train__checkpoint_every_steps=3)
    recipe["techniques"] = [{"name": "tests.killer:KillAtStep", "step": 7, "marker": str(marker)}]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_resume_after_sigkill_matches_uninterrupted(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = tmp_path / "already-killed"
    done.touch()
    straight = _recipe(tiny_bert, text_csv, tmp_path, "straight", done)
    assert _train(straight).returncode == 0

    killed = _recipe(tiny_bert, text_csv, tmp_path, "killed", tmp_path / "kill-marker")
    first = _train(killed)
    assert first.returncode == -9, first.stderr[-2000:]
    saved = json.loads(
        json.dumps(__import__("torch").load(tmp_path / "killed/checkpoints/last.pt", weights_only=True)["progress"])
    )
    assert saved["step"] == 6 and saved["batch_in_epoch"] == 6, "last checkpoint is mid-epoch, before the kill"
    assert main(["train", str(killed), "--quiet"]) == 2, "a plain re-run must not overwrite"
    assert "already exists" in capsys.readouterr().err
    resumed = _train(killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    a = json.loads((tmp_path / "straight/results.json").read_text())
    b = json.loads((tmp_path / "killed/results.json").read_text())
    for key in ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "steps"):
        assert a[key] == b[key], key


def test_resume_with_other_classes_is_refused(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _recipe(tiny_bert, text_csv, tmp_path, "run", tmp_path / "unused")
    recipe = yaml.safe_load(path.read_text())
    recipe["techniques"], recipe["train"]["epochs"] = [], 1
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path), "--quiet"]) == 0
    capsys.readouterr()
    three = tmp_path / "three.csv"
    rows = [f"text {i},{['a', 'b', 'c'][i % 3]}" for i in range(60)]
    three.write_text("text,label\n" + "\n".join(rows) + "\n")
    assert main(["train", str(path), "--quiet", "--resume", f"data.train={three}"]) == 2
    err = capsys.readouterr().err
    assert "trained on 2 classes" in err and "now has 3" in err
    assert len(err.strip().splitlines()) == 1
    for changed, what in (("techniques=[{name: ema}]", "other techniques"), ("model.keep_layers=1", "another model")):
        assert main(["train", str(path), "--quiet", "--resume", changed]) == 2
        err = capsys.readouterr().err
        assert what in err and len(err.strip().splitlines()) == 1, err


def test_resume_in_a_later_epoch_reshuffles_like_uninterrupted(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    """A kill in epoch 2 (12 steps per epoch) resumes at step 15; the epoch-2 shuffle must be epoch 2's,
    so the last checkpoint's weights equal the uninterrupted run's exactly."""
    import torch

    (tmp_path / "done").touch()
    finals = {}
    for name, marker in (("straight", tmp_path / "done"), ("killed", tmp_path / "kill")):
        recipe = tiny_recipe(tiny_bert, text_csv, tmp_path / name, train__batch_size=4, train__checkpoint_every_steps=5)
        recipe["techniques"] = [{"name": "tests.killer:KillAtStep", "step": 17, "marker": str(marker)}]
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        first = _train(path)
        if name == "killed":
            assert first.returncode == -9, first.stderr[-2000:]
            first = _train(path, "--resume")
        assert first.returncode == 0, first.stderr[-2000:]
        finals[name] = torch.load(tmp_path / name / "checkpoints/last.pt", weights_only=True)["model"]
    for key, value in finals["straight"].items():
        assert torch.equal(value, finals["killed"][key]), key
