"""Regularisation: dropout overrides, L1 penalty, EMA and SWA weight averaging, weight-decay exclusions."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import honed
from honed.cli import main
from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.models.build import build_model, save_model
from honed.models.dropout import model_sites
from honed.recipe import load_recipe
from honed.techniques.l1 import L1Penalty
from honed.techniques.swa import side_pass
from tests.conftest import tiny_recipe

LABELS = LabelMap(("neg", "pos"))
TRACES: dict[str, dict[str, list[Any]]] = {}
TRACE = "tests.test_regularisation:Trace"


class Trace:
    """Records the model's weights after each optimizer step, when evaluation starts and at epoch end."""

    def __init__(self, key: str) -> None:
        self.key = key
        TRACES[key] = {"start": [], "step": [], "eval": [], "epoch_end": [], "bn_batches": []}

    def _save(self, state: Any, where: str) -> None:
        model = state.accelerator.unwrap_model(state.model)
        TRACES[self.key][where].append(
            {n: t.detach().clone() for n, t in model.state_dict().items() if "word_embeddings" not in n}
        )

    def on_fit_start(self, state: Any) -> None:
        self._save(state, "start")

    def on_after_optimizer_step(self, state: Any) -> None:
        self._save(state, "step")

    def on_evaluate_start(self, state: Any) -> None:
        self._save(state, "eval")
        if "pixel_values" in state.train_loader.dataset[0]:
            with side_pass(state.train_loader):
                TRACES[self.key]["bn_batches"].append([b["pixel_values"].clone() for b in state.train_loader])

    def on_epoch_end(self, state: Any) -> None:
        self._save(state, "epoch_end")


class Crash:
    """Raises once at a chosen optimizer step (a crash, for resume tests)."""

    def __init__(self, step: int, marker: str) -> None:
        self.step, self.marker = step, Path(marker)

    def on_after_optimizer_step(self, state: Any) -> None:
        if state.step == self.step and not self.marker.exists():
            self.marker.touch()
            raise RuntimeError("crash")


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err


def _write(tmp_path: Path, recipe: dict) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> bool:
    return all(torch.allclose(a[n].float(), b[n].float(), atol=atol) for n in a if a[n].is_floating_point())


# ---------------------------------------------------------------- dropout


def _bert(tiny_bert: str, text_csv: Path, tmp_path: Path, **dropout: float) -> Any:
    return build_model(
        load_recipe(tiny_recipe(tiny_bert, text_csv, tmp_path / "x", model={"name": tiny_bert, "dropout": dropout})),
        LABELS,
    )


def test_dropout_overrides_bert_modules_and_saved_config(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    model = _bert(tiny_bert, text_csv, tmp_path, hidden=0.2, attention=0.15, classifier=0.3)
    rates = {s.name: (s.kind, s.rate) for s in model_sites(model)}
    assert rates["hf.bert.encoder.layer.0.attention.self.dropout"] == ("attention", 0.15)
    assert rates["hf.bert.encoder.layer.0.attention.output.dropout"] == ("hidden", 0.2)
    assert rates["hf.bert.embeddings.dropout"] == ("hidden", 0.2) and rates["hf.dropout"] == ("classifier", 0.3)
    save_model(model, LABELS, tmp_path / "saved", "")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert (config["hidden_dropout_prob"], config["attention_probs_dropout_prob"], config["classifier_dropout"]) == (
        0.2,
        0.15,
        0.3,
    )

    hidden_only = _bert(tiny_bert, text_csv, tmp_path, hidden=0.0)
    assert hidden_only.hf.dropout.p == 0.1 and hidden_only.hf.config.classifier_dropout == 0.1, (
        "head rate kept and pinned"
    )


def test_attention_dropout_really_acts_in_the_forward(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    batch = {"input_ids": torch.randint(1000, 2000, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long)}

    def two_passes(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
        model.train()
        return model(**batch), model(**batch)

    a, b = two_passes(_bert(tiny_bert, text_csv, tmp_path, hidden=0.0, attention=0.0, classifier=0.0))
    assert torch.equal(a, b), "all rates 0: train-mode forwards are deterministic"
    a, b = two_passes(_bert(tiny_bert, text_csv, tmp_path, hidden=0.0, attention=0.5, classifier=0.0))
    assert not torch.allclose(a, b), "attention dropout alone makes them differ"


def _image_recipe(tmp_path: Path, name: str = "mobilenet_v2", **extra: Any) -> dict:
    rng = np.random.default_rng(0)
    for label, level in (("dark", 40), ("light", 215)):
        (tmp_path / "img" / label).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            Image.fromarray(np.clip(level + rng.normal(0, 20, (16, 16, 3)), 0, 255).astype(np.uint8)).save(
                tmp_path / "img" / label / f"{i}.png"
            )
    recipe = {
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "data": {
            "kind": "image",
            "train": str(tmp_path / "img"),
            "image_size": 32,
            "split": {"val": 0.17, "test": 0.17},
        },
        "model": {"name": name, "source": "torchvision"},
        "optim": {"lr": 1e-3},
        "train": {"epochs": 1, "batch_size": 4, "eval_batch_size": 8},
    }
    recipe.update(extra)
    return recipe


def test_dropout_on_torchvision_head_and_missing_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = _image_recipe(tmp_path)
    recipe["model"]["dropout"] = {"classifier": 0.45}
    model = build_model(load_recipe(recipe), LabelMap(("dark", "light")))
    assert model.net.classifier[0].p == 0.45
    _fails(
        ["train", _write(tmp_path, recipe), "model.dropout.attention=0.1", "--quiet"],
        capsys,
        "model.dropout.attention: this model has no attention dropout",
    )
    assert not (tmp_path / "run").exists()
    with pytest.raises(HonedError, match="no hidden dropout"):
        build_model(load_recipe(recipe, {"model.dropout.hidden": 0.1}), LabelMap(("dark", "light")))


# ---------------------------------------------------------------- L1


def _fake_state(model: Any, loss: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(model=model, accelerator=SimpleNamespace(unwrap_model=lambda m: m), loss=torch.tensor(loss))


def test_l1_penalises_chosen_weights_only(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    model = _bert(tiny_bert, text_csv, tmp_path)
    weight, bias = model.hf.classifier.weight, model.hf.classifier.bias
    for include_bias, expected in ((False, weight.abs().sum()), (True, weight.abs().sum() + bias.abs().sum())):
        l1 = L1Penalty(strength=0.1, groups=["head"], include_bias=include_bias)
        state = _fake_state(model, 1.0)
        l1.on_fit_start(state)
        l1.on_after_loss(state)
        assert float(state.loss.detach()) == pytest.approx(1.0 + 0.1 * float(expected.detach()), rel=1e-5)
    state.loss.backward()
    assert torch.allclose(weight.grad, 0.1 * weight.sign()), "the gradient is strength * sign(w)"
    everything = L1Penalty().names(model)
    assert "hf.bert.encoder.layer.0.output.dense.weight" in everything and not any(
        n.endswith("bias") or "LayerNorm" in n for n in everything
    )
    assert L1Penalty(patterns=["*.layer.1.*"]).names(model) == {n for n in everything if ".layer.1." in n}


def test_l1_shrinks_the_head_in_training(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    runs = [
        honed.fit(
            tiny_recipe(
                tiny_bert,
                text_csv,
                tmp_path / f"r{s}",
                train__epochs=1,
                techniques=[{"name": "l1", "strength": s, "groups": ["head"]}],
            ),
            quiet=True,
        )
        for s in (0.0, 1.0)
    ]
    plain, sparse = (float(r.model.hf.classifier.weight.detach().abs().sum()) for r in runs)
    assert sparse < plain


@pytest.mark.parametrize(
    ("technique", "expected"),
    [
        (
            {"name": "l1", "groups": ["haed"]},
            "techniques: l1.groups: unknown layer group 'haed' (did you mean 'head'?)",
        ),
        ({"name": "l1", "strength": -1}, "techniques.0 'l1': strength must be >= 0"),
        ({"name": "ema", "decay": 1.5}, "techniques.0 'ema': decay must be in [0, 1)"),
        ({"name": "swa", "start": 1.5}, "techniques.0 'swa': start must be a fraction"),
        ({"name": "swa", "every": "week"}, "techniques.0 'swa': every must be 'epoch'"),
        ({"name": "swa", "start_epoch": 5}, "techniques: swa.start_epoch=5 but train.epochs=2"),
        (
            [{"name": "ema"}, {"name": "swa"}],
            "techniques: ema and swa each swap averaged weights in for evaluation; keep only one",
        ),
        ({"name": "early_stopping", "patience": 0}, "techniques.0 'early_stopping': patience must be >= 1"),
        (
            {"name": "early_stopping", "metric": "acc"},
            "techniques.0 'early_stopping': metric must be accuracy, macro_f1 or loss",
        ),
        ({"name": "early_stopping", "mode": "maximum"}, "techniques.0 'early_stopping': mode must be max or min"),
    ],
)
def test_bad_settings_end_in_one_line(
    tiny_bert: str,
    text_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    technique: dict | list[dict],
    expected: str,
) -> None:
    recipe = tiny_recipe(
        tiny_bert, text_csv, tmp_path / "run", techniques=technique if isinstance(technique, list) else [technique]
    )
    _fails(["train", _write(tmp_path, recipe), "--quiet"], capsys, expected)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- EMA


def _ema_of(
    start: dict[str, torch.Tensor], steps: list[dict[str, torch.Tensor]], decays: list[float]
) -> dict[str, torch.Tensor]:
    ema = {n: t.float().clone() for n, t in start.items()}
    for weights, d in zip(steps, decays, strict=False):
        for n, t in ema.items():
            if t.is_floating_point():
                t.mul_(d).add_(weights[n].float(), alpha=1 - d)
    return ema


def test_ema_is_evaluated_then_swapped_back(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    techniques = [{"name": "ema", "decay": 0.6, "warmup": False}, {"name": TRACE, "key": "ema"}]
    run = honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "ema", techniques=techniques), quiet=True)
    trace = TRACES["ema"]
    per_epoch = len(trace["step"]) // 2
    for epoch in (1, 2):
        expected = _ema_of(trace["start"][0], trace["step"][: epoch * per_epoch], [0.6] * (epoch * per_epoch))
        assert _close(expected, trace["eval"][epoch - 1], atol=1e-5), "validation sees the average"
        assert _close(trace["step"][epoch * per_epoch - 1], trace["epoch_end"][epoch - 1], atol=0), (
            "live weights restored"
        )
    chosen = trace["eval"][run.metrics["best_epoch"] - 1]
    assert _close(chosen, run.model.state_dict(), atol=0), "the final model is the best evaluated average"


def test_ema_without_validation_ends_with_the_average(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    techniques = [{"name": "ema", "decay": 0.9}, {"name": TRACE, "key": "ema-noval"}]
    recipe = tiny_recipe(tiny_bert, text_csv, tmp_path / "noval", techniques=techniques)
    recipe["data"]["split"] = {"val": 0.0, "test": 0.2}
    run = honed.fit(recipe, quiet=True)
    trace = TRACES["ema-noval"]
    decays = [min(0.9, (1 + n) / (10 + n)) for n in range(len(trace["step"]))]
    assert _close(_ema_of(trace["start"][0], trace["step"], decays), run.model.state_dict(), atol=1e-5)
    assert not trace["eval"]


@pytest.mark.parametrize(
    ("technique", "averaged"),
    [
        ({"name": "ema", "decay": 0.8}, lambda t: t["shadow"]),
        ({"name": "swa", "start": 0.2, "every": 2}, lambda t: t),
    ],
)
def test_resume_after_a_crash_matches_uninterrupted(
    tiny_bert: str, text_csv: Path, tmp_path: Path, technique: dict, averaged: Any
) -> None:
    def recipe(name: str, marker: Path) -> dict:
        techniques = [technique, {"name": "tests.test_regularisation:Crash", "step": 7, "marker": str(marker)}]
        # one epoch: the crash and the end of training lie in the same epoch (see the report on resumes across epochs)
        return tiny_recipe(
            tiny_bert,
            text_csv,
            tmp_path / name,
            train__batch_size=4,
            train__epochs=1,
            train__checkpoint_every_steps=3,
            techniques=techniques,
        )

    done = tmp_path / "done"
    done.touch()
    straight = honed.fit(recipe("straight", done), quiet=True)
    crashing = recipe("crashed", tmp_path / "marker")
    with pytest.raises(RuntimeError, match="crash"):
        honed.fit(crashing, quiet=True)
    assert torch.load(tmp_path / "crashed/checkpoints/last.pt", weights_only=True)["progress"]["step"] == 6
    resumed = honed.fit(crashing, quiet=True, resume=True)
    for key in ("val_loss", "val_accuracy", "test_loss", "steps"):
        assert straight.metrics[key] == resumed.metrics[key], key
    assert _close(straight.model.state_dict(), resumed.model.state_dict(), atol=0)
    a, b = (torch.load(tmp_path / f"{name}/checkpoints/last.pt", weights_only=True) for name in ("straight", "crashed"))
    assert a["techniques"][0].keys() == b["techniques"][0].keys()
    assert _close(averaged(a["techniques"][0]), averaged(b["techniques"][0]), atol=0), "the same average"
    assert _close(a["model"], b["model"], atol=0), "the same live weights"
    if technique["name"] == "ema":
        assert b["techniques"][0]["updates"] == 12
    else:
        assert int(b["techniques"][0]["n_averaged"]) == 5, "steps 4, 6, 8, 10, 12 (start 0.2 of 12 steps = step 3)"


# ---------------------------------------------------------------- SWA


def test_swa_evaluates_the_mean_of_epoch_snapshots(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    techniques = [{"name": "swa", "start": 0.0}, {"name": TRACE, "key": "swa"}]
    run = honed.fit(
        tiny_recipe(tiny_bert, text_csv, tmp_path / "swa", train__epochs=3, techniques=techniques), quiet=True
    )
    trace = TRACES["swa"]
    per_epoch = len(trace["step"]) // 3
    snapshots = [trace["step"][e * per_epoch - 1] for e in (1, 2, 3)]
    for epoch in (1, 2, 3):
        mean = {n: torch.stack([s[n].float() for s in snapshots[:epoch]]).mean(0) for n in snapshots[0]}
        assert _close(mean, trace["eval"][epoch - 1], atol=1e-6), f"epoch {epoch}: the mean of the snapshots so far"
        assert _close(snapshots[epoch - 1], trace["epoch_end"][epoch - 1], atol=0), "live weights restored"
    assert _close(trace["eval"][run.metrics["best_epoch"] - 1], run.model.state_dict(), atol=0)


def test_swa_recomputes_batch_norm_for_the_average(tmp_path: Path) -> None:
    recipe = _image_recipe(
        tmp_path, "mobilenet_v3_small", techniques=[{"name": "swa", "start": 0.0}, {"name": TRACE, "key": "swa-bn"}]
    )
    recipe["train"]["epochs"] = 2
    honed.fit(recipe, quiet=True)
    trace = TRACES["swa-bn"]
    evaluated = trace["eval"][-1]
    reference = build_model(load_recipe(recipe), LabelMap(("dark", "light")))
    reference.load_state_dict(evaluated)
    torch.optim.swa_utils.update_bn(trace["bn_batches"][-1], reference)
    ref = reference.state_dict()
    norms = [n for n in evaluated if n.endswith("running_mean")]
    assert norms and _close({n: evaluated[n] for n in norms}, {n: ref[n] for n in norms}, atol=1e-5)
    assert not _close({n: evaluated[n] for n in norms}, {n: trace["epoch_end"][-1][n] for n in norms}, atol=1e-5), (
        "the average's statistics differ from the live model's"
    )
