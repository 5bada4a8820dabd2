"""Knowledge distillation (Hinton, Vinyals & Dean 2015): a student learns the teacher's soft labels.

    techniques:
      - {name: distill, teacher: runs/my-ensemble, temperature: 2, alpha: 0.5}

The loss becomes  alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * recipe loss on the hard
labels, where p_T is the distribution softened by temperature T (the T^2 keeps the soft term's
gradients on the scale of the hard one). The teacher is any saved model folder, run folder or
ensemble folder (honed/ensemble/saved.py), with its own tokenizer/transforms; its probabilities are
computed once per training row before training starts (`teacher_probs`).

Batches carry no row index, so each batch row is matched to its training row by content: the
token ids (without padding) for text, the pixel tensor's bytes for images. That is exact for
unaugmented rows, needs no change to datasets, collate or loop, and holds under any sampler,
process count or resume; augmented data cannot be matched and is refused up front.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from honed.errors import HonedError
from honed.techniques import TECHNIQUES

MIXING = ("mixup", "cutmix")


def distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, hard_loss: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(log p_teacher / T) || softmax(student / T)) + (1 - alpha) * hard_loss."""
    soft_teacher = torch.softmax(torch.log(teacher_probs.clamp_min(1e-12)) / temperature, dim=-1)
    log_student = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_student, soft_teacher, reduction="batchmean")
    return alpha * temperature**2 * kl + (1.0 - alpha) * hard_loss


def teacher_probs(teacher: str | Path, frame: pd.DataFrame, labels: tuple[str, ...]) -> np.ndarray:
    """The teacher's class probabilities on a standard frame, columns in the student's label order."""
    from honed.ensemble.members import member_probs, model_folder, read_labels
    from honed.ensemble.saved import is_ensemble, load_ensemble

    field = "techniques: distill.teacher"
    ensemble = load_ensemble(teacher) if is_ensemble(teacher) else None
    folder = None if ensemble else model_folder(teacher, field)
    names = ensemble.labels if ensemble else read_labels(folder)  # type: ignore[arg-type]
    if set(names) != set(labels):
        raise HonedError(f"{field}: the teacher '{teacher}' predicts ({', '.join(names)}) but the student trains on "
                         f"({', '.join(labels)}); distil onto the same label set")
    if ensemble:
        return ensemble.predict_proba(frame)[:, [names.index(n) for n in labels]]
    return member_probs(folder, frame, labels)[0]  # type: ignore[arg-type]


def row_keys(batch: dict[str, torch.Tensor]) -> list[bytes]:
    """One content key per batch row: unpadded token ids (every *input_ids key) or pixel bytes."""
    if "pixel_values" in batch:
        pixels = batch["pixel_values"].detach().float().cpu().contiguous().numpy()
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in pixels]
    keys = sorted(k for k in batch if k.endswith("input_ids"))
    rows: list[list[bytes]] = [[] for _ in range(len(batch[keys[0]]))]
    for key in keys:
        ids, mask = batch[key].cpu(), batch.get(key[: -len("input_ids")] + "attention_mask")
        for i in range(len(ids)):
            kept = ids[i][mask[i].cpu().bool()] if mask is not None else ids[i]
            rows[i].append(np.asarray(kept, dtype=np.int64).tobytes())
    return [b"|".join(parts) for parts in rows]


def dataset_keys(dataset: Any, collate: Any) -> list[bytes]:
    """The same keys for every row of the (unaugmented) training dataset, via the loader's collate."""
    keys: list[bytes] = []
    for start in range(0, len(dataset), 64):
        rows = [dataset[i] for i in range(start, min(start + 64, len(dataset)))]
        batch = collate(rows) if collate is not None else {"pixel_values": torch.stack([r["pixel_values"] for r in rows])}
        keys += row_keys(batch)
    return keys


def refuse_augmented(recipe: Any, name: str, why: str) -> None:
    """Techniques that look batch rows up by content need the rows as stored: no augmentation, no mixing."""
    mixing = [t.name for t in recipe.techniques if t.name in MIXING]
    if recipe.augment.text or recipe.augment.image or mixing:
        what = ", ".join(mixing) or "augment.text/augment.image"
        raise HonedError(f"techniques: {name} {why} and needs unaugmented training data; remove {what} or drop {name}")


class Distill:
    """Adds the distillation term to the loss of every training batch."""

    def __init__(self, teacher: str, temperature: float = 2.0, alpha: float = 0.5) -> None:
        if not isinstance(teacher, str | Path) or not str(teacher):
            raise ValueError("teacher must be a saved model, run or ensemble folder")
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.teacher, self.temperature, self.alpha = str(teacher), float(temperature), float(alpha)
        self._cache: dict[bytes, int] = {}
        self._probs: torch.Tensor | None = None
        self._batch_probs: torch.Tensor | None = None

    def check(self, recipe: Any, model: Any) -> None:
        """A missing teacher or augmented training data fails before the run folder exists."""
        from honed.ensemble.members import model_folder
        from honed.ensemble.saved import is_ensemble

        if not is_ensemble(self.teacher):
            model_folder(self.teacher, "techniques: distill.teacher")
        refuse_augmented(recipe, "distill", "caches the teacher's probabilities per training row")

    def on_fit_start(self, state: Any) -> None:
        from honed.data.build import make_collate, make_dataset
        from honed.data.labels import LabelMap

        frame = state.frames["train"]
        labels = tuple(state.labels)
        probs = teacher_probs(self.teacher, frame.reset_index(drop=True), labels)
        preprocess = state.accelerator.unwrap_model(state.model).preprocess
        dataset = make_dataset(frame, LabelMap(labels), state.recipe, preprocess, train=True)
        keys = dataset_keys(dataset, make_collate(state.recipe, preprocess))
        self._cache = {key: i for i, key in enumerate(keys)}
        self._probs = torch.as_tensor(probs, dtype=torch.float32)

    def on_batch_start(self, state: Any) -> None:
        assert self._probs is not None
        try:
            rows = [self._cache[key] for key in row_keys(state.batch)]
        except KeyError as exc:
            raise HonedError("techniques: distill met a training row it has no teacher probabilities for "
                             "(augmented by a technique?); distil on unaugmented data") from exc
        self._batch_probs = self._probs[rows]

    def on_after_loss(self, state: Any) -> None:
        teacher = self._batch_probs.to(state.logits.device)  # type: ignore[union-attr]
        state.loss = distillation_loss(state.logits, teacher, state.loss, self.temperature, self.alpha)


TECHNIQUES.register("distill")(Distill)
