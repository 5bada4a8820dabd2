"""Auxiliary objectives: masked-LM or a second label column next to a text task, rotation prediction
next to an image task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import honed
from honed.cli import main
from honed.techniques.aux_label import AuxLabel
from honed.techniques.aux_mlm import AuxMaskedLM, mask_tokens
from tests.conftest import text_rows, tiny_recipe
from tests.test_regularisation import _close, _image_recipe


def test_mask_tokens_keeps_specials_and_padding_and_masks_about_p() -> None:
    torch.manual_seed(0)
    ids = torch.randint(1000, 2000, (64, 40))
    ids[:, 0], ids[:, 30] = 101, 102  # [CLS] ... [SEP]
    mask = torch.ones_like(ids)
    mask[:, 31:] = 0
    ids[:, 31:] = 0
    masked, targets = mask_tokens(ids, mask, torch.tensor([0, 101, 102, 103]), 103, 30522, 0.2)
    chosen = targets != -100
    assert not chosen[:, 0].any() and not chosen[:, 30:].any(), "specials and padding are never predicted"
    assert torch.equal(targets[chosen], ids[chosen]) and torch.equal(masked[~chosen], ids[~chosen])
    assert 0.15 < chosen[:, 1:30].float().mean() < 0.25
    share = (masked[chosen] == 103).float().mean()
    assert 0.7 < share < 0.9, "about 80% of the chosen tokens become [MASK]"


def test_weight_decays_linearly_to_zero() -> None:
    aux = AuxMaskedLM(weight=0.4, decay=True)
    assert (
        aux.weight_at(0, 10) == pytest.approx(0.4)
        and aux.weight_at(5, 10) == pytest.approx(0.2)
        and aux.weight_at(10, 10) == 0
    )
    assert AuxMaskedLM(weight=0.4).weight_at(10, 10) == pytest.approx(0.4)


def test_aux_mlm_changes_training_not_the_saved_model(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    plain = honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "plain", train__epochs=1), quiet=True)
    aux = honed.fit(
        tiny_recipe(
            tiny_bert,
            text_csv,
            tmp_path / "aux",
            train__epochs=1,
            techniques=[{"name": "aux_mlm", "weight": 1.0, "probability": 0.3}],
        ),
        quiet=True,
    )
    assert plain.model.state_dict().keys() == aux.model.state_dict().keys(), "only the main model is kept"
    word = "hf.bert.embeddings.word_embeddings.weight"
    assert not torch.allclose(plain.model.state_dict()[word], aux.model.state_dict()[word]), (
        "the MLM loss reached the backbone"
    )
    saved = torch.load(tmp_path / "aux/checkpoints/last.pt", weights_only=True)["techniques"][0]
    assert {"head", "optimizer"} <= saved.keys() and saved["optimizer"]["state"], "the head trained and is checkpointed"
    assert "bias" in saved["head"] and "transform.0.weight" in saved["head"]
    assert not any("embeddings" in k for k in saved["head"]), "decoder weights are tied, not copied"


def test_aux_mlm_resume_after_a_crash_matches_uninterrupted(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    def recipe(name: str, marker: Path) -> dict:
        techniques = [
            {"name": "aux_mlm", "weight": 0.5},
            {"name": "tests.test_regularisation:Crash", "step": 5, "marker": str(marker)},
        ]
        return tiny_recipe(
            tiny_bert,
            text_csv,
            tmp_path / name,
            train__batch_size=4,
            train__epochs=1,
            train__checkpoint_every_steps=2,
            techniques=techniques,
        )

    done = tmp_path / "done"
    done.touch()
    straight = honed.fit(recipe("straight", done), quiet=True)
    crashing = recipe("crashed", tmp_path / "marker")
    with pytest.raises(RuntimeError, match="crash"):
        honed.fit(crashing, quiet=True)
    resumed = honed.fit(crashing, quiet=True, resume=True)
    assert straight.metrics["val_loss"] == resumed.metrics["val_loss"]
    assert _close(straight.model.state_dict(), resumed.model.state_dict(), atol=0)
    a, b = (
        torch.load(tmp_path / f"{n}/checkpoints/last.pt", weights_only=True)["techniques"][0]
        for n in ("straight", "crashed")
    )
    assert _close(a["head"], b["head"], atol=0), "the auxiliary head resumed exactly"


def test_aux_rotation_trains_an_image_model(tmp_path: Path) -> None:
    recipe = _image_recipe(
        tmp_path, "mobilenet_v3_small", techniques=[{"name": "aux_rotation", "weight": 0.5, "decay": True}]
    )
    run = honed.fit(recipe, quiet=True)
    head = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["techniques"][0]["head"]
    assert head["weight"].shape == (4, 1024), "4 rotations from the classifier's 1024 input features"
    assert "test_accuracy" in run.metrics


@pytest.mark.parametrize(
    ("technique", "expected"),
    [
        ({"name": "aux_rotation"}, "aux_rotation: works on data.kind=image only"),
        ({"name": "aux_mlm", "weight": 0}, "weight must be > 0"),
        ({"name": "aux_mlm", "probability": 1.5}, "probability must be in (0, 1)"),
    ],
)
def test_bad_settings_fail_in_one_line(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], technique: dict, expected: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(tiny_recipe(tiny_bert, text_csv, tmp_path / "run", techniques=[technique])), encoding="utf-8"
    )
    assert main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "run").exists(), "refused before the run folder exists"


def test_aux_mlm_on_images_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(_image_recipe(tmp_path, "mobilenet_v3_small", techniques=[{"name": "aux_mlm"}])),
        encoding="utf-8",
    )
    assert main(["train", str(path), "--quiet"]) == 2
    assert "aux_mlm: works on data.kind=text only" in capsys.readouterr().err


SEEN: list[tuple[list[int], list[int]]] = []


class RecordingAuxLabel(AuxLabel):
    """aux_label that records (auxiliary targets, main labels) of every training batch."""

    def on_batch_start(self, state: Any) -> None:
        super().on_batch_start(state)
        SEEN.append((self._targets.tolist(), state.batch["labels"].tolist()))


def test_aux_label_reads_its_column_for_each_batch_row(tiny_bert: str, tmp_path: Path) -> None:
    frame = text_rows(40)
    frame["genre"] = ["g_" + label for label in frame["label"]]
    frame.loc[[0, 1, 2], "genre"] = None  # rows without an auxiliary label are skipped
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    SEEN.clear()
    techniques = [{"name": "tests.test_auxiliary:RecordingAuxLabel", "column": "genre"}]
    run = honed.fit(
        tiny_recipe(tiny_bert, tmp_path / "reviews.csv", tmp_path / "run", techniques=techniques), quiet=True
    )
    classes = {0: "g_neg", 1: "g_pos"}  # label ids follow the sorted label names, aux classes too
    pairs = [(t, y) for targets, labels in SEEN for t, y in zip(targets, labels, strict=True)]
    assert len(pairs) == run.metrics["steps"] * 8, "24 training rows in batches of 8, every row seen"
    assert all(t == -100 or classes[t] == "g_" + ("neg", "pos")[y] for t, y in pairs), "each row's own genre"
    assert 0 < sum(t == -100 for t, _ in pairs) <= 3 * 2, "the three empty rows (when in train) are skipped"
    head = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["techniques"][0]["head"]
    assert head["weight"].shape == (2, 32)


def test_aux_label_column_missing_fails_in_one_line(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.yaml"
    recipe = tiny_recipe(tiny_bert, text_csv, tmp_path / "run", techniques=[{"name": "aux_label", "column": "genre"}])
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    assert main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1
        and "aux_label.column: no column 'genre' in data.train; columns are: text, label" in err
    ), err
    assert not (tmp_path / "run").exists()


def test_aux_label_targets_follow_augmented_rows(tiny_bert: str, tmp_path: Path) -> None:
    """Targets are looked up by each row's index, so augmented rows keep their own target."""
    frame = text_rows(40)
    frame["genre"] = ["g_" + label for label in frame["label"]]
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    SEEN.clear()
    techniques = [{"name": "tests.test_auxiliary:RecordingAuxLabel", "column": "genre"}]
    recipe = tiny_recipe(
        tiny_bert,
        tmp_path / "reviews.csv",
        tmp_path / "run",
        techniques=techniques,
        augment={"text": [{"name": "word_dropout", "p": 0.3}]},
    )
    run = honed.fit(recipe, quiet=True)
    classes = {0: "g_neg", 1: "g_pos"}
    pairs = [(t, y) for targets, labels in SEEN for t, y in zip(targets, labels, strict=True)]
    assert len(pairs) == run.metrics["steps"] * 8
    assert all(classes[t] == "g_" + ("neg", "pos")[y] for t, y in pairs), "each augmented row keeps its own genre"
