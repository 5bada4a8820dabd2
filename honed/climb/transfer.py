"""climb.transfer: unlabelled in-domain rows the climb's distilled student also learns from (Hinton et al.'s
transfer set; bench/distill.py measured +0.6 points over self-training on the same rows, and bench/distill_minilm.py
an all-mpnet-base-v2 teacher into MiniLM).

The rows are read as `honed predict` reads its input and checked before the climb's folder is touched; rows whose
input is also a val or test input are dropped (they would leak the scored rows into training). They are written as
data/transfer-<hash>.csv (the hash of their inputs, so a resumed climb given other rows never reuses the old ones);
when a kept ensemble is distilled, its first pair labels them and data/train_transfer-<hash>-<teacher>.csv holds
the training rows, then these. The student learns only the teacher's soft labels there (alpha 1), so the guessed
hard labels only fill the label column.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from honed.errors import HonedError
from honed.inference.base import load_predictor
from honed.inference.frames import unlabelled_frame
from honed.recipe import Recipe

NEEDS = ("the rows are for distilling a kept ensemble into one model, which needs a classification climb paired on "
         "seeds, with the ensemble stage and single_model: true (--single-model)")


def transfer_rows(recipe: Recipe, spec: Any, task: str, pairing: str,
                  frames: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], int]:
    """{'transfer-<hash>': rows} to write beside the splits ({} without climb.transfer) and how many rows were
    dropped for repeating a val or test input."""
    source = spec.transfer
    if source is None:
        return {}, 0
    if task != "classification" or not spec.single_model or pairing != "seeds" or "ensemble" not in spec.enabled():
        raise HonedError(f"climb.transfer: {NEEDS}")
    if recipe.data.kind == "text" and Path(source).is_dir():
        raise HonedError(f"climb.transfer: '{source}' is a folder; a text climb reads a table with the "
                         f"column {recipe.data.text_column} (data.text_column)")
    try:
        rows = unlabelled_frame(source, recipe)
    except HonedError as exc:
        raise HonedError(f"climb.transfer: {str(exc).removeprefix('input: ')}") from None
    if recipe.data.kind == "image":  # a folder's paths are read relative to here; the climb's files elsewhere
        rows["x"] = rows["x"].map(lambda p: str(Path(p).resolve()))
    columns = [c for c in ("x", "x2") if c in rows]
    scored = pd.concat([frames[s] for s in ("val", "test")])
    keep = ~_inputs(rows, columns).isin(set(_inputs(scored, columns)))
    if not keep.any():
        raise HonedError(f"climb.transfer: every row of '{source}' is also a val or test input")
    rows = rows[keep].reset_index(drop=True)
    digest = hashlib.sha256(rows[columns].astype(str).to_csv(index=False).encode()).hexdigest()[:10]
    return {f"transfer-{digest}": rows}, int((~keep).sum())


def _inputs(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Each row's input (text and pair) as one string, to match rows across frames."""
    return frame[columns].astype(str).agg("\x1f".join, axis=1)


def train_transfer(folder: Path, written: str, teacher: str, teacher_id: str,
                   show: Any) -> tuple[str, int, int]:
    """The training file with the transfer rows, labelled by `teacher` (written once per rows and teacher, so a
    resumed climb reads the same file): its path, the transfer rows and the training rows."""
    data = folder / "data"
    train = pd.read_csv(data / "train.csv", keep_default_na=False)
    rows = pd.read_csv(data / f"{written}.csv", keep_default_na=False)
    path = data / f"train_{written}-{teacher_id}.csv"
    if not path.is_file():
        show(f"ensemble: the teacher labels the {len(rows)} rows of climb.transfer")
        rows["label"] = load_predictor(teacher).predict(rows)
        pd.concat([train, rows], ignore_index=True).to_csv(path.with_suffix(".tmp"), index=False)
        path.with_suffix(".tmp").replace(path)
    return str(path.resolve()), len(rows), len(train)
