"""Image classification end to end on tiny random-weight CNNs and a dozen tiny PNGs, plus bad-input errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from PIL import Image

import honed
from honed.cli import main
from honed.inference import predict_frame
from honed.models.build import load_model
from honed.models.vision import VisionClassifier, build_timm
from tests.conftest import recomputed_accuracy

CLASSES = {"dark": 40, "light": 215}


def write_images(root: Path, per_class: int = 6) -> list[tuple[str, str]]:
    """`per_class` 16x16 noisy PNGs per class under root/CLASS/; returns (relative path, label) rows."""
    rng = np.random.default_rng(0)
    rows = []
    for label, level in CLASSES.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(level + rng.normal(0, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
            rows.append((f"{label}/{i}.png", label))
    return rows


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight torchvision mobilenet_v3_small state dict standing in for a pretrained weights file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_small.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    write_images(tmp_path / "images")
    return tmp_path / "images"


def write_recipe(tmp_path: Path, weights: Path, train: Path) -> Path:
    """A seconds-long image recipe: 32 px, 1 epoch, val/test carved from train."""
    recipe = {
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "data": {"kind": "image", "train": str(train), "image_size": 32, "split": {"val": 0.17, "test": 0.17}},
        "model": {"name": "mobilenet_v3_small", "source": "torchvision", "weights": str(weights)},
        "optim": {"lr": 1e-3},
        "train": {"epochs": 1, "batch_size": 4, "eval_batch_size": 8},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_folder_tree_trains_saves_reloads_and_predicts(tiny_weights: Path, image_folder: Path, tmp_path: Path) -> None:
    run = honed.fit(write_recipe(tmp_path, tiny_weights, image_folder), quiet=True)
    assert (run.model_dir / "model.safetensors").is_file() and (run.model_dir / "honed.json").is_file()
    assert list(run.labels.names) == ["dark", "light"]
    assert run.metrics["test_accuracy"] == pytest.approx(recomputed_accuracy(run.model_dir, run.recipe), abs=1e-6)

    model, labels = load_model(run.model_dir)
    assert isinstance(model, VisionClassifier) and list(labels.names) == ["dark", "light"]
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor.cpu(), model.state_dict()[name]), name

    frame = predict_frame(run.model_dir, image_folder)
    assert len(frame) == 12 and set(frame["predicted"]) <= set(CLASSES)
    np.testing.assert_allclose(frame[["prob_dark", "prob_light"]].sum(axis=1), 1.0, atol=1e-5)


def test_csv_manifest_train_then_evaluate_folder(
    tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    rows = write_images(data / "img")
    manifest = data / "manifest.csv"  # paths relative to the manifest's folder
    pd.DataFrame([(f"img/{p}", label) for p, label in rows], columns=["path", "label"]).to_csv(manifest, index=False)
    recipe = write_recipe(tmp_path, tiny_weights, tmp_path / "unused")

    assert main(["train", str(recipe), f"data.train={manifest}", "--quiet"]) == 0
    assert main(["evaluate", str(tmp_path / "run" / "model"), str(data / "img")]) == 0
    printed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line)
    predicted = predict_frame(tmp_path / "run" / "model", data / "img")  # sorted paths: dark/0..5, light/0..5
    truth = [Path(p).parent.name for p in predicted["input"]]
    assert float(printed["accuracy"]) == pytest.approx((predicted["predicted"] == truth).mean(), abs=1e-4)


def test_timm_layer_groups_follow_timm_grouping() -> None:
    net, head, stats = build_timm("resnet18", None, 3)
    model = VisionClassifier(net, "timm", "resnet18", head, stats, 3)
    groups = model.layer_groups()
    names = [g.name for g in groups]
    assert names == ["embeddings", *(f"block.{i}" for i in range(8)), "head"]  # 4 stages x 2 basic blocks
    placed = [p for g in groups for p in g.params]
    assert sorted(placed) == sorted(n for n, _ in model.named_parameters())  # each parameter exactly once
    assert set(groups[0].params) == {"net.conv1.weight", "net.bn1.weight", "net.bn1.bias"}
    assert all(p.startswith("net.layer1.0.") for p in groups[1].params)
    assert all(p.startswith("net.layer4.1.") for p in groups[-2].params)
    assert set(groups[-1].params) == model.head_params == {"net.fc.weight", "net.fc.bias"}


Rows = list[tuple[str, str]]


def _corrupt_image(folder: Path, rows: Rows) -> tuple[list[str], str]:
    (folder / "dark" / "broken.png").write_bytes(b"these bytes are not a PNG")
    return [], "broken.png"


def _manifest(folder: Path, frame: pd.DataFrame) -> str:
    frame.to_csv(folder / "manifest.csv", index=False)
    return f"data.train={folder / 'manifest.csv'}"


def _missing_image(folder: Path, rows: Rows) -> tuple[list[str], str]:
    return [_manifest(folder, pd.DataFrame([*rows, ("dark/gone.png", "dark")], columns=["path", "label"]))], "gone.png"


def _no_path_column(folder: Path, rows: Rows) -> tuple[list[str], str]:
    return [_manifest(folder, pd.DataFrame(rows, columns=["file", "label"]))], "'path'"


def _unknown_architecture(folder: Path, rows: Rows) -> tuple[list[str], str]:
    return ["model.name=mobilenet_v99"], "mobilenet_v99"


def _wrong_weights(folder: Path, rows: Rows) -> tuple[list[str], str]:
    torch.save(torchvision.models.resnet18().state_dict(), folder / "resnet18.pth")
    return [f"model.weights={folder / 'resnet18.pth'}"], "resnet18.pth"


def _missing_weights(folder: Path, rows: Rows) -> tuple[list[str], str]:
    return [f"model.weights={folder / 'nowhere.pth'}"], "nowhere.pth"


@pytest.mark.parametrize(
    "case",
    [_corrupt_image, _missing_image, _no_path_column, _unknown_architecture, _wrong_weights, _missing_weights],
    ids=lambda c: c.__name__.strip("_"),
)
def test_bad_input_is_one_line_exit_2(
    case: Callable[[Path, Rows], tuple[list[str], str]],
    tiny_weights: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    overrides, named = case(tmp_path / "images", write_images(tmp_path / "images"))
    recipe = write_recipe(tmp_path, tiny_weights, tmp_path / "images")
    assert main(["train", str(recipe), *overrides, "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("honed: error:") and named in lines[0], lines


def test_batch_norm_model_with_a_one_row_last_batch_trains(tmp_path: Path) -> None:
    """7 training rows in batches of 6 would leave a last batch of one row, which batch norm cannot
    train on: each epoch leaves one random row out instead of crashing."""
    from honed.data.loaders import EpochSampler
    from tests.test_regularisation import _image_recipe

    recipe = _image_recipe(tmp_path, "mobilenet_v3_small", train={"epochs": 2, "batch_size": 6, "eval_batch_size": 8})
    run = honed.fit(recipe, quiet=True)
    assert run.metrics["steps"] == 2, "one batch of 6 per epoch"
    sampler = EpochSampler(7, seed=0, keep=6)
    epochs = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        epochs.append(set(sampler))
    assert all(len(e) == 6 for e in epochs) and len(set.union(*epochs)) == 7, "a different row sits out"
