"""`honed prune MODEL_DIR --sparsity S`: prune a saved model one shot, optionally recover by
fine-tuning, and report sparsity, parameter counts, size, latency and test accuracy before/after."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from honed.errors import HonedError, require_task
from honed.models.kinds import RECOVERY_FINETUNE
from honed.models.masks import SCOPES, check_sparsity, compute_masks
from honed.prune.report import (
    cpu_latency_ms,
    param_counts,
    print_table,
    size_on_disk,
    sparsity_report,
)
from honed.prune.structured import STRUCTURED
from honed.rundir import LOG

MB = 1024 * 1024


def _test_pair(model_dir: Path) -> tuple[list[Any], list[Any]]:
    """The saved recipe's test split (val when it has none) as an (X, y) pair."""
    from honed.data.build import load_tables
    from honed.inference import saved_recipe

    frames = load_tables(saved_recipe(model_dir)).frames
    frame = frames["test"] if len(frames.get("test", ())) else frames["val"]
    if not len(frame):
        raise HonedError(f"model '{model_dir}': its recipe has no test or val split to measure accuracy on")
    return frame["x"].tolist(), frame["label"].tolist()


def _measure(model_dir: Path, pair: tuple[list[Any], list[Any]]) -> dict[str, Any]:
    import pandas as pd

    from honed.evaluate.saved import evaluate_predictor
    from honed.inference import ModelPredictor

    predictor = ModelPredictor.load(model_dir)  # pruning acts on a model's weights, so a model is what it scores
    size = size_on_disk(model_dir)
    frame = pd.DataFrame({"x": pair[0], "label": pair[1]})
    return {"test_accuracy": evaluate_predictor(predictor, pair)["accuracy"], **sparsity_report(predictor.model),
            "weights_mb": size["weights_bytes"] / MB, "weights_gzip_mb": size["weights_gzip_bytes"] / MB, **size,
            "latency_ms": cpu_latency_ms(predictor, frame)}


def prune(model: str | Path, sparsity: float = 0.5, *, scope: str = "global", structured: str | None = None,
          recover_epochs: int = 0, output: str | Path | None = None, overwrite: bool = False,
          quiet: bool = False) -> dict[str, Any]:
    """Prune the saved model in `model` and return (and write to OUTPUT/prune.json) the before/after report."""
    from honed.inference import saved_recipe
    from honed.models.build import load_model, save_model

    model_dir = Path(model)
    if not model_dir.is_dir():
        raise HonedError(f"model '{model_dir}': folder not found; give a saved model folder (RUN_DIR/model)")
    sparsity = check_sparsity(sparsity, "--sparsity")
    if scope not in SCOPES:
        raise HonedError(f"--scope {scope}: use one of {', '.join(SCOPES)}")
    if structured is not None and structured not in STRUCTURED:
        raise HonedError(f"--structured {structured}: use one of {', '.join(STRUCTURED)}")
    if recover_epochs < 0:
        raise HonedError(f"--recover-epochs {recover_epochs}: must be 0 or more")
    out = Path(output) if output else model_dir.parent / f"pruned-{sparsity:g}"
    if out.exists() and not overwrite:
        raise HonedError(f"output '{out}' exists; pass --overwrite or choose another -o")
    here, there = model_dir.resolve(), out.resolve()
    if here == there or there in here.parents or here in there.parents:
        raise HonedError(f"-o {out}: the output would hold or sit inside the model folder '{model_dir}'; "
                         "choose another folder")
    net, labels = load_model(model_dir)
    require_task("prune", labels.task, ("classification",))  # pruning is scored by test accuracy
    recipe = saved_recipe(model_dir)
    if recover_epochs and not net.kind.supports(RECOVERY_FINETUNE):
        raise HonedError("--recover-epochs: recovery fine-tuning supports Hugging Face models only, "
                         f"not {net.kind.name}; "
                         "prune without it and fine-tune the pruned weights yourself")
    if structured:
        details = STRUCTURED[structured](net, sparsity)  # checks the model kind before anything is written
    else:
        compute_masks(net, sparsity, scope)
        details = {"structure": "unstructured", "scope": scope}
    pair = _test_pair(model_dir)
    if out.exists():
        shutil.rmtree(out)
    save_model(net.eval(), labels, out / "model", recipe.to_yaml())
    result: dict[str, Any] = {"model": str(model_dir), "output": str(out), "sparsity": sparsity, **details,
                              "before": _measure(model_dir, pair), "after": _measure(out / "model", pair)}
    if recover_epochs:
        result["recovered"] = _recover(out, recipe, sparsity, scope, structured, recover_epochs, quiet, pair)
    (out / "prune.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    if not quiet:
        print_table(result)
    return result


def _recover(out: Path, recipe: Any, sparsity: float, scope: str, structured: str | None, epochs: int, quiet: bool,
             pair: tuple[list[Any], list[Any]]) -> dict[str, Any]:
    """Fine-tune the pruned model `epochs` epochs; unstructured masks are held by the `prune` technique
    (target reached at step 0, so it re-derives exactly the zeros the one-shot pruning made)."""
    from honed.fit import fit

    overrides: dict[str, Any] = {"output_dir": str(out / "recover"), "train.epochs": epochs, "model.keep_layers": None,
                                 "model.name": str(out / "model")}
    from honed.techniques import flagged

    # averaged weights would refill the zeros the masks hold; an earlier pruning schedule is replaced by this one
    dropped = set(flagged(recipe, "swaps_weights_for_eval")) | set(flagged(recipe, "keeps_weights_sparse"))
    techniques = [t.model_dump() for t in recipe.techniques if t.name not in dropped]
    skipped = sorted(set(flagged(recipe, "swaps_weights_for_eval")))
    if skipped:
        LOG.info("recovery fine-tuning runs without %s (weight averaging would undo the pruning)", ", ".join(skipped))
    if structured is None:
        techniques.append({"name": "prune", "sparsity": sparsity, "scope": scope, "start": 0.0, "end": 0.0})
    overrides["techniques"] = techniques
    run = fit(recipe.model_dump(mode="json"), quiet=quiet, **overrides)
    test_accuracy = _measure(run.model_dir, pair)["test_accuracy"]
    return {"run_dir": str(run.run_dir), "epochs": epochs, "test_accuracy": test_accuracy,
            **sparsity_report(run.model), **param_counts(run.model)}
