"""Model soups (`ensemble.method: soup`): the average of identical models is the model, a greedy soup
never scores below its best member on val, batch norm is re-estimated on train, incompatible members
are refused in one line, and the result is one ordinary model folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from honed.cli import main
from honed.errors import HonedError
from tests.conftest import text_rows, tiny_recipe
from tests.test_images import write_images


class BNCNN(nn.Module):
    """conv -> batch norm -> pool -> fc: the smallest network whose soup needs its statistics recomputed."""

    def __init__(self, channels: int = 4, classes: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.norm(self.conv(pixels)))).flatten(1))


def _recipe(tiny_bert: str, tmp_path: Path, ensemble: dict) -> dict:
    data = tmp_path / "reviews.csv"
    tmp_path.mkdir(parents=True, exist_ok=True)
    text_rows(60).to_csv(data, index=False)
    recipe = tiny_recipe(tiny_bert, data, tmp_path / "soup")
    recipe["report"] = {"enabled": False}
    recipe["ensemble"] = ensemble
    return recipe


def test_average_states_means_floats_and_keeps_integer_buffers() -> None:
    from honed.ensemble.soup import average_states

    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    out = average_states([a, b])
    assert out["w"].tolist() == [2.0, 4.0] and int(out["n"]) == 5


def test_soup_of_two_identical_models_is_the_model(tiny_bert: str, tmp_path: Path) -> None:
    from honed import fit
    from honed.ensemble import build_ensemble
    from honed.inference import ModelPredictor, load_predictor

    single = _recipe(tiny_bert, tmp_path / "one", {})
    single.pop("ensemble")
    run = fit(single, quiet=True)
    twins = [{"name": "a", "prefit": str(run.model_dir)}, {"name": "b", "prefit": str(run.model_dir)}]
    ensemble = {"method": "soup", "soup": "uniform", "members": twins}
    result = build_ensemble(_recipe(tiny_bert, tmp_path, ensemble), quiet=True)
    soup = load_predictor(result.folder / "model")
    assert isinstance(soup, ModelPredictor)  # one ordinary model folder
    frame = result.frames["test"]
    np.testing.assert_allclose(soup.predict_proba(frame), load_predictor(run.model_dir).predict_proba(frame), atol=1e-6)
    doc = json.loads((result.folder / "ensemble.json").read_text())
    assert [m["name"] for m in doc["members"]] == ["soup"] and doc["ingredients"] == ["a", "b"]
    csv = tmp_path / "new.csv"
    text_rows(5, seed=2).to_csv(csv, index=False)
    assert main(["predict", str(result.folder / "model"), str(csv), "-o", str(tmp_path / "p.csv")]) == 0


def test_greedy_soup_never_scores_below_its_best_member_on_val(tiny_bert: str, tmp_path: Path) -> None:
    from honed.ensemble import build_ensemble

    members = [
        {"name": "s0"},
        {"name": "s1", "overrides": {"seed": 1}},
        {"name": "wild", "overrides": {"optim.lr": 0.5}},
    ]
    ensemble = {"method": "soup", "soup": "greedy", "members": members}
    result = build_ensemble(_recipe(tiny_bert, tmp_path, ensemble), quiet=True)
    best = max(m["val_accuracy"] for m in result.metrics["members"].values())
    assert result.metrics["ensemble"]["val_accuracy"] >= best
    assert result.combined.info["soup_val_accuracy"] == pytest.approx(result.metrics["ensemble"]["val_accuracy"])
    assert result.combined.info["ingredients"][0] in result.metrics["members"]


def test_members_of_different_architectures_are_refused_before_training(
    tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    members = [{"name": "a"}, {"name": "b", "overrides": {"model.keep_layers": 1}}]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(tiny_bert, tmp_path, {"method": "soup", "members": members})))
    assert main(["ensemble", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "members 'a' and 'b' differ in model.keep_layers" in err and err.count("\n") == 1
    assert not (tmp_path / "soup" / "members").exists()


def test_weights_that_do_not_line_up_are_refused(tiny_bert: str, tmp_path: Path) -> None:
    from honed.data.labels import LabelMap
    from honed.ensemble.soup import check_compatible
    from honed.models.build import build_model
    from honed.recipe import build_recipe

    recipe = build_recipe(tiny_recipe(tiny_bert, "x.csv", tmp_path))
    two, three = LabelMap.from_labels(["a", "b"]), LabelMap.from_labels(["a", "b", "c"])
    with pytest.raises(HonedError, match="a soup needs one architecture and head"):
        check_compatible(["x", "y"], [build_model(recipe, two), build_model(recipe, three)], [two, three])


def test_batch_norm_statistics_are_recomputed_for_a_cnn_soup(tmp_path: Path) -> None:
    from honed.ensemble import build_ensemble
    from honed.models.build import load_model

    write_images(tmp_path / "images")
    recipe = {
        "seed": 0,
        "task": "classification",
        "output_dir": str(tmp_path / "soup"),
        "report": {"enabled": False},
        "data": {
            "kind": "image",
            "train": str(tmp_path / "images"),
            "image_size": 16,
            "split": {"val": 0.25, "test": 0.17},
        },
        "model": {"source": "python", "name": "tests.test_soup:BNCNN"},
        "optim": {"lr": 5e-2},
        "train": {"epochs": 2, "batch_size": 4, "eval_batch_size": 8},
        "ensemble": {
            "method": "soup",
            "soup": "uniform",
            "members": [{"name": "a"}, {"name": "b", "overrides": {"seed": 1}}],
        },
    }
    result = build_ensemble(recipe, quiet=True)
    norms = [load_model(m.model_dir)[0] for m in result.members]
    soup = load_model(result.folder / "model")[0]
    means = [next(m for m in n.modules() if isinstance(m, nn.BatchNorm2d)).running_mean for n in norms]
    soup_mean = next(m for m in soup.modules() if isinstance(m, nn.BatchNorm2d)).running_mean
    assert not torch.allclose(soup_mean, (means[0] + means[1]) / 2)  # re-estimated, not averaged
    assert torch.isfinite(soup_mean).all()
