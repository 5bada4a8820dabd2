"""Error-analysis report: the pure core on synthetic predictions, temperature scaling, the report a
tiny fit writes, `honed report`, `evaluate --report`, `predict --calibrated`, bad inputs, and the
headless-Chromium render check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import precision_recall_fscore_support

import honed
from honed.cli import main
from honed.evaluate.calibration import expected_calibration_error, fit_temperature
from honed.evaluate.report import build_report, write_report
from honed.inference import predict_frame
from tests.conftest import REPO, text_rows, tiny_recipe


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert expected in err, err


def _synthetic(n: int = 240, k: int = 3, sharpness: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of an over-confident classifier: classes drawn from softmax(base), so the base logits
    are calibrated by construction, and the returned logits are base x `sharpness`."""
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=1.5, size=(n, k))
    probs = _softmax(base)
    y = np.array([rng.choice(k, p=p / p.sum()) for p in probs])
    return base * sharpness, y


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.as_tensor(logits), dim=-1).numpy()


def _frame(n: int) -> pd.DataFrame:
    texts = [f"<script>alert({i})</script> review {'word ' * (i % 30)}" for i in range(n)]
    return pd.DataFrame(
        {"x": texts, "group": [f"movie{i % 4}" for i in range(n)], "meta:year": [2000 + i % 3 for i in range(n)]},
        index=np.arange(n) + 100,
    )


def test_report_numbers_match_sklearn_and_html_is_self_contained(tmp_path: Path) -> None:
    logits, y = _synthetic()
    probs = _softmax(logits)
    report = build_report(
        labels=["a", "b", "c"],
        y_true=y,
        probs=probs,
        frame=_frame(len(y)),
        slices=["year"],
        top_k=5,
        history=[{"epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "val_accuracy": 0.5, "lr": 1e-4}],
    )
    _, _, f1, support = precision_recall_fscore_support(y, probs.argmax(1), zero_division=0)
    assert [c["f1"] for c in report["per_class"]] == pytest.approx(f1.tolist())
    assert [c["support"] for c in report["per_class"]] == support.tolist()
    counts = np.array(report["confusion"]["counts"])
    assert counts.sum() == len(y) and np.trace(counts) == (probs.argmax(1) == y).sum()
    assert np.array(report["confusion"]["normalised"]).sum(axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    losses = [e["loss"] for e in report["top_losses"]]
    assert len(losses) == 5 and losses == sorted(losses, reverse=True)
    assert report["top_losses"][0]["row"] >= 100, "examples name the source row, not the position"
    pair = report["confused_pairs"][0]
    assert pair["count"] == max(counts[t, p] for t in range(3) for p in range(3) if t != p)
    assert {s["column"] for s in report["slices"]} == {"text length", "group", "year"}
    assert sum(r["rows"] for r in report["slices"][2]["rows"]) == len(y)
    json_path, html_path = write_report(tmp_path, report)
    html = html_path.read_text(encoding="utf-8")
    assert "<script" not in html and "&lt;script&gt;" in html, "input text is escaped, never interpreted"
    assert "http://" not in html and "https://" not in html, "no external URLs"
    assert html.count("data:image/png;base64,") >= 3  # confusion, reliability, curves
    saved = json.loads(json_path.read_text(encoding="utf-8"))
    assert saved["summary"]["accuracy"] == pytest.approx(report["summary"]["accuracy"])
    assert f"{report['summary']['accuracy']:.4f}" in html, "the page shows the JSON's numbers"


def test_temperature_scaling_undoes_overconfidence() -> None:
    logits, y = _synthetic(n=2000, sharpness=3.0, seed=1)
    temperature = fit_temperature(logits, y)
    assert temperature == pytest.approx(3.0, rel=0.15)
    before = expected_calibration_error(_softmax(logits), y)
    after = expected_calibration_error(_softmax(logits / temperature), y)
    assert after < before / 2
    assert (_softmax(logits / temperature).argmax(1) == logits.argmax(1)).all(), "scaling never changes the prediction"


def test_report_from_probabilities_only_with_image_arrays(tmp_path: Path) -> None:
    """What an ensemble passes: averaged probabilities, no logits; image inputs get thumbnails in the HTML only."""
    logits, y = _synthetic(n=40)
    val_logits, val_y = _synthetic(n=60, seed=3)
    images = [np.full((8, 8), i * 6, dtype=np.uint8) for i in range(40)]
    report = build_report(
        labels=["a", "b", "c"],
        y_true=y,
        probs=_softmax(logits),
        frame=pd.DataFrame({"x": images}),
        val_logits=val_logits,
        val_labels=val_y,
        top_k=3,
    )
    assert report["calibration"]["temperature"] > 1.5 and report["calibration"]["fitted_on"] == "val"
    assert not any(s["column"] == "text length" for s in report["slices"])
    assert "thumbnail" in report["top_losses"][0]
    json_path, html_path = write_report(tmp_path, report)
    assert "thumbnail" not in json_path.read_text(encoding="utf-8")
    assert html_path.read_text(encoding="utf-8").count('class="thumb"') >= 3


def test_report_rejects_mismatched_inputs() -> None:
    logits, y = _synthetic(n=10)
    with pytest.raises(honed.HonedError, match="must match"):
        build_report(labels=["a", "b", "c"], y_true=y[:5], probs=_softmax(logits), frame=_frame(10))
    with pytest.raises(honed.HonedError, match="report.slices: no column 'director'"):
        build_report(labels=["a", "b", "c"], y_true=y, probs=_softmax(logits), frame=_frame(10), slices=["director"])


@pytest.fixture(scope="module")
def run(tiny_bert: str, tmp_path_factory: pytest.TempPathFactory) -> honed.fit:
    """One tiny fit with a metadata slice and text normalisation, shared by the tests below."""
    folder = tmp_path_factory.mktemp("report-run")
    data = text_rows(120)
    data["year"] = [2000 + i % 5 for i in range(len(data))]
    data.loc[3, "text"] = "<b>A  WONDERFUL</b> film"
    data.loc[5, "text"] = "long " * 100
    data.to_csv(folder / "reviews.csv", index=False)
    recipe = tiny_recipe(
        tiny_bert, folder / "reviews.csv", folder / "run", train__epochs=2, report={"slices": ["year"], "top_k": 7}
    )
    recipe["data"].update(group_column="movie", preprocess={"lower": True, "strip_html": True, "max_chars": 300})
    return honed.fit(recipe, quiet=True)


def test_fit_writes_report_and_calibration(run: honed.fit) -> None:
    report = json.loads((run.run_dir / "report.json").read_text(encoding="utf-8"))
    assert report["split"] == "test"
    assert report["summary"]["accuracy"] == pytest.approx(run.metrics["test_accuracy"], abs=1e-6), (
        "the report reuses the final logits"
    )
    assert len(report["top_losses"]) == 7
    assert [s["column"] for s in report["slices"]] == ["text length", "movie", "year"]
    assert set(report["top_losses"][0]["meta"]) == {"movie", "year"}
    assert len(report["history"]) == 2 and "val_loss" in report["history"][0]
    saved = json.loads((run.model_dir / "calibration.json").read_text(encoding="utf-8"))
    assert saved["temperature"] == pytest.approx(report["calibration"]["temperature"]) and saved["fitted_on"] == "val"
    assert (run.run_dir / "report.html").stat().st_size > 10_000
    note = "preprocess data.train: max_chars=300 dropped 1 of 120 rows"
    assert report["notes"] == [note] and note in (run.run_dir / "log.txt").read_text(encoding="utf-8")


def test_predict_calibrated_and_normalised(run: honed.fit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = ["A   WONDERFUL film", "a wonderful film", "<i>a dull</i> mess", "a dull mess"]
    plain = predict_frame(run.model_dir, texts)
    assert plain.loc[2, "prob_pos"] == pytest.approx(plain.loc[3, "prob_pos"], abs=1e-6), (
        "predict strips HTML as training did"
    )
    assert plain.loc[0, "input"] == "A   WONDERFUL film", "the output shows the user's own input"
    calibrated = predict_frame(run.model_dir, texts, calibrated=True)
    assert (calibrated["predicted"] == plain["predicted"]).all()
    temperature = json.loads((run.model_dir / "calibration.json").read_text())["temperature"]
    if abs(temperature - 1.0) > 1e-3:
        assert not np.allclose(calibrated["prob_pos"], plain["prob_pos"])
    bare = tmp_path / "model"
    shutil.copytree(run.model_dir, bare)
    (bare / "calibration.json").unlink()
    csv = tmp_path / "in.csv"
    text_rows(4).to_csv(csv, index=False)
    _fails(
        ["predict", str(bare), str(csv), "--calibrated"], capsys, "was saved without calibration (no calibration.json)"
    )


def test_report_command_and_evaluate_report(run: honed.fit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = json.loads((run.run_dir / "report.json").read_text(encoding="utf-8"))
    assert main(["report", str(run.run_dir), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "report.json").read_text(encoding="utf-8"))
    assert again["summary"]["accuracy"] == pytest.approx(before["summary"]["accuracy"])
    assert again["calibration"]["ece"] == pytest.approx(before["calibration"]["ece"], abs=1e-5)
    _fails(
        ["report", str(run.run_dir), "--out", str(tmp_path / "again")],
        capsys,
        "already holds a report.html; pass --overwrite",
    )
    holdout = tmp_path / "holdout.csv"
    frame = text_rows(30, seed=5)
    frame["year"] = 2001
    frame.to_csv(holdout, index=False)
    assert main(["evaluate", str(run.model_dir), str(holdout), "--report", str(tmp_path / "ev")]) == 0
    evaluated = json.loads((tmp_path / "ev" / "report.json").read_text(encoding="utf-8"))
    assert evaluated["summary"]["rows"] == 30 and evaluated["calibration"]["temperature"] is not None


def test_bad_inputs(run: honed.fit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["report", str(tmp_path)], capsys, "is not a run folder (no recipe.yaml)")
    _fails(
        ["report", str(run.run_dir), "report.slices=[director]", "--out", str(tmp_path / "r")],
        capsys,
        "no column 'director' (set by report.slices)",
    )
    assert not (tmp_path / "r").exists()
    in_memory = tmp_path / "in-memory-run"
    shutil.copytree(run.run_dir, in_memory, ignore=shutil.ignore_patterns("checkpoints"))
    tree = yaml.safe_load((in_memory / "recipe.yaml").read_text(encoding="utf-8"))
    tree["data"]["train"] = None
    (in_memory / "recipe.yaml").write_text(yaml.safe_dump(tree), encoding="utf-8")
    _fails(["report", str(in_memory)], capsys, "was trained on in-memory data")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((run.run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    _fails(
        ["train", str(recipe), "data.preprocess.lowercase=true", "--quiet"],
        capsys,
        "unknown key 'data.preprocess.lowercase'; did you mean 'data.preprocess.lower'?",
    )


@pytest.mark.skipif(
    shutil.which("chromium") is None
    and shutil.which("chromium-browser") is None
    and not os.environ.get("HONED_REQUIRE_CHROMIUM"),
    reason="chromium not installed (apt-get install chromium): report render check skipped",
)
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    """Runs in CI (.ci/run sets HONED_REQUIRE_CHROMIUM, so a missing browser fails instead of skipping)."""
    logits, y = _synthetic(n=60)
    _, html = write_report(
        tmp_path, build_report(labels=["a", "b", "c"], y_true=y, probs=_softmax(logits), frame=_frame(60))
    )
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "check_report_render.sh"), str(html), str(tmp_path / "shot.png")],
        check=False,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "shot.png").stat().st_size > 10_000
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "check_report_render.sh"), str(blank), str(tmp_path / "blank.png")],
        check=False,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 1, "a blank page fails the check"


def test_calibration_scored_on_its_own_val_rows_says_so(run: honed.fit) -> None:
    """With no test split the report analyses val, the rows the temperature was fitted on: flagged as optimistic."""
    from honed.evaluate.run_report import report_from_outputs

    recipe = honed.load_recipe(run.recipe.model_dump(mode="json"), {"report.slices": [], "data.group_column": None})
    frame = pd.DataFrame({"x": [f"review {i}" for i in range(40)], "label": ["neg", "pos"] * 20})
    logits = torch.randn(40, 2, generator=torch.Generator().manual_seed(0)) * 3
    y = torch.tensor([0, 1] * 20)
    report = report_from_outputs(recipe, run.labels, {"val": frame}, {"val": (logits, y)}, [], None)
    assert report["split"] == "val" and "optimistic" in report["calibration"]["fitted_on"]
