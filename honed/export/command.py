"""`honed export MODEL_DIR --format onnx|torchscript [--quantize int8]`: write a saved model as an ONNX or
TorchScript file (optionally int8), checked against the PyTorch outputs on the recipe's test split.

The export is built in a staging folder and only moved to the output once its predicted labels agree
with PyTorch's on at least MIN_AGREEMENT of the rows; a refused export leaves nothing behind, and an
existing output is replaced only with `overwrite`. The folder gets export.json (format, quantization,
input names, the check) and export_report.json (size, CPU latency at batch 1 and 32, accuracy, each
before and after).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from honed.data.batches import inputs_of
from honed.data.labels import LabelMap
from honed.errors import HonedError, require_task
from honed.export.formats import EXPORTERS, QUANTIZE_MODES, Exporter
from honed.export.measure import accuracy, agreement, latency_ms, print_table, size_on_disk, torch_run
from honed.inference.calibration import CALIBRATION_FILE
from honed.inference.exported import MARKER, ExportedPredictor, input_batches, save_preprocess
from honed.inference.frames import saved_recipe
from honed.inference.model import ModelPredictor, model_folder
from honed.models.base import Classifier
from honed.models.build import load_model
from honed.recipe import Recipe

MIN_AGREEMENT = 0.995  # float exports: share of check rows whose predicted label must match PyTorch's
MAX_QUANTIZED_DROP = 0.005  # quantized exports: at most this much lower accuracy on the check rows (0.5 point)
REPORT_FILE = "export_report.json"


def export_model(model_dir: str | Path, format: str = "onnx", quantize: str | None = None,
                 output: str | Path | None = None, overwrite: bool = False, *, quiet: bool = False,
                 min_agreement: float = MIN_AGREEMENT, max_rows: int | None = None) -> dict[str, Any]:
    """Export the model saved in `model_dir` (a model or run folder) and return the report written to
    OUTPUT/export_report.json; `max_rows` caps the check rows (default: the whole test or val split)."""
    if (Path(model_dir) / MARKER).is_file():
        raise HonedError(f"MODEL_DIR: '{model_dir}' is already an exported model; export from the PyTorch model "
                         "folder its export.json names (source_model)")
    folder = model_folder(model_dir, "MODEL_DIR")
    if not 0.0 <= min_agreement <= 1.0:
        raise HonedError(f"--min-agreement {min_agreement}: must lie in [0, 1] (default {MIN_AGREEMENT})")
    exporter = EXPORTERS.build(format, "--format")
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise HonedError(f"--quantize {quantize}: use one of {', '.join(QUANTIZE_MODES)}, or leave it out for float32")
    exporter.check_available()
    out = _output_folder(folder, format, quantize, output, overwrite)
    model, labels = load_model(folder)
    require_task("export", labels.task, ("classification",))  # the checks compare predicted labels
    model = model.eval().cpu()
    recipe = saved_recipe(folder, {"augment.tta": 0})  # the file computes the plain view; TTA stays in PyTorch
    frame, split = _check_rows(folder, recipe, max_rows)
    stage = Path(tempfile.mkdtemp(prefix="honed-export-"))
    try:
        meta = _write_folder(stage, folder, model, labels, recipe, exporter, format, quantize, frame)
        exported = ExportedPredictor.load(stage)
        before = ModelPredictor(model, labels, recipe, folder).predict_proba(frame)
        after = exported.predict_proba(frame)
        targets = labels.encode(frame["label"])
        checks = {"split": split, **agreement(before, after), "min_agreement": min_agreement}
        _gate(checks, accuracy(before, targets), accuracy(after, targets),
              f"{format}{' ' + quantize if quantize else ''}", quantized=quantize is not None)
        _write_json(stage / MARKER, {**meta, "checks": checks})
        speed = _latencies(model, exported, frame)
        result = {"model": str(folder), "output": str(out), "format": format, "quantized": quantize, "checks": checks,
                  "before": {**size_on_disk(folder), **speed["pytorch"], "accuracy": accuracy(before, targets)},
                  "after": {**size_on_disk(stage), **speed["exported"], "accuracy": accuracy(after, targets)}}
        _write_json(stage / REPORT_FILE, result)
        _publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if not quiet:
        print_table(result)
    return result


def _gate(checks: dict[str, Any], before: float, after: float, what: str, quantized: bool) -> None:
    """Refuse an export that does not do what the PyTorch model does: a float export must give the same
    label on >= min_agreement of the check rows; a quantized one is lossy by design, so it may flip labels
    but must not lose more than MAX_QUANTIZED_DROP accuracy on them (both figures are kept in checks)."""
    rule = f"accuracy drop <= {MAX_QUANTIZED_DROP}" if quantized else f"label agreement >= {checks['min_agreement']}"
    checks.update(accuracy_before=before, accuracy_after=after, rule=rule)
    failed = before - after > MAX_QUANTIZED_DROP if quantized else checks["label_agreement"] < checks["min_agreement"]
    if not failed:
        return
    need = (f"accuracy {after:.4f} vs PyTorch's {before:.4f}, a drop over {MAX_QUANTIZED_DROP:.1%}" if quantized
            else f"needs {checks['min_agreement']:.1%}")
    raise HonedError(f"export refused: the {what} model's labels agree with PyTorch on {checks['label_agreement']:.2%} "
                     f"of {checks['rows']} {checks['split']} rows ({need}; max |probability difference| "
                     f"{checks['max_abs_prob_diff']:.4f}); nothing was written")


def default_output(folder: Path, format: str, quantize: str | None) -> Path:
    """MODEL_DIR/../export-FORMAT[-int8]: beside the model, inside its run folder."""
    return folder.parent / f"export-{format}{'-' + quantize if quantize else ''}"


def _output_folder(folder: Path, format: str, quantize: str | None, output: str | Path | None,
                   overwrite: bool) -> Path:
    """Where the export goes; an existing one without `overwrite`, or one inside the model, is one line."""
    out = Path(output) if output else default_output(folder, format, quantize)
    if out.exists() and not overwrite:
        raise HonedError(f"--output: '{out}' already exists; pass --overwrite to replace it or choose another -o")
    here, there = folder.resolve(), out.resolve()
    if here == there or there in here.parents or here in there.parents:
        raise HonedError(f"--output {out}: the export would hold or sit inside the model folder '{folder}'; "
                         "choose another folder")
    return out


def _check_rows(folder: Path, recipe: Recipe, max_rows: int | None) -> tuple[pd.DataFrame, str]:
    """The recipe's test split (val when it has none), the real rows the export is checked and timed on."""
    from honed.data.build import load_tables

    frames = load_tables(recipe).frames
    split = "test" if len(frames.get("test", ())) else "val"
    frame = frames.get(split, pd.DataFrame())
    if not len(frame):
        raise HonedError(f"model '{folder}': its recipe has no test or val split to check the export on")
    if max_rows is not None:
        if max_rows < 1:
            raise HonedError(f"--max-rows {max_rows}: must be at least 1")
        frame = frame.head(max_rows)
    return frame.reset_index(drop=True), split


def _write_folder(stage: Path, folder: Path, model: Classifier, labels: LabelMap, recipe: Recipe, exporter: Exporter,
                  format: str, quantize: str | None, frame: pd.DataFrame) -> dict[str, Any]:
    """The model file, labels, recipe, preprocessing and a first export.json (checks follow) in `stage`."""
    preprocess = save_preprocess(model.preprocess, stage)
    labels.save(stage)
    (stage / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    if (folder / CALIBRATION_FILE).is_file():
        shutil.copy2(folder / CALIBRATION_FILE, stage / CALIBRATION_FILE)
    example = next(input_batches(frame.head(8), recipe, labels, model.preprocess, 8))
    names = list(inputs_of(example))
    axes = {name: {0: "batch", 1: "sequence"} if recipe.data.kind == "text" else {0: "batch"} for name in names}
    try:
        exporter.write(model, tuple(example[n] for n in names), names, axes, stage / exporter.file, quantize)
    except HonedError:
        raise
    except Exception as exc:  # noqa: BLE001 - an exporter that cannot handle this model is reported in one line
        raise HonedError(f"export: {format} export of '{folder}' failed: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    meta = {"format": format, "runtime": exporter.runtime, "quantized": quantize, "file": exporter.file,
            "inputs": names, "dynamic_axes": axes, "kind": recipe.data.kind, **preprocess,
            "source_model": str(folder), "torch": torch.__version__}
    _write_json(stage / MARKER, meta)
    return meta


def _latencies(model: Classifier, exported: ExportedPredictor, frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per-example CPU latency of the PyTorch model and the exported file on the same tensors: 16 rows one
    at a time (batch 1) and one batch of up to 32 rows."""
    prep = (exported.recipe, exported.label_map, exported.preprocess)
    batches = {"batch1": [inputs_of(b) for b in input_batches(frame.head(16), *prep, 1)],
               "batch32": [inputs_of(b) for b in input_batches(frame.head(32), *prep, 32)]}
    return latency_ms({"pytorch": torch_run(model), "exported": exported.run}, batches)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def _publish(stage: Path, out: Path) -> None:
    """Move the checked export into place, replacing an existing output (allowed by the caller)."""
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(stage), str(out))
