"""A shallower student made from a pretrained model's own layers (model.keep_layers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import honed
from honed.cli import main
from honed.data.labels import LabelMap
from honed.models.build import build_model, load_model
from honed.models.shrink import chosen_layers
from honed.recipe import load_recipe
from tests.conftest import tiny_recipe
from tests.test_regularisation import _image_recipe


def test_chosen_layers_are_evenly_spaced_and_end_at_the_last() -> None:
    assert chosen_layers(3, 6) == [1, 3, 5]
    assert chosen_layers(2, 6) == [2, 5]
    assert chosen_layers(6, 6) == [0, 1, 2, 3, 4, 5]
    assert chosen_layers([0, 4], 6) == [0, 4]


def test_student_keeps_the_teachers_layer_weights_and_reloads(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    labels = LabelMap(("neg", "pos"))
    full = build_model(load_recipe(tiny_recipe(tiny_bert, text_csv, tmp_path / "x")), labels)
    recipe = tiny_recipe(
        tiny_bert, text_csv, tmp_path / "run", model={"name": tiny_bert, "keep_layers": [1]}, train__epochs=1
    )
    student = build_model(load_recipe(recipe), labels)
    assert student.hf.config.num_hidden_layers == 1 and len(student.hf.bert.encoder.layer) == 1
    kept, source = student.hf.bert.encoder.layer[0].state_dict(), full.hf.bert.encoder.layer[1].state_dict()
    assert all(torch.equal(kept[k], source[k]) for k in kept), "layer 0 of the student is layer 1 of the teacher"
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in full.parameters())

    run = honed.fit(recipe, quiet=True)
    reloaded, _ = load_model(run.model_dir)
    assert reloaded.hf.config.num_hidden_layers == 1
    batch = {"input_ids": torch.tensor([[101, 2307, 102]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    torch.testing.assert_close(run.model(**batch), reloaded.eval()(**batch))


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        (5, "model.keep_layers: 5 layers asked but the model has 2"),
        ([0, 0], "model.keep_layers: [0, 0] must be distinct layer indices in 0..1"),
        ([2], "model.keep_layers: [2] must be distinct layer indices in 0..1"),
    ],
)
def test_bad_keep_layers_fail_in_one_line(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], keep: object, expected: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            tiny_recipe(tiny_bert, text_csv, tmp_path / "run", model={"name": tiny_bert, "keep_layers": keep})
        )
    )
    assert main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "run").exists()


def test_keep_layers_on_an_image_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = _image_recipe(tmp_path, "mobilenet_v3_small")
    recipe["model"]["keep_layers"] = 2
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path), "--quiet"]) == 2
    assert (
        "model.keep_layers: works on Hugging Face transformer models only (this is a torchvision model)"
        in capsys.readouterr().err
    )
