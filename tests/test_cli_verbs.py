"""The CLI table: every verb answers --help with the shared flags it declares, a usage error is one
line and exit 2, and `--output DIR` is the run folder of train, lr-find and ensemble."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from honed.cli import VERBS, main
from tests.conftest import tiny_recipe

REPO = Path(__file__).resolve().parent.parent

# verb -> (positionals that satisfy it, the shared flags it declares besides --debug and -h)
SHARED: dict[str, tuple[list[str], set[str]]] = {
    "train": (["r.yaml"], {"key=value", "--output", "--overwrite", "--quiet"}),
    "evaluate": (["model", "d.csv"], {"key=value", "--overwrite"}),
    "predict": (["model", "d.csv"], {"key=value", "--output", "--overwrite"}),
    "report": (["run"], {"key=value", "--output", "--out", "--overwrite"}),
    "lr-find": (["r.yaml"], {"key=value", "--output", "--overwrite", "--quiet"}),
    "batch-find": (["r.yaml"], {"key=value", "--quiet"}),
    "audit": (["r.yaml"], {"key=value", "--output", "--overwrite", "--quiet"}),
    "clean": (["r.yaml"], {"key=value", "--output", "--overwrite", "--quiet"}),
    "ensemble": (["r.yaml"], {"key=value", "--output", "--overwrite", "--quiet"}),
    "tune": (["r.yaml"], {"key=value", "--output", "--quiet"}),
    "climb": (["r.yaml"], {"key=value", "--output", "--quiet"}),
    "cv": (["r.yaml"], {"key=value", "--output", "--overwrite", "--quiet"}),
    "prune": (["model"], {"--output", "--overwrite", "--quiet"}),
    "export": (["model"], {"--output", "--overwrite", "--quiet"}),
    "pretrain": (["r.yaml"], {"key=value", "--output", "--overwrite", "--quiet"}),
    "info": (["folder"], set()),
    "recipes": ([], set()),
}


def _verb_names() -> set[str]:
    subparsers = argparse.ArgumentParser(prog="honed").add_subparsers()
    return {verb.add_parser(subparsers).prog.split()[-1] for verb in VERBS}


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_the_table_lists_every_verb_once() -> None:
    assert _verb_names() == set(SHARED)
    assert len(VERBS) == len(SHARED)


@pytest.mark.parametrize("verb", sorted(SHARED))
def test_help_exits_0_and_names_the_shared_flags(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([verb, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for flag in SHARED[verb][1] | {"--debug"}:
        assert flag in text, f"`honed {verb} --help` does not mention {flag}"
    if "--output" in SHARED[verb][1]:
        assert "-o " in text, "-o is --output's short form in every verb"


@pytest.mark.parametrize("verb", sorted(SHARED))
def test_an_unknown_flag_is_one_line_and_exit_2(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = _one_line_exit_2([verb, *SHARED[verb][0], "--no-such-flag"], capsys)
    assert f"honed {verb}: error: unrecognized arguments: --no-such-flag" in err


def test_other_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert "required: recipe" in _one_line_exit_2(["train"], capsys)
    assert "invalid choice" in _one_line_exit_2(["lr-find", "r.yaml", "--method", "flat"], capsys)
    assert "invalid choice" in _one_line_exit_2(["no-such-verb"], capsys)
    assert "unrecognized arguments: stray" in _one_line_exit_2(["recipes", "stray"], capsys)


def test_debug_is_accepted_before_and_after_the_verb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from honed import HonedError

    missing = str(tmp_path / "missing.yaml")
    assert main(["train", missing]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    for argv in (["--debug", "train", missing], ["train", missing, "--debug"]):
        with pytest.raises(HonedError, match="not found"):
            main(argv)


def test_python_dash_m_runs_the_table() -> None:
    """`python -m honed.cli` (accelerate launch / torchrun use it): a usage error is still one line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "honed.cli", "train", "r.yaml", "--no-such-flag"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "honed train: error: unrecognized arguments: --no-such-flag (see `honed train --help`)"
    ]


@pytest.fixture
def occupied(tmp_path: Path) -> Path:
    """A folder holding an earlier run's files: a verb writing there without --overwrite must refuse, naming it."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    for name in ("results.json", "lr_find.csv", "ensemble.json"):
        (folder / name).write_text("{}")
    return folder


def _recipe_file(tmp_path: Path, tiny_bert: str, text_csv: Path, **extra: object) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tiny_bert, text_csv, tmp_path / "run", train__epochs=1, **extra)))
    return str(path)


@pytest.mark.parametrize("verb", ["train", "lr-find", "ensemble"])
def test_output_is_the_run_folder(
    verb: str, tiny_bert: str, text_csv: Path, tmp_path: Path, occupied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--output DIR replaces the recipe's output_dir: the verb finds DIR's earlier files (and refuses to
    replace them without --overwrite) instead of writing to the recipe's own run folder."""
    members = {"method": "voting", "members": [{"name": "a"}, {"name": "b", "overrides": {"seed": 1}}]}
    recipe = _recipe_file(tmp_path, tiny_bert, text_csv, ensemble=members)
    before = sorted(p.name for p in occupied.iterdir())
    assert main([verb, recipe, "--output", str(occupied), "--quiet", "train.batch_size=4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(occupied) in err and "--overwrite" in err, err
    assert sorted(p.name for p in occupied.iterdir()) == before
    assert not (tmp_path / "run").exists(), "the recipe's output_dir was not used"
