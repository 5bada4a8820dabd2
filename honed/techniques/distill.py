"""Knowledge distillation (Hinton, Vinyals & Dean 2015): a student learns the teacher's soft labels.

    techniques:
      - {name: distill, teacher: runs/my-ensemble, temperature: 2, alpha: 0.5}

The loss becomes  alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * recipe loss on the hard
labels, where p_T is the distribution softened by temperature T (the T^2 keeps the soft term's
gradients on the scale of the hard one). The teacher is any saved model, run or ensemble folder,
loaded as a Predictor by the inference layer (handed in by the fit as `load_predictor`: techniques
sit below that layer and never ask what kind of folder they hold).

Measured (bench/RESULTS.md, "Distillation sweep": a TextCNN student of MiniLM on Rotten Tomatoes): temperature
1-4 and alpha 0.5-0.9 differ by less than the seed spread, so the defaults stay T 2, alpha 0.5; training the
student 3x longer doubled the gain (+0.9 -> +1.6 points), and teacher-labelled unlabelled in-domain rows added to
data.train lifted it further (39% of the teacher's lead kept). The climb's distillation trains 3x longer.

Plain training rows: the teacher's probabilities are computed once per training row before training
and each batch looks its rows up by `state.batch_index`. Augmented or mixed rows differ from the
stored ones, so the teacher scores each such batch live, on the very tensors the student sees; that
needs a single-model teacher that reads the same inputs (the same tokenizer, or the same image
statistics), checked before the run folder exists.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from honed.errors import HonedError
from honed.techniques import TECHNIQUES, flagged
from honed.train.events import Technique

FIELD = "techniques: distill.teacher"


def distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, hard_loss: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(log p_teacher / T) || softmax(student / T)) + (1 - alpha) * hard_loss."""
    soft_teacher = torch.softmax(torch.log(teacher_probs.clamp_min(1e-12)) / temperature, dim=-1)
    log_student = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_student, soft_teacher, reduction="batchmean")
    return alpha * temperature**2 * kl + (1.0 - alpha) * hard_loss


def changes_rows(recipe: Any) -> bool:
    """True when training rows reach the model changed from how they are stored: the recipe's
    augmentation, or a technique that declares it mixes or augments batches."""
    return bool(recipe.augment.text or recipe.augment.image or flagged(recipe, "mixes_batches")
                or flagged(recipe, "augments_inputs"))


class Distill(Technique):
    """Adds the distillation term to the loss of every training batch."""

    needs_row_index = True
    tasks = ("classification",)  # matches the teacher's class probabilities
    uses = ("load_predictor",)  # provided by the fit (see Hooks.provide)

    def __init__(self, teacher: str, temperature: float = 2.0, alpha: float = 0.5) -> None:
        if not isinstance(teacher, str | Path) or not str(teacher):
            raise ValueError("teacher must be a saved model, run or ensemble folder")
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.teacher, self.temperature, self.alpha = str(teacher), float(temperature), float(alpha)
        self.load_predictor: Callable[[str, str], Any] | None = None
        self._predictor: Any = None
        self._live = False
        self._probs: torch.Tensor | None = None
        self._columns: list[int] = []

    def check(self, recipe: Any, model: Any) -> None:
        """A missing teacher, or live scoring the teacher cannot do, fails before the run folder exists
        (another label set fails at fit start, when the data's labels are known)."""
        if self.load_predictor is None:
            raise HonedError("techniques: distill needs the fit to provide load_predictor; train it with honed.fit")
        teacher = self.load_predictor(self.teacher, FIELD)
        self._predictor, self._live = teacher, changes_rows(recipe)
        if self._live and not teacher.reads_like(model.preprocess):
            raise HonedError(f"{FIELD}: augmented or mixed rows are scored live on the student's own inputs, which the "
                             f"teacher '{self.teacher}' cannot read (an ensemble, or another tokenizer or image "
                             "statistics); distil from a single model with the student's preprocessing or train "
                             "without augment/mixing")

    def _order(self, names: list[str], labels: list[str]) -> list[int]:
        if set(names) != set(labels):
            raise HonedError(f"{FIELD}: the teacher '{self.teacher}' predicts ({', '.join(names)}) "
                             f"but the student trains on ({', '.join(labels)}); distil onto the same label set")
        return [names.index(n) for n in labels]

    def on_fit_start(self, state: Any) -> None:
        if self._predictor is None:  # check() ran on another instance (e.g. a test builds its own)
            self.check(state.recipe, state.accelerator.unwrap_model(state.model))
        self._columns = self._order(list(self._predictor.labels), list(state.labels))
        if not self._live:
            probs = self._predictor.predict_proba(state.frames["train"].reset_index(drop=True))
            self._probs = torch.as_tensor(probs[:, self._columns], dtype=torch.float32)

    def batch_teacher(self, state: Any) -> torch.Tensor:
        """The teacher's probabilities for the rows of the current batch, in the student's class order."""
        if self._live:
            return self._predictor.batch_proba(state.batch)[:, self._columns].float()
        assert self._probs is not None and state.batch_index is not None
        return self._probs[state.batch_index.cpu()]

    def on_after_loss(self, state: Any) -> None:
        teacher = self.batch_teacher(state).to(state.logits.device)
        state.loss = distillation_loss(state.logits, teacher, state.loss, self.temperature, self.alpha)


TECHNIQUES.register("distill")(Distill)
