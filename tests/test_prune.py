"""Pruning: masks (global/per layer), the gradual `prune` technique, structured pruning, `honed prune`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import honed
from honed.cli import main
from honed.models.build import load_model
from honed.models.masks import compute_masks, global_sparsity, layer_sparsity, prunable
from honed.techniques.prune import cubic_sparsity
from tests.conftest import recomputed_accuracy, tiny_recipe
from tests.test_regularisation import _image_recipe

WEIGHTS: dict[str, list[dict[str, torch.Tensor]]] = {}


class Watch:
    """Records the prunable weights after each optimizer step."""

    def __init__(self, key: str) -> None:
        self.key = key
        WEIGHTS[key] = []

    def on_after_optimizer_step(self, state: Any) -> None:
        model = state.accelerator.unwrap_model(state.model)
        WEIGHTS[self.key].append({f"{n}.weight": m.weight.detach().clone() for n, m in prunable(model)})


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 16), nn.Linear(16, 10))


def test_global_and_per_layer_masks_hit_the_target() -> None:
    net = _net()
    masks = compute_masks(net, 0.6, "global")
    assert abs(global_sparsity(net) - 0.6) < 0.01
    assert set(masks) == {"0.weight", "3.weight", "4.weight"}
    assert all(not torch.any(dict(net.named_parameters())[n][~m]) for n, m in masks.items()), "masked weights are zero"
    assert "0.weight_orig" not in net.state_dict() and "0.weight" in net.state_dict(), "plain weights"
    assert len({round(v, 2) for v in layer_sparsity(net).values()}) > 1, "global: layers differ"
    net = _net()
    compute_masks(net, 0.3, "layer")
    assert all(abs(v - 0.3) < 0.01 for v in layer_sparsity(net).values())
    compute_masks(net, 0.5, "layer")  # growing sparsity keeps the earlier zeros
    assert all(abs(v - 0.5) < 0.01 for v in layer_sparsity(net).values())


def test_cubic_schedule_values() -> None:
    assert cubic_sparsity(0, 100, 0.8, 0.1, 0.6) == 0.0
    assert cubic_sparsity(10, 100, 0.8, 0.1, 0.6) == 0.0
    assert cubic_sparsity(35, 100, 0.8, 0.1, 0.6) == pytest.approx(0.8 * (1 - 0.5**3))
    assert cubic_sparsity(60, 100, 0.8, 0.1, 0.6) == pytest.approx(0.8)
    assert cubic_sparsity(99, 100, 0.8, 0.1, 0.6) == pytest.approx(0.8)
    assert cubic_sparsity(0, 100, 0.5, 0.0, 0.0) == 0.5, "start = end = 0: the target at once"


def _recipe(tiny_bert: str, text_csv: Path, run: Path, marker: Path | None = None, **prune: Any) -> dict:
    # Watch first: after-events fire in reverse recipe order, so it records the weights after prune re-masked them
    techniques: list[dict] = [
        {"name": "tests.test_prune:Watch", "key": run.name},
        {"name": "prune", "sparsity": 0.6, "start": 0.1, "end": 0.6, **prune},
    ]
    if marker is not None:
        techniques.append({"name": "tests.test_regularisation:Crash", "step": 5, "marker": str(marker)})
    return tiny_recipe(
        tiny_bert,
        text_csv,
        run,
        train__batch_size=8,
        train__epochs=1,
        train__checkpoint_every_steps=2,
        techniques=techniques,
    )


def test_technique_prunes_gradually_keeps_zeros_and_resumes_exactly(
    tiny_bert: str, text_csv: Path, tmp_path: Path
) -> None:
    done = tmp_path / "done"
    done.touch()
    straight = honed.fit(_recipe(tiny_bert, text_csv, tmp_path / "straight", done), quiet=True)
    steps = WEIGHTS["straight"]
    total = straight.metrics["steps"]
    for step, weights in enumerate(steps, start=1):
        zeros = sum(int((w == 0).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values())
        assert zeros == pytest.approx(cubic_sparsity(step, total, 0.6, 0.1, 0.6), abs=0.01), step
        if step > 1:  # once zero, a pruned weight stays zero through every later step
            before = steps[step - 2]
            assert all(not torch.any(weights[n][before[n] == 0]) for n in weights)
    saved = load_file(str(straight.model_dir / "model.safetensors"))
    assert not [k for k in saved if k.endswith(("_orig", "_mask"))], "plain weights in the saved model"
    model, _ = load_model(straight.model_dir)
    assert abs(global_sparsity(model) - 0.6) < 0.01, "the saved model is at the target (no earlier best epoch)"

    crashing = _recipe(tiny_bert, text_csv, tmp_path / "crashed", tmp_path / "marker")
    with pytest.raises(RuntimeError, match="crash"):
        honed.fit(crashing, quiet=True)
    resumed = honed.fit(crashing, quiet=True, resume=True)
    assert straight.metrics["test_loss"] == resumed.metrics["test_loss"]
    a, b = (torch.load(tmp_path / f"{n}/checkpoints/last.pt", weights_only=True) for n in ("straight", "crashed"))
    assert a["techniques"][1]["masks"].keys() == b["techniques"][1]["masks"].keys()
    assert all(
        torch.equal(a["techniques"][1]["masks"][k], b["techniques"][1]["masks"][k]) for k in a["techniques"][1]["masks"]
    )
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), "the same weights"


@pytest.fixture(scope="module")
def text_run(tiny_bert: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from honed.data.labels import LabelMap
    from honed.models.build import build_model, save_model
    from honed.recipe import load_recipe
    from tests.conftest import text_rows

    folder = tmp_path_factory.mktemp("prune-text")
    text_rows(60).to_csv(folder / "train.csv", index=False)
    recipe = load_recipe(tiny_recipe(tiny_bert, folder / "train.csv", folder / "run", train__epochs=1))
    labels = LabelMap(("neg", "pos"))
    save_model(
        build_model(recipe, labels), labels, folder / "model", recipe.to_yaml()
    )  # a saved model; training adds nothing here
    return folder / "model"


def test_prune_command_unstructured_with_recovery(
    text_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p50"
    assert main(["prune", str(text_run), "--sparsity", "0.5", "--recover-epochs", "1", "-o", str(out), "--quiet"]) == 0
    report = json.loads((out / "prune.json").read_text())
    assert report["before"]["global_sparsity"] < 0.01 and abs(report["after"]["global_sparsity"] - 0.5) < 0.01
    removed = report["before"]["nonzero_params"] - report["after"]["nonzero_params"]
    assert removed == pytest.approx(0.5 * report["before"]["prunable_params"], rel=0.01), "embeddings are not pruned"
    assert report["after"]["weights_gzip_bytes"] < report["before"]["weights_gzip_bytes"], "zeros compress"
    assert report["after"]["latency_ms"] > 0
    expected = recomputed_accuracy(out / "model", text_run / "recipe.yaml")  # the pruned model on the same test rows
    assert report["after"]["test_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert abs(report["recovered"]["global_sparsity"] - 0.5) < 0.01, "recovery keeps the masks"
    assert main(["prune", str(text_run), "-o", str(out), "--quiet"]) == 2, "never overwrites"
    assert "exists" in capsys.readouterr().err


def test_recovery_runs_without_the_saved_recipes_weight_averaging(text_run: Path, tmp_path: Path) -> None:
    """A model trained with EMA: recovery drops it (averaged weights would refill the pruned zeros)
    instead of failing."""
    import shutil

    import yaml

    model = tmp_path / "ema-model"
    shutil.copytree(text_run, model)
    tree = yaml.safe_load((model / "recipe.yaml").read_text())
    tree["techniques"] = [{"name": "ema", "decay": 0.9}]
    (model / "recipe.yaml").write_text(yaml.safe_dump(tree))
    result = honed.prune(model, 0.3, recover_epochs=1, output=tmp_path / "p30", quiet=True)
    assert abs(result["recovered"]["global_sparsity"] - 0.3) < 0.01


def test_structured_ffn_is_smaller_keeps_output_shape_and_reloads(text_run: Path, tmp_path: Path) -> None:
    result = honed.prune(text_run, 0.25, structured="ffn", output=tmp_path / "ffn", quiet=True)
    assert result["intermediate_size"] == {"before": 64, "after": 48}
    model, labels = load_model(tmp_path / "ffn" / "model")
    layer = model.hf.bert.encoder.layer[0]
    assert layer.intermediate.dense.weight.shape == (48, 32) and layer.output.dense.weight.shape == (32, 48)
    assert result["after"]["params"] < result["before"]["params"]
    batch = model.preprocess(["a fine film"], return_tensors="pt")
    assert model(**batch).shape == (1, len(labels))


def test_structured_channels_zero_whole_conv_channels(tmp_path: Path) -> None:
    from honed.data.labels import LabelMap
    from honed.models.build import build_model
    from honed.prune.structured import prune_channels
    from honed.recipe import load_recipe

    model = build_model(load_recipe(_image_recipe(tmp_path)), LabelMap(("dark", "light")))
    info = prune_channels(model, 0.5)
    conv = model.net.features[0][0]
    zero_channels = int((conv.weight.flatten(1).abs().sum(1) == 0).sum())
    assert zero_channels == conv.out_channels // 2 and info["removed"].startswith("zeroed")
    assert not [n for n in model.state_dict() if n.endswith(("_orig", "_mask"))], "plain weights"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sparsity", "1.0"], "--sparsity: 1.0 is outside [0, 1)"),
        (["--sparsity", "-0.1"], "outside [0, 1)"),
        (["--structured", "channels"], "--structured channels: the model has no convolutions"),
    ],
)
def test_bad_input_one_line_exit_2(
    text_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert main(["prune", str(text_run), *args, "-o", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_missing_model_folder_and_ffn_on_a_cnn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", str(tmp_path / "nope"), "--quiet"]) == 2
    assert f"model '{tmp_path / 'nope'}': folder not found" in capsys.readouterr().err
    from honed.data.labels import LabelMap
    from honed.models.build import build_model, save_model
    from honed.prune.structured import prune_ffn
    from honed.recipe import load_recipe

    model = build_model(load_recipe(_image_recipe(tmp_path)), LabelMap(("dark", "light")))
    with pytest.raises(honed.HonedError, match="--structured ffn: the model \\(torchvision\\) has no BERT-like FFN"):
        prune_ffn(model, 0.5)
    save_model(model, LabelMap(("dark", "light")), tmp_path / "cnn", "{}")
    assert main(["prune", str(tmp_path / "cnn"), "--structured", "ffn", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().startswith("honed: error: --structured ffn: the model (torchvision)")
    for inside in (tmp_path / "cnn", tmp_path):  # the output may never replace the model it reads
        assert main(["prune", str(tmp_path / "cnn"), "-o", str(inside), "--overwrite", "--quiet"]) == 2
        assert "the output would hold or sit inside the model folder" in capsys.readouterr().err
    assert (tmp_path / "cnn" / "honed.json").is_file()


def test_honed_prune_and_pretrain_are_callable_without_importing_the_subpackages() -> None:
    """`import honed; honed.prune(...)` must work even when nothing imported honed.prune before."""
    for name in ("prune", "pretrain"):
        module = honed.__getattr__(name)
        assert callable(module) and module.__name__ == f"honed.{name}"
