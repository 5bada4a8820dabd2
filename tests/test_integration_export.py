"""The real MiniLM, fine-tuned a few steps on real reviews, exported to ONNX with int8 quantization: the
export passes its check against PyTorch, shrinks the model file (its Linear layers 4x) and predicts like
the original."""

from __future__ import annotations

from pathlib import Path

import pytest

import honed
from honed.assets import DATA_ASSETS, MODEL_PACKAGES
from honed.export import export_model
from honed.inference import predict_frame

pytestmark = pytest.mark.integration

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module", autouse=True)
def _assets() -> None:
    pytest.importorskip("onnxruntime")
    if MODEL_PACKAGES[MINILM][0]() is None or DATA_ASSETS["rotten-tomatoes"][0]() is None:
        pytest.skip("needs the MiniLM and Rotten Tomatoes packages: run `make setup`")


def test_minilm_onnx_int8_export_agrees_and_shrinks(tmp_path: Path) -> None:
    run = honed.fit(
        "recipes/quickstart.yaml",
        output_dir=str(tmp_path / "run"),
        quiet=True,
        data__max_rows={"train": 320, "val": 64, "test": 200},
        data__max_length=32,
        train__epochs=1,
        train__batch_size=16,
        optim__lr=2e-4,
        schedule__warmup_ratio=0.05,
        train__checkpoint_every_steps=None,
        train__eval_batch_size=64,
    )
    result = export_model(run.model_dir, "onnx", "int8", tmp_path / "onnx-int8", quiet=True)
    checks = result["checks"]
    assert checks["split"] == "test" and checks["rows"] == 200 and checks["label_agreement"] >= 0.995, checks
    assert checks["max_abs_prob_diff"] < 0.1, checks
    # the Linear weights go to int8 (4x smaller); the word embeddings (about half of MiniLM's bytes) stay float32
    assert result["after"]["model_bytes"] < 0.7 * result["before"]["model_bytes"], result
    assert abs(result["after"]["accuracy"] - result["before"]["accuracy"]) <= 0.01, result
    texts = ["a wonderful, moving film with a brilliant cast", "a dull, lifeless mess; a waste of two hours"]
    exported, original = predict_frame(tmp_path / "onnx-int8", texts), predict_frame(run.model_dir, texts)
    assert list(exported["predicted"]) == list(original["predicted"])
