"""A model written by `honed export` (ONNX or TorchScript, fp32 or int8) as a Predictor.

The exported folder holds the model file, labels.json, the saved recipe, the tokenizer (text) or the
image normalisation (in export.json), and export.json naming the format, the runtime that reads the file
and the model's input names in order. Inputs are prepared by the ordinary data pipeline (the recipe's
tokenisation or image transform, dynamic padding), so an exported model reads exactly what the PyTorch
model read; only the forward pass runs elsewhere: onnxruntime for ONNX (an optional extra), torch.jit
for TorchScript. Each runtime is one entry in RUNTIMES; this file is also where the folder's
preprocessing is written and read, so both sides of the format live together.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from honed.data.batches import inputs_of
from honed.data.build import make_collate, make_dataset
from honed.data.images import check_images
from honed.data.labels import LabelMap
from honed.data.loaders import eval_loader
from honed.errors import HonedError
from honed.inference.base import Predictor
from honed.inference.calibration import load_temperature, saved_temperature
from honed.inference.frames import model_inputs, saved_recipe
from honed.recipe import Recipe
from honed.registry import Registry

MARKER = "export.json"
ONNX_HINT = "pip install 'honed[onnx]' (or: pip install onnx onnxruntime)"

# A runtime turns the batch's input tensors (by name) into a (rows, classes) array of logits.
Runtime = Callable[[dict[str, torch.Tensor]], np.ndarray]
RUNTIMES: Registry[Runtime] = Registry("exported model format")


def require_onnxruntime() -> Any:
    """The onnxruntime module, or one line saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise HonedError(f"ONNX models need onnxruntime, which is not installed: {ONNX_HINT}") from exc
    return onnxruntime


@RUNTIMES.register("onnx")
def onnx_runtime(path: Path, names: list[str]) -> Runtime:
    """An onnxruntime CPU session with as many threads as torch uses (so timings compare like with like)."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
    options.log_severity_level = 3  # errors only: its graph-optimisation notes are not the user's business
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]  # an input the graph dropped as unused is not fed

    def run(inputs: dict[str, torch.Tensor]) -> np.ndarray:
        return session.run(None, {name: inputs[name].numpy() for name in wanted})[0]

    return run


@RUNTIMES.register("torchscript")
def torchscript_runtime(path: Path, names: list[str]) -> Runtime:
    """A traced module taking the inputs positionally, in the order export.json names them."""
    with warnings.catch_warnings():  # torch.jit's deprecation notice is not the user's business
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu").eval()

    @torch.no_grad()
    def run(inputs: dict[str, torch.Tensor]) -> np.ndarray:
        return module(*(inputs[name] for name in names)).float().numpy()

    return run


def save_preprocess(preprocess: Any, folder: Path) -> dict[str, Any]:
    """Write what prepares the model's inputs: a tokenizer's files, or image (mean, std) returned for
    export.json. Anything else (a fusion model's several tokenizers) cannot be exported: one line."""
    if hasattr(preprocess, "save_pretrained") and hasattr(preprocess, "get_vocab"):
        preprocess.save_pretrained(folder)
        return {"preprocess": "tokenizer"}
    if isinstance(preprocess, tuple) and len(preprocess) == 2:
        mean, std = preprocess
        return {"preprocess": "image", "mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    raise HonedError(
        f"export: this model's inputs are prepared by {type(preprocess).__name__}, which honed cannot "
        "save beside an exported model; export a single text or image model"
    )


def load_preprocess(folder: Path, meta: dict[str, Any]) -> Any:
    """The tokenizer saved in the folder, or the image statistics recorded in export.json."""
    if meta.get("preprocess") == "image":
        return tuple(meta["mean"]), tuple(meta["std"])
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def read_meta(folder: Path) -> dict[str, Any]:
    """export.json, checked for the keys the predictor needs; a damaged one is one line."""
    path = folder / MARKER
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HonedError(f"'{path}' is not a valid export.json; export the model again with `honed export`") from exc
    missing = [key for key in ("runtime", "file", "inputs") if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise HonedError(f"'{path}' lacks {', '.join(missing)}; export the model again with `honed export`")
    return meta


def input_batches(
    frame: pd.DataFrame, recipe: Recipe, labels: LabelMap, preprocess: Any, batch_size: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Collated batches (with each row's `index`) of a standard frame, prepared as in training."""
    yield from eval_loader(input_dataset(frame, recipe, labels, preprocess), batch_size,
                           make_collate(recipe, preprocess), 0)


def input_dataset(frame: pd.DataFrame, recipe: Recipe, labels: LabelMap, preprocess: Any) -> Any:
    frame = model_inputs(frame[[c for c in ("x", "x2") if c in frame]], recipe)
    if recipe.data.kind == "image":
        check_images(frame["x"], "input")
    return make_dataset(frame, labels, recipe, preprocess)


def batch_logits(run: Runtime, batches: Iterator[dict[str, torch.Tensor]], rows: int, classes: int) -> np.ndarray:
    """Logits for every row, placed by the batch's row index (a loader may batch rows out of order)."""
    out = np.zeros((rows, classes))
    for batch in batches:
        out[batch["index"].numpy()] = np.asarray(run(inputs_of(batch)), dtype=np.float64)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (what ModelPredictor returns)."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class ExportedPredictor(Predictor):
    """An exported model file run by its format's runtime, with its own preprocessing and label map."""

    def __init__(
        self,
        run: Runtime,
        preprocess: Any,
        labels: LabelMap,
        recipe: Recipe,
        meta: dict[str, Any],
        folder: Path | None = None,
    ) -> None:
        self.run, self.preprocess, self.label_map, self.recipe = run, preprocess, labels, recipe
        self.meta, self.folder, self.labels = meta, folder, labels.names

    @classmethod
    def claims(cls, folder: Path) -> bool:
        return (folder / MARKER).is_file()

    @classmethod
    def load(cls, folder: Path, overrides: dict[str, Any] | None = None) -> ExportedPredictor:
        meta = read_meta(folder)
        recipe = saved_recipe(folder, overrides)
        if recipe.augment.tta:
            raise HonedError(
                f"augment.tta={recipe.augment.tta}: an exported model predicts the plain view only; "
                "drop the override or predict with the PyTorch model folder"
            )
        factory: Any = RUNTIMES.get(meta["runtime"], f"{folder / MARKER}: runtime")
        try:
            run = factory(folder / meta["file"], list(meta["inputs"]))
        except HonedError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign model file is the user's input
            raise HonedError(
                f"'{folder / meta['file']}': cannot load the exported model: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from exc
        return cls(run, load_preprocess(folder, meta), LabelMap.load(folder), recipe, meta, folder)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        dataset = input_dataset(frame, self.recipe, self.label_map, self.preprocess)
        batches = eval_loader(dataset, self.recipe.train.eval_batch_size, make_collate(self.recipe, self.preprocess), 0)
        logits = torch.from_numpy(batch_logits(self.run, batches, len(dataset), len(self.labels)))
        merge = getattr(dataset, "merge", None)  # sliding windows: each text's windows averaged, as in PyTorch
        return softmax((merge(logits, torch.zeros(len(logits)))[0] if callable(merge) else logits).numpy())

    def saved_temperature(self) -> float | None:
        return saved_temperature(self.folder) if self.folder is not None else None

    def require_temperature(self) -> float:
        return load_temperature(self.folder) if self.folder is not None else super().require_temperature()
