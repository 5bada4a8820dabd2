"""Recipe probes: the LR range test (`honed lr-find`) and the batch-size search (`honed batch-find`)."""

from __future__ import annotations

import csv
import itertools
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from honed.cli import main
from honed.errors import HonedError
from honed.train import batch_find as bf
from honed.train.lr_find import build_parts, lr_find, plot, range_test, suggest
from tests.conftest import tiny_recipe


@pytest.fixture
def recipe(tiny_bert: str, text_csv: Path, tmp_path: Path) -> dict:
    return tiny_recipe(tiny_bert, text_csv, tmp_path / "run")


@pytest.fixture
def recipe_file(recipe: dict, tmp_path: Path) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _curve() -> tuple[list[float], list[float]]:
    """Flat, then falling fastest at 1e-3, then blowing up past 1e-1."""
    lrs = [10 ** (-6 + 0.1 * i) for i in range(71)]
    losses = [1.0 - 0.5 / (1 + math.exp(-4 * (math.log10(lr) + 3))) + max(0.0, math.log10(lr) + 1) ** 2 for lr in lrs]
    return lrs, losses


def test_suggestions_on_a_known_curve() -> None:
    lrs, losses = _curve()
    assert suggest(lrs, losses, "steep") == pytest.approx(1e-3, rel=0.3)
    lowest = lrs[losses.index(min(losses))]
    assert 1e-5 < suggest(lrs, losses, "valley") < lowest  # inside the fall, before the minimum


def test_valley_by_hand() -> None:
    """Longest falling run 3, 1, 0.5, 0.4, 0.3 ends at index 6 (length 5): fastai's start is 6 - 5 = 1,
    and the pick 1 + int(5/3) + int(5/6) = 2."""
    lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
    assert suggest(lrs, [3, 1, 2, 0.5, 0.4, 0.6, 0.3, 5], "valley") == 1e-3


def test_suggestion_ignores_nan_and_needs_two_points() -> None:
    lrs, losses = _curve()
    assert suggest(lrs, [*losses[:40], math.nan, 0.0], "steep") == suggest(lrs[:40], losses[:40], "steep")
    with pytest.raises(HonedError, match="diverged after 1 steps"):
        suggest([1e-5, 1e-4], [0.7, math.nan])


def test_range_test_grows_the_lr_and_leaves_the_model_alone(recipe: dict) -> None:
    parts = build_parts(recipe, None, {})
    before = {k: v.clone() for k, v in parts.model.state_dict().items()}
    lrs, raw, smoothed = range_test(parts, 1e-4, 100.0, 25)
    ratios = [b / a for a, b in itertools.pairwise(lrs)]
    assert lrs[0] == pytest.approx(1e-4) and all(r == pytest.approx(10 ** (6 / 24)) for r in ratios)
    assert len(raw) == len(smoothed) == len(lrs)
    assert smoothed[0] == pytest.approx(raw[0])  # bias correction: the first smoothed loss is the loss
    if len(lrs) < 25:  # stopped early: only when the loss ran away
        assert not math.isfinite(smoothed[-1]) or smoothed[-1] > 4 * min(smoothed[:-1])
    assert all(torch.equal(before[k], v) for k, v in parts.model.state_dict().items()), "works on a copy"
    calls, loss_fn = [], parts.loss_fn

    def nan_from_the_fourth(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return loss_fn(logits, labels) * (math.nan if len(calls) >= 4 else 1.0)

    parts.loss_fn = nan_from_the_fourth
    lrs, raw, smoothed = range_test(parts, 1e-4, 1e-3, 25)
    assert len(lrs) == 4 and math.isnan(smoothed[-1]), "a NaN loss ends the test"


def test_plot_survives_nan(tmp_path: Path) -> None:
    plot(tmp_path / "p.png", [1e-5, 1e-4, 1e-3, 1e-2], [0.7, 0.6, 0.65, math.nan], 1e-4, "valley")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_lr_find_writes_curve_and_plot(recipe: dict, tmp_path: Path) -> None:
    lrs, losses, lr = lr_find(recipe, start=1e-4, end=10.0, steps=15, quiet=True)
    assert lrs[0] <= lr <= lrs[-1] and len(losses) == len(lrs)
    with (tmp_path / "run" / "lr_find.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["lr"]) for r in rows] == pytest.approx(lrs)
    assert [float(r["smoothed_loss"]) for r in rows] == pytest.approx(losses)
    assert (tmp_path / "run" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["lr_find.csv", "lr_find.png"]


def test_cli_lr_find_prints_an_override_and_respects_overwrite(
    recipe_file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["lr-find", recipe_file, "--start", "1e-4", "--steps", "10", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"optim\.lr=\d\.\d\de[-+]\d\d", out[-1]), out
    assert any("valley method" in line for line in out)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds lr_find.csv; pass --overwrite" in err
    assert main([*argv, "--overwrite", "train.batch_size=4"]) == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--steps", "2"], "--steps: a range test needs at least 5 steps"),
        (["--start", "1", "--end", "0.1"], "--end: the last learning rate must be above --start"),
        (["--start", "0"], "--start: the first learning rate must be > 0"),
        (["optim.lrr=1"], "unknown key 'optim.lrr'"),
    ],
)
def test_cli_lr_find_bad_input(
    recipe_file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert main(["lr-find", recipe_file, "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "run").exists()


def test_sizes_and_effective_batch() -> None:
    assert bf.sizes(256) == [8, 16, 32, 64, 128, 256]
    assert bf.sizes(100) == [8, 16, 32, 64] and bf.sizes(5) == [5]
    assert bf.keep_effective(32, 8) == (8, 4)
    assert bf.keep_effective(32, 64) == (32, 1)
    assert bf.keep_effective(48, 32) == (24, 2)
    assert bf.keep_effective(7, 4) == (1, 7)


def test_batch_search_stops_at_out_of_memory(recipe: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    real = bf._train_step

    def step(model: torch.nn.Module, optimizer: object, parts: object, batch: dict) -> None:  # a full GPU's stand-in
        if len(batch["labels"]) >= 32:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(model, optimizer, parts, batch)

    monkeypatch.setattr(bf, "_train_step", step)
    parts = build_parts(recipe, None, {})
    trials = bf.measure(parts, bf.sizes(128), timed_steps=1)
    assert [(t.batch, t.fits) for t in trials] == [(8, True), (16, True), (32, False)]
    assert bf.choose(trials, "memory") == 16
    assert bf.choose(trials, "throughput") in (8, 16)
    with pytest.raises(HonedError, match="even a batch of 32 ran out of memory"):
        bf.measure(parts, [32, 64], timed_steps=1)


def test_cli_batch_find_on_cpu(recipe_file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch-find", recipe_file, "--max", "16", "--steps", "1", "--quiet", "train.batch_size=16"]) == 0
    out = capsys.readouterr().out
    assert "samples/s" in out and "best per-device batch (most samples/s)" in out
    assert re.search(
        r"^train\.batch_size=(16 train\.grad_accum_steps=1|8 train\.grad_accum_steps=2)$", out, re.MULTILINE
    ), out
    assert not (tmp_path / "run").exists(), "batch-find writes nothing"
    assert main(["batch-find", recipe_file, "--max", "0"]) == 2
    assert "--max: the largest batch to try must be >= 1" in capsys.readouterr().err
