"""Domain-adaptive pretraining (`honed pretrain`): masked-LM for text, rotation prediction for images,
a backbone a fine-tuning recipe can name, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import honed
from honed.cli import main
from honed.data.labels import LabelMap
from honed.models.build import build_model
from honed.pretrain import pretrain
from honed.recipe import load_recipe
from tests.conftest import recomputed_accuracy, tiny_recipe
from tests.test_regularisation import _image_recipe


def _write(tmp_path: Path, recipe: dict) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("whole_word", [False, True])
def test_mlm_changes_the_backbone_and_fine_tuning_loads_it(
    tiny_bert: str, text_csv: Path, tmp_path: Path, whole_word: bool
) -> None:
    recipe = tiny_recipe(
        tiny_bert,
        text_csv,
        tmp_path / "pre",
        pretrain={"epochs": 2, "lr": 1e-3, "batch_size": 8, "whole_word": whole_word, "mlm_probability": 0.3},
    )
    run_dir = pretrain(recipe, quiet=True)
    summary = json.loads((run_dir / "pretrain.json").read_text())
    total = len(pd.read_csv(text_csv))
    assert 0 < summary["rows"] < total, "only the training split is used (val/test rows never seen)"
    assert len(summary["loss_per_epoch"]) == 2 and summary["loss_per_epoch"][1] < summary["loss_per_epoch"][0]
    assert any("cls.predictions" in k for k in summary["fresh_head_weights"]), "a plain BertModel has no MLM head"
    assert (run_dir / "backbone" / "config.json").is_file() and (run_dir / "recipe.yaml").is_file()

    labels = LabelMap(("neg", "pos"))
    before = build_model(load_recipe(tiny_recipe(tiny_bert, text_csv, tmp_path / "a")), labels)
    after = build_model(load_recipe(tiny_recipe(str(run_dir / "backbone"), text_csv, tmp_path / "b")), labels)
    w0, w1 = (
        before.hf.bert.encoder.layer[0].attention.self.query.weight,
        after.hf.bert.encoder.layer[0].attention.self.query.weight,
    )
    assert not torch.equal(w0, w1), "the pretrained backbone's weights are what fine-tuning starts from"
    if not whole_word:
        run = honed.fit(tiny_recipe(str(run_dir / "backbone"), text_csv, tmp_path / "ft", train__epochs=1), quiet=True)
        assert run.metrics["test_accuracy"] == pytest.approx(recomputed_accuracy(run.model_dir, run.recipe), abs=1e-6)


def test_rotation_backbone_loads_strictly_as_weights(tmp_path: Path) -> None:
    recipe = _image_recipe(tmp_path, "mobilenet_v3_small", pretrain={"epochs": 1, "batch_size": 4, "lr": 1e-3})
    run_dir = pretrain(recipe, quiet=True)
    summary = json.loads((run_dir / "pretrain.json").read_text())
    assert summary["objective"] == "rotation" and summary["rows"] < 12
    weights = run_dir / "backbone" / "backbone.safetensors"
    recipe = _image_recipe(tmp_path, "mobilenet_v3_small")
    recipe["model"]["weights"] = str(weights)
    model = build_model(load_recipe(recipe), LabelMap(("dark", "light")))
    from safetensors.torch import load_file

    saved = load_file(str(weights))
    assert torch.equal(model.net.features[0][0].weight, saved["features.0.0.weight"])


def test_bad_inputs_one_line_exit_2(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notext = tmp_path / "notext.csv"
    pd.DataFrame({"body": ["a", "b"]}).to_csv(notext, index=False)
    recipe = tiny_recipe(tiny_bert, text_csv, tmp_path / "run", pretrain={"data": str(notext)})
    assert main(["pretrain", _write(tmp_path, recipe), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no column 'text'" in err and "data.text_column" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "backbone").exists()

    assert main(["pretrain", _write(tmp_path, recipe), "pretrain.mlm_probability=1.5", "--quiet"]) == 2
    assert "pretrain.mlm_probability" in capsys.readouterr().err

    done = tiny_recipe(tiny_bert, text_csv, tmp_path / "done", pretrain={"max_rows": 8, "batch_size": 8})
    pretrain(done, quiet=True)
    assert main(["pretrain", _write(tmp_path, done), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    # bad data or a bad model with --overwrite: refused before the old run is removed
    for bad in (f"pretrain.data={notext}", f"model.name={tmp_path / 'no-such-model'}"):
        assert main(["pretrain", _write(tmp_path, done), bad, "--overwrite", "--quiet"]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
        assert (tmp_path / "done" / "backbone" / "config.json").is_file(), bad


def test_rotation_pretraining_reads_idx_image_arrays(tmp_path: Path) -> None:
    """IDX data (Fashion-MNIST's format) holds images as arrays, not paths."""
    import gzip

    import numpy as np

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (12, 16, 16), dtype=np.uint8)
    with gzip.open(tmp_path / "tiny-images-idx3-ubyte.gz", "wb") as out:
        out.write(bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in pixels.shape) + pixels.tobytes())
    with gzip.open(tmp_path / "tiny-labels-idx1-ubyte.gz", "wb") as out:
        out.write(bytes([0, 0, 8, 1]) + (12).to_bytes(4, "big") + bytes([i % 2 for i in range(12)]))
    recipe = _image_recipe(tmp_path, "mobilenet_v3_small", pretrain={"epochs": 1, "batch_size": 4, "lr": 1e-3})
    recipe["data"]["train"] = str(tmp_path / "tiny-images-idx3-ubyte.gz")
    run_dir = pretrain(recipe, quiet=True)
    summary = json.loads((run_dir / "pretrain.json").read_text())
    assert summary["objective"] == "rotation" and 0 < summary["rows"] < 12
    assert (run_dir / "backbone" / "backbone.safetensors").is_file()
