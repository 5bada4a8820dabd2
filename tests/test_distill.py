"""Distillation: the loss formula, the per-row teacher cache, a student trained from an ensemble."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from honed.errors import HonedError
from honed.techniques.distill import Distill, distillation_loss
from tests.conftest import recomputed_accuracy, text_rows, tiny_recipe


def test_loss_is_the_weighted_sum_of_soft_kl_and_hard_loss() -> None:
    torch.manual_seed(0)
    student = torch.randn(6, 3)
    teacher = torch.softmax(torch.randn(6, 3), dim=-1)
    hard = F.cross_entropy(student, torch.tensor([0, 1, 2, 0, 1, 2]))
    assert distillation_loss(student, teacher, hard, 2.0, 0.0) == pytest.approx(float(hard))
    same = distillation_loss(student, torch.softmax(student, dim=-1), hard, 3.0, 1.0)
    assert float(same) == pytest.approx(0.0, abs=1e-5)  # a student equal to its teacher has nothing to learn
    t = 2.0
    soft_t = torch.softmax(torch.log(teacher) / t, dim=-1)
    kl = (soft_t * (soft_t.log() - torch.log_softmax(student / t, dim=-1))).sum(dim=1).mean()
    expected = 0.3 * t * t * kl + 0.7 * hard
    assert float(distillation_loss(student, teacher, hard, t, 0.3)) == pytest.approx(float(expected), rel=1e-5)


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="alpha"):
        Distill("x", alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        Distill("x", temperature=0)


def test_student_learns_from_an_ensemble_teacher(tiny_bert: str, tmp_path: Path) -> None:
    import honed
    from honed.ensemble import build_ensemble
    from honed.techniques import distill

    data = tmp_path / "reviews.csv"
    text_rows(60).to_csv(data, index=False)
    teacher = tiny_recipe(tiny_bert, data, tmp_path / "ens", report={"enabled": False})
    teacher["train"]["epochs"] = 1
    teacher["ensemble"] = {"method": "voting", "members": [{"name": "a"}, {"name": "b", "overrides": {"seed": 1}}]}
    build_ensemble(teacher, quiet=True)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    seen: list[int] = []
    original = distill.Distill.batch_teacher

    def spy(self: distill.Distill, state: object) -> torch.Tensor:
        probs = original(self, state)
        seen.append(len(probs))
        assert probs.shape[1] == 2
        rows = state.batch_index.tolist()  # type: ignore[attr-defined]
        frame = state.frames["train"]  # type: ignore[attr-defined]
        assert (
            [t.rsplit("#", 1)[1] for t in frame["x"].iloc[rows]]
            == [  # the very rows of the batch, by their text
                tok.decode(ids[mask.bool()][1:-1]).rsplit("#", 1)[1].strip()
                for ids, mask in zip(state.batch["input_ids"], state.batch["attention_mask"], strict=True)
            ]
        )  # type: ignore[attr-defined]
        assert torch.equal(probs, self._probs[state.batch_index])  # type: ignore[attr-defined,index]
        return probs

    distill.Distill.batch_teacher = spy  # type: ignore[method-assign]
    try:
        student = tiny_recipe(
            tiny_bert,
            data,
            tmp_path / "student",
            report={"enabled": False},
            techniques=[{"name": "distill", "teacher": str(tmp_path / "ens"), "temperature": 2, "alpha": 0.7}],
        )
        run = honed.fit(student, quiet=True)
    finally:
        distill.Distill.batch_teacher = original  # type: ignore[method-assign]
    assert sum(seen) == 2 * 36  # every training row found its teacher row, both epochs
    assert run.metrics["val_accuracy"] == pytest.approx(recomputed_accuracy(run.model_dir, run.recipe, "val"), abs=1e-6)
    bad = dict(student, output_dir=str(tmp_path / "bad"), augment={"text": [{"name": "word_dropout", "p": 0.1}]})
    with pytest.raises(HonedError, match=r"cannot read \(an ensemble"):
        honed.fit(bad, quiet=True)
    missing = dict(
        student, output_dir=str(tmp_path / "bad"), techniques=[{"name": "distill", "teacher": str(tmp_path / "none")}]
    )
    with pytest.raises(HonedError, match="distill.teacher: .*not found"):
        honed.fit(missing, quiet=True)
    assert not (tmp_path / "bad").exists()


def test_augmented_student_gets_live_teacher_probabilities(tiny_bert: str, tmp_path: Path) -> None:
    """With augmented rows the teacher scores the very tensors the student sees, batch by batch."""
    import honed
    from honed.inference import load_predictor
    from honed.techniques import distill

    data = tmp_path / "reviews.csv"
    text_rows(60).to_csv(data, index=False)
    teacher = honed.fit(tiny_recipe(tiny_bert, data, tmp_path / "teacher", report={"enabled": False}), quiet=True)
    model = load_predictor(teacher.run_dir).model  # type: ignore[attr-defined]
    checked: list[int] = []
    original = distill.Distill.batch_teacher

    def spy(self: distill.Distill, state: object) -> torch.Tensor:
        probs = original(self, state)
        with torch.no_grad():
            expected = torch.softmax(model.eval()(**state.batch).float(), dim=-1)  # type: ignore[attr-defined]
        assert torch.allclose(probs, expected, atol=1e-5)
        checked.append(len(probs))
        return probs

    distill.Distill.batch_teacher = spy  # type: ignore[method-assign]
    try:
        student = tiny_recipe(
            tiny_bert,
            data,
            tmp_path / "student",
            report={"enabled": False},
            seed=3,
            augment={"text": [{"name": "word_dropout", "p": 0.3}]},
            techniques=[{"name": "distill", "teacher": str(teacher.run_dir), "alpha": 0.5}],
        )
        honed.fit(student, quiet=True)
    finally:
        distill.Distill.batch_teacher = original  # type: ignore[method-assign]
    assert sum(checked) == 2 * 36
