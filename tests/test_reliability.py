"""Reliability under faults: signals stop at a safe point and resume, NaN steps are skipped up to a limit,
run folders are locked, full disks and damaged files are one line and lose nothing."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from honed.cli import main
from honed.train import checkpoint
from honed.train.numerics import Guard
from tests.conftest import REPO, tiny_recipe

RESULT_KEYS = ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "steps")


def _honed(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "honed.cli", *args, "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def _write(tmp_path: Path, name: str, tree: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _recipe(tiny_bert: str, text_csv: Path, tmp_path: Path, name: str, techniques: list[dict], **extra: object) -> Path:
    tree = tiny_recipe(tiny_bert, text_csv, tmp_path / name, train__batch_size=4, **extra)
    tree["techniques"], tree["report"] = techniques, {"enabled": False}
    return _write(tmp_path, name, tree)


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.mark.parametrize("name,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_signal_stops_at_the_step_with_a_checkpoint_and_resumes_identically(
    tiny_bert: str, text_csv: Path, tmp_path: Path, name: str, code: int
) -> None:
    (tmp_path / "fired").touch()
    straight = _recipe(tiny_bert, text_csv, tmp_path, "straight", [])
    assert _honed("train", str(straight)).returncode == 0
    signalled = _recipe(
        tiny_bert,
        text_csv,
        tmp_path,
        "signalled",
        [{"name": "tests.faults:SignalAtStep", "step": 5, "signal": name, "marker": str(tmp_path / "m")}],
    )
    first = _honed("train", str(signalled))
    assert first.returncode == code, first.stderr[-3000:]
    line = _one_line(first.stderr)
    assert f"stopped by {name} at step 5" in line and "--resume" in line
    assert checkpoint.load(tmp_path / "signalled/checkpoints/last.pt")["progress"]["step"] == 5
    resumed = _honed("train", str(signalled), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _results(tmp_path / "straight"), _results(tmp_path / "signalled")
    assert {k: a[k] for k in RESULT_KEYS} == {k: b[k] for k in RESULT_KEYS}


def test_second_ctrl_c_stops_at_once(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    path = _recipe(
        tiny_bert,
        text_csv,
        tmp_path,
        "twice",
        [
            {
                "name": "tests.faults:SignalAtStep",
                "step": 5,
                "signal": "SIGINT",
                "times": 2,
                "marker": str(tmp_path / "m"),
            }
        ],
        train__checkpoint_every_steps=2,
    )
    first = _honed("train", str(path))
    assert first.returncode == 130 and _one_line(first.stderr) == "honed: interrupted"
    assert checkpoint.load(tmp_path / "twice/checkpoints/last.pt")["progress"]["step"] == 4, (
        "no checkpoint after the 2nd Ctrl-C"
    )


def test_interrupted_ensemble_keeps_finished_members(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    tree = tiny_recipe(tiny_bert, text_csv, tmp_path / "ens", train__batch_size=4, train__epochs=1)
    tree["report"] = {"enabled": False}
    kill = {"name": "tests.faults:SignalAtStep", "step": 3, "marker": str(tmp_path / "m")}
    tree["ensemble"] = {
        "method": "voting",
        "members": [{"name": "a", "overrides": {}}, {"name": "b", "overrides": {"seed": 1, "techniques": [kill]}}],
    }
    path = _write(tmp_path, "ens", tree)
    first = _honed("ensemble", str(path))
    assert first.returncode == 143 and "re-run the same command" in _one_line(first.stderr), first.stderr[-3000:]
    done = tmp_path / "ens/members/a/results.json"
    stamp = done.stat().st_mtime_ns
    second = _honed("ensemble", str(path))
    assert second.returncode == 0, second.stderr[-3000:]
    assert done.stat().st_mtime_ns == stamp, "member a was trained again"
    assert (tmp_path / "ens/ensemble.json").is_file() and _results(tmp_path / "ens/members/b")["steps"] == 12


def test_interrupted_tune_requeues_the_running_trial(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    import optuna

    tree = tiny_recipe(tiny_bert, text_csv, tmp_path / "study", train__batch_size=4, train__epochs=1)
    tree["report"] = {"enabled": False}
    tree["techniques"] = [{"name": "tests.faults:SignalAtStep", "step": 3, "marker": str(tmp_path / "m")}]
    tree["search"] = {
        "params": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "grid": [1e-3, 1e-2, 3e-3]}},
        "sampler": "grid",
        "pruner": "none",
    }
    path = _write(tmp_path, "study", tree)
    first = _honed("tune", str(path))
    assert first.returncode == 143, first.stderr[-3000:]
    assert "re-run the same command" in first.stderr.strip().splitlines()[-1]
    second = _honed("tune", str(path))
    assert second.returncode == 0, second.stderr[-3000:]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'study' / 'study.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["optim.lr"] for t in complete) == [1e-3, 3e-3, 1e-2]


def test_one_nan_step_is_skipped_and_the_weights_stay_finite(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    path = _recipe(tiny_bert, text_csv, tmp_path, "nan", [{"name": "tests.faults:NanLossAtSteps", "steps": [3]}])
    assert main(["train", str(path), "--quiet"]) == 0
    assert _results(tmp_path / "nan")["bad_steps"] == 1
    weights = checkpoint.load(tmp_path / "nan/checkpoints/last.pt")["model"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_too_many_nan_steps_stop_with_one_line_keeping_the_checkpoint(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _recipe(
        tiny_bert,
        text_csv,
        tmp_path,
        "nans",
        [{"name": "tests.faults:NanLossAtSteps", "steps": list(range(5, 40))}],
        train__checkpoint_every_steps=2,
        train__max_bad_steps=2,
    )
    assert main(["train", str(path), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "training stopped at step 7" in line and "learning rate" in line and "max_bad_steps=2" in line
    saved = checkpoint.load(tmp_path / "nans/checkpoints/last.pt")
    assert saved["progress"]["step"] == 6 and all(torch.isfinite(v).all() for v in saved["model"].values())


def test_fp16_scaler_skips_are_counted_not_faults() -> None:
    state = SimpleNamespace(
        recipe=SimpleNamespace(train=SimpleNamespace(max_bad_steps=0)),
        bad_steps=0,
        scaler_skips=0,
        accelerator=SimpleNamespace(scaler=object(), optimizer_step_was_skipped=True),
        step=0,
        run_dir=Path("."),
    )
    guard = Guard(state)
    assert guard.step_is_finite(torch.tensor(float("inf")))  # the scaler decides, and lowers its scale
    guard.after_step()
    assert state.scaler_skips == 1 and state.bad_steps == 0
    assert "fp16 overflow" in str(guard.fault("x"))


def test_a_running_folder_is_locked_and_a_stale_lock_is_taken_over(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _recipe(tiny_bert, text_csv, tmp_path, "locked", [], train__epochs=1)
    folder = tmp_path / "locked"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from honed.rundir import "
            "lock_run_dir; p = Path(sys.argv[1]); p.mkdir(); lock_run_dir(p); print('ok', flush=True); "
            "time.sleep(60)",
            str(folder),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        for extra in ([], ["--overwrite"], ["--resume"]):
            assert main(["train", str(path), "--quiet", *extra]) == 2
            line = _one_line(capsys.readouterr().err)
            assert f"is in use by process {holder.pid}" in line, line
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", str(path), "--quiet", "--overwrite"]) == 0, "the dead holder's lock is taken over"


def test_a_full_disk_keeps_the_previous_checkpoint(
    tiny_bert: str, text_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _recipe(tiny_bert, text_csv, tmp_path, "full", [], train__checkpoint_every_steps=3)
    calls = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) >= 4:  # rng + last.pt at step 3 succeed; the step-6 last.pt meets a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    assert main(["train", str(path), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "no space left" in line and " MB, " in line and "needs" in line and "previous last.pt is intact" in line
    folder = tmp_path / "full/checkpoints"
    assert checkpoint.load(folder / "last.pt")["progress"]["step"] == 3
    assert not [p for p in folder.iterdir() if ".tmp" in p.name], "no half-written temp file is left"


def test_a_damaged_last_checkpoint_resumes_from_the_previous_one(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fired").touch()
    straight = _recipe(tiny_bert, text_csv, tmp_path, "straight", [], train__checkpoint_every_steps=3)
    assert _honed("train", str(straight)).returncode == 0
    killed = _recipe(
        tiny_bert,
        text_csv,
        tmp_path,
        "killed",
        [{"name": "tests.killer:KillAtStep", "step": 7, "marker": str(tmp_path / "k")}],
        train__checkpoint_every_steps=3,
    )
    assert _honed("train", str(killed)).returncode == -9
    last = tmp_path / "killed/checkpoints/last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # cut short
    assert checkpoint.load(tmp_path / "killed/checkpoints/last.prev.pt")["progress"]["step"] == 3
    resumed = _honed("train", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _results(tmp_path / "straight"), _results(tmp_path / "killed")
    assert {k: a[k] for k in RESULT_KEYS} == {k: b[k] for k in RESULT_KEYS}
    checkpoint.previous(last).unlink()
    last.write_bytes(b"garbage")
    (tmp_path / "killed/results.json").unlink()
    assert main(["train", str(killed), "--quiet", "--resume"]) == 2
    assert "checkpoints/last.pt' is damaged or truncated" in _one_line(capsys.readouterr().err)


@pytest.fixture(scope="module")
def trained(tiny_bert: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import text_rows

    tmp = tmp_path_factory.mktemp("trained")
    text_rows(40).to_csv(tmp / "rows.csv", index=False)
    tree = tiny_recipe(tiny_bert, tmp / "rows.csv", tmp / "run", train__epochs=1)
    tree["report"] = {"enabled": False}
    assert main(["train", str(_write(tmp, "run", tree)), "--quiet"]) == 0
    return tmp


@pytest.mark.parametrize(
    "name,damage", [("model.safetensors", "truncate"), ("labels.json", "garbage"), ("honed.json", "garbage")]
)
def test_predict_on_a_damaged_model_folder_is_one_line(
    trained: Path, tmp_path: Path, name: str, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained / "run" / "model", model)
    target = model / name
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2] if damage == "truncate" else b"{not json")
    assert main(["predict", str(model), str(trained / "rows.csv"), "-o", str(tmp_path / "p.csv")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert name in line and "damaged" in line, line
    assert not (tmp_path / "p.csv").exists()


def test_model_folders_load_without_running_code() -> None:
    """No trust_remote_code, and every torch.load reads tensors only (weights_only=True)."""
    for path in (REPO / "honed").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "trust_remote_code=True" not in text, path
        for line in (line for line in text.splitlines() if "torch.load(" in line):
            assert "weights_only=True" in line, f"{path}: {line.strip()}"


def test_a_stale_lock_file_without_a_holder_does_not_block(tmp_path: Path) -> None:
    from honed.rundir import check_run_dir, close_log, lock_run_dir

    folder = tmp_path / "stale"
    folder.mkdir()
    (folder / ".lock").write_text("process 999999 on elsewhere\n")
    check_run_dir(folder, overwrite=False, resume=False)  # only .lock: an empty folder
    lock_run_dir(folder)
    assert str(os.getpid()) in (folder / ".lock").read_text()
    close_log()
