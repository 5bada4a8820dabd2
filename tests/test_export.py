"""`honed export`: ONNX and TorchScript round trips (fp32 and int8) of a tiny BERT and a tiny CNN agree
with PyTorch, `honed predict` reads the exported folder, and every bad input is one line, exit 2, with
nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

import honed
from honed.cli import main
from honed.errors import HonedError
from honed.export import EXPORTERS, export_model
from honed.export.formats import TorchScriptExporter
from honed.inference import ExportedPredictor, load_predictor, predict_frame
from tests.conftest import text_rows, tiny_recipe
from tests.test_images import write_images, write_recipe

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def text_model(tiny_bert: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT fine-tuned a few steps on 80 short reviews (val/test carved from them)."""
    root = tmp_path_factory.mktemp("export-text")
    text_rows(80).to_csv(root / "reviews.csv", index=False)
    run = honed.fit(tiny_recipe(tiny_bert, root / "reviews.csv", root / "run"), quiet=True)
    return run.model_dir


@pytest.fixture(scope="module")
def image_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight mobilenet_v3_small trained one epoch on a dozen 16 px images."""
    import torchvision

    root = tmp_path_factory.mktemp("export-image")
    torch.manual_seed(0)
    weights = root / "mobilenet_v3_small.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), weights)
    write_images(root / "images")
    run = honed.fit(write_recipe(root, weights, root / "images"), quiet=True)
    return run.model_dir


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
@pytest.mark.parametrize("quantize", [None, "int8"])
def test_text_export_round_trip_agrees_with_pytorch(
    text_model: Path, tmp_path: Path, format: str, quantize: str | None
) -> None:
    out = tmp_path / "exported"
    result = export_model(text_model, format, quantize, out, quiet=True)
    checks = result["checks"]
    assert checks["split"] == "test" and checks["rows"] == 16 and checks["label_agreement"] >= 0.995
    assert checks["max_abs_prob_diff"] < (0.05 if quantize else 1e-4), checks
    meta = json.loads((out / "export.json").read_text())
    assert meta["format"] == format and meta["quantized"] == quantize and meta["checks"] == checks
    assert meta["inputs"][0] == "input_ids" and meta["dynamic_axes"]["input_ids"] == {"0": "batch", "1": "sequence"}
    for name in ("labels.json", "recipe.yaml", "tokenizer.json", "export_report.json", meta["file"]):
        assert (out / name).is_file(), name
    for side in ("before", "after"):
        for key in ("folder_bytes", "model_bytes", "latency_ms_batch1", "latency_ms_batch32", "accuracy"):
            assert result[side][key] > 0 or key == "accuracy", (side, key)
    assert json.loads((out / "export_report.json").read_text()) == result

    reviews = pd.DataFrame({"text": ["a wonderful, moving film", "a dull, boring mess and a waste of time"] * 20})
    predictor = load_predictor(out)
    assert isinstance(predictor, ExportedPredictor)
    exported, original = predict_frame(out, reviews), predict_frame(text_model, reviews)
    assert list(exported["predicted"]) == list(original["predicted"])
    np.testing.assert_allclose(
        exported[["prob_neg", "prob_pos"]], original[["prob_neg", "prob_pos"]], atol=0.05 if quantize else 1e-4
    )


def test_int8_shrinks_the_linear_layers(text_model: Path, tmp_path: Path) -> None:
    fp32 = export_model(text_model, "onnx", None, tmp_path / "fp32", quiet=True)
    int8 = export_model(text_model, "onnx", "int8", tmp_path / "int8", quiet=True)
    assert int8["after"]["model_bytes"] < fp32["after"]["model_bytes"]
    assert not (tmp_path / "int8" / "model.fp32.onnx").exists()


@pytest.mark.parametrize("format,quantize", [("onnx", None), ("torchscript", "int8")])
def test_image_export_round_trip(image_model: Path, tmp_path: Path, format: str, quantize: str | None) -> None:
    out = tmp_path / "exported"
    result = export_model(image_model, format, quantize, out, quiet=True)
    assert result["checks"]["label_agreement"] >= 0.995 and result["checks"]["max_abs_prob_diff"] < 0.05
    meta = json.loads((out / "export.json").read_text())
    assert meta["inputs"] == ["pixel_values"] and meta["preprocess"] == "image" and len(meta["mean"]) == 3
    folder = image_model.parent.parent / "images"
    exported, original = predict_frame(out, folder), predict_frame(image_model, folder)
    assert list(exported["predicted"]) == list(original["predicted"])
    np.testing.assert_allclose(exported[["prob_dark", "prob_light"]], original[["prob_dark", "prob_light"]], atol=0.05)


def test_cli_export_then_predict(text_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-export"
    assert main(["export", str(text_model.parent), "--format", "torchscript", "--output", str(out), "--quiet"]) == 0
    data = tmp_path / "reviews.csv"
    pd.DataFrame({"text": ["brilliant and funny", "awful and tedious", "a joy to watch"]}).to_csv(data, index=False)
    predictions = tmp_path / "predictions.csv"
    assert main(["predict", str(out), str(data), "-o", str(predictions)]) == 0
    assert main(["predict", str(text_model), str(data), "-o", str(tmp_path / "original.csv")]) == 0
    exported, original = pd.read_csv(predictions), pd.read_csv(tmp_path / "original.csv")
    assert list(exported["predicted"]) == list(original["predicted"])


def test_default_output_sits_beside_the_model(text_model: Path) -> None:
    result = export_model(text_model, "onnx", None, quiet=True, max_rows=4)
    assert Path(result["output"]) == text_model.parent / "export-onnx" and result["checks"]["rows"] == 4


@EXPORTERS.register("negated")
class NegatedExporter(TorchScriptExporter):
    """A deliberately wrong exporter for the refusal test: its file returns the negated logits."""

    def write(
        self,
        model: nn.Module,
        example: tuple[torch.Tensor, ...],
        names: list[str],
        axes: dict[str, dict[int, str]],
        path: Path,
        quantize: str | None,
    ) -> None:
        super().write(Negate(model), example, names, axes, path, quantize)


class Negate(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return -self.model(**inputs)


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def test_disagreeing_export_is_refused_and_nothing_written(
    text_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(HonedError, match=r"export refused: .* agree with PyTorch on \d+\.\d+% .*max \|probability"):
        export_model(text_model, "negated", None, tmp_path / "bad", quiet=True)
    assert not (tmp_path / "bad").exists()
    existing = tmp_path / "kept"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    code, err = _run_cli(["export", str(text_model), "--format", "negated", "-o", str(existing), "--overwrite"], capsys)
    assert code == 2 and err.count("\n") == 0 and "export refused" in err and "nothing was written" in err
    assert (existing / "mine.txt").read_text() == "keep me" and len(list(existing.iterdir())) == 1


@pytest.mark.parametrize("case", ["not-a-model", "missing", "format", "quantize", "exists", "inside", "agreement"])
def test_bad_input_is_one_line_exit_2(
    case: str, text_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    exists = tmp_path / "exists"
    exists.mkdir()
    (exists / "mine.txt").write_text("keep me")
    args: dict[str, list[str]] = {
        "not-a-model": [str(plain)],
        "missing": [str(tmp_path / "nowhere")],
        "format": [str(text_model), "--format", "tflite", "-o", str(tmp_path / "x")],
        "quantize": [str(text_model), "--quantize", "int4", "-o", str(tmp_path / "x")],
        "exists": [str(text_model), "-o", str(exists)],
        "inside": [str(text_model), "-o", str(text_model / "onnx")],
        "agreement": [str(text_model), "--min-agreement", "2", "-o", str(tmp_path / "x")],
    }
    expected = {
        "not-a-model": "is not a model saved by honed",
        "missing": "not found",
        "format": "unknown export format 'tflite'",
        "quantize": "--quantize int4: use one of int8",
        "exists": "already exists; pass --overwrite",
        "inside": "inside the model folder",
        "agreement": "--min-agreement 2.0: must lie in [0, 1]",
    }
    code, err = _run_cli(["export", *args[case]], capsys)
    assert code == 2 and err.count("\n") == 0 and expected[case] in err, err
    assert not (tmp_path / "x").exists() and (exists / "mine.txt").read_text() == "keep me"
    assert list(exists.iterdir()) == [exists / "mine.txt"]


def test_missing_onnxruntime_is_one_line(
    text_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    code, err = _run_cli(["export", str(text_model), "-o", str(tmp_path / "x")], capsys)
    assert code == 2 and "pip install 'honed[onnx]'" in err and err.count("\n") == 0
    assert not (tmp_path / "x").exists()


def test_an_exported_folder_refuses_tta_and_a_second_export(text_model: Path, tmp_path: Path) -> None:
    export_model(text_model, "torchscript", None, tmp_path / "ts", quiet=True, max_rows=4)
    with pytest.raises(HonedError, match="augment.tta=2: an exported model predicts the plain view only"):
        load_predictor(tmp_path / "ts", {"augment.tta": 2})
    with pytest.raises(HonedError, match="is already an exported model"):
        export_model(tmp_path / "ts", "onnx", None, tmp_path / "again", quiet=True)
    assert not (tmp_path / "again").exists()


def test_the_gate_holds_float_exports_to_agreement_and_quantized_ones_to_accuracy() -> None:
    from honed.export.command import _gate

    def checks(agree: float) -> dict:
        return {
            "split": "test",
            "rows": 1000,
            "label_agreement": agree,
            "max_abs_prob_diff": 0.3,
            "min_agreement": 0.995,
        }

    _gate(checks(0.97), 0.810, 0.812, "onnx int8", quantized=True)  # labels flip both ways, accuracy kept: accepted
    _gate(checks(0.97), 0.810, 0.806, "onnx int8", quantized=True)  # 0.4 point lower: within the budget
    with pytest.raises(HonedError, match=r"accuracy 0\.8000 vs PyTorch's 0\.8100"):
        _gate(checks(0.97), 0.810, 0.800, "onnx int8", quantized=True)
    with pytest.raises(HonedError, match=r"needs 99\.5%"):
        _gate(checks(0.99), 0.810, 0.812, "onnx", quantized=False)  # a float export must agree, accuracy aside
    accepted = checks(0.999)
    _gate(accepted, 0.81, 0.81, "onnx", quantized=False)
    assert accepted["rule"] == "label agreement >= 0.995" and accepted["accuracy_after"] == 0.81


def test_an_exported_model_averages_sliding_windows_as_pytorch_does(text_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    export_model(text_model, "onnx", None, out, quiet=True)
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    saved["data"].update(truncation="sliding", max_length=8)
    (out / "recipe.yaml").write_text(yaml.safe_dump(saved))
    texts = ["a wonderful, moving film " * 6, "a dull, boring mess " * 5 + "and a waste of time", "fine"]
    probs = ["prob_neg", "prob_pos"]
    windows = predict_frame(text_model, texts, overrides={"data.truncation": "sliding", "data.max_length": 8})[probs]
    right = predict_frame(text_model, texts, overrides={"data.max_length": 8})[probs]
    exported = predict_frame(out, texts)[probs].to_numpy()
    gap, windowed = np.abs(exported - windows.to_numpy()).max(), np.abs(windows.to_numpy() - right.to_numpy()).max()
    assert gap < windowed / 10  # the barely-trained model's windows move its output a little; the export agrees
