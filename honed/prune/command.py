"""`honed prune MODEL_DIR --sparsity S`: prune a saved model one shot, optionally recover by
fine-tuning, and report sparsity, parameter counts, size, latency and test accuracy before/after."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from honed.errors import HonedError
from honed.prune.masks import SCOPES, check_sparsity, compute_masks
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


def add_prune_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "prune", help="prune a saved model (magnitude or structured), optionally recover, report size/latency/accuracy",
        description="Zero the smallest weights of a saved model (global or per-layer L1 magnitude over every Linear/Conv "
                    "weight), or remove whole FFN neurons (BERT-like) / zero whole conv channels (CNNs); save the pruned "
                    "model to OUTPUT/model, optionally fine-tune it N epochs with the masks held (OUTPUT/recover), and "
                    "write OUTPUT/prune.json: sparsity, parameters, size on disk, CPU latency, test accuracy before/after.")
    p.add_argument("model", help="a saved model folder (RUN_DIR/model)")
    p.add_argument("--sparsity", type=float, default=0.5, help="fraction of weights (or FFN neurons/channels) to prune, in [0, 1)")
    p.add_argument("--scope", choices=SCOPES, default="global", help="global: one threshold over all layers; layer: each layer alike")
    p.add_argument("--structured", choices=tuple(STRUCTURED), default=None,
                   help="ffn: remove FFN neurons (transformers); channels: zero conv output channels (CNNs)")
    p.add_argument("--recover-epochs", type=int, default=0, help="fine-tune the pruned model this many epochs (masks kept)")
    p.add_argument("-o", "--output", default=None, help="output folder (default: MODEL_DIR/../pruned-SPARSITY)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars or table")


def cmd_prune(args: argparse.Namespace) -> None:
    prune(args.model, args.sparsity, scope=args.scope, structured=args.structured, recover_epochs=args.recover_epochs,
          output=args.output, overwrite=args.overwrite, quiet=args.quiet)


def _test_pair(model_dir: Path) -> tuple[list[Any], list[Any]]:
    """The saved recipe's test split (val when it has none) as an (X, y) pair."""
    from honed.data.build import load_tables
    from honed.predict import saved_recipe

    frames = load_tables(saved_recipe(model_dir)).frames
    frame = frames["test"] if len(frames.get("test", ())) else frames["val"]
    if not len(frame):
        raise HonedError(f"model '{model_dir}': its recipe has no test or val split to measure accuracy on")
    return frame["x"].tolist(), frame["label"].tolist()


def _measure(model_dir: Path, pair: tuple[list[Any], list[Any]]) -> dict[str, Any]:
    import pandas as pd

    from honed.models.build import load_model
    from honed.predict import evaluate_saved, saved_recipe

    model, labels = load_model(model_dir)
    size = size_on_disk(model_dir)
    frame = pd.DataFrame({"x": pair[0], "label": pair[1]})
    return {"test_accuracy": evaluate_saved(model_dir, pair)["accuracy"], **sparsity_report(model),
            "weights_mb": size["weights_bytes"] / MB, "weights_gzip_mb": size["weights_gzip_bytes"] / MB, **size,
            "latency_ms": cpu_latency_ms(model, labels, saved_recipe(model_dir), frame)}


def prune(model: str | Path, sparsity: float = 0.5, *, scope: str = "global", structured: str | None = None,
          recover_epochs: int = 0, output: str | Path | None = None, overwrite: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Prune the saved model in `model` and return (and write to OUTPUT/prune.json) the before/after report."""
    from honed.models.build import load_model, save_model
    from honed.predict import saved_recipe

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
        raise HonedError(f"-o {out}: the output would hold or sit inside the model folder '{model_dir}'; choose another folder")
    net, labels = load_model(model_dir)
    recipe = saved_recipe(model_dir)
    if recover_epochs and net.source != "huggingface":
        raise HonedError(f"--recover-epochs: recovery fine-tuning supports Hugging Face models only, not {net.source}; "
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
    import honed

    overrides: dict[str, Any] = {"output_dir": str(out / "recover"), "train.epochs": epochs, "model.keep_layers": None,
                                 "model.name": str(out / "model")}
    averaging = {"ema", "swa"}  # averaged weights would refill the zeros the masks hold (the prune technique refuses them)
    techniques = [t.model_dump() for t in recipe.techniques if t.name not in averaging | {"prune"}]
    skipped = sorted({t.name for t in recipe.techniques} & averaging)
    if skipped:
        LOG.info("recovery fine-tuning runs without %s (weight averaging would undo the pruning)", ", ".join(skipped))
    if structured is None:
        techniques.append({"name": "prune", "sparsity": sparsity, "scope": scope, "start": 0.0, "end": 0.0})
    overrides["techniques"] = techniques
    run = honed.fit(recipe.model_dump(mode="json"), quiet=quiet, **overrides)
    return {"run_dir": str(run.run_dir), "epochs": epochs, "test_accuracy": _measure(run.model_dir, pair)["test_accuracy"],
            **sparsity_report(run.model), **param_counts(run.model)}
