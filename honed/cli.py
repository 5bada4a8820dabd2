"""The `honed` command line: `honed VERB RECIPE [key=value ...]`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from honed.errors import HonedError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"

EPILOG = """examples:
  honed train recipes/quickstart.yaml
  honed train recipes/quickstart.yaml optim.lr=3e-5 data.max_length=64 --overwrite
  honed train recipes/quickstart.yaml --resume
  honed evaluate runs/quickstart/model data.csv
  honed predict runs/quickstart/model reviews.csv -o predictions.csv
  honed recipes
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="honed", description="Fine-tune pretrained PyTorch models, then push their accuracy further.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    train = verbs.add_parser("train", help="fine-tune a model from a YAML recipe")
    train.add_argument("recipe", help="recipe YAML file (see `honed recipes`)")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=3e-5")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    train.add_argument("--resume", action="store_true", help="continue the run folder's last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    evaluate = verbs.add_parser("evaluate", help="metrics of a saved model on a labelled file")
    evaluate.add_argument("model", help="a saved model folder (RUN_DIR/model)")
    evaluate.add_argument("data", help="labelled file, image folder or asset:NAME")
    evaluate.add_argument("overrides", nargs="*", metavar="key=value", help="data overrides, e.g. data.label_column=y")

    predict = verbs.add_parser("predict", help="predicted labels and class probabilities as CSV")
    predict.add_argument("model", help="a saved model folder (RUN_DIR/model)")
    predict.add_argument("data", help="a CSV/TSV/JSONL/Parquet file, or an image folder")
    predict.add_argument("-o", "--output", default="-", help="output CSV (default: standard output)")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    verbs.add_parser("recipes", help="list the shipped recipes")
    return parser


def _overrides(items: list[str]) -> dict[str, Any]:
    from honed.recipe import parse_override

    return dict(parse_override(item) for item in items)


def cmd_train(args: argparse.Namespace) -> None:
    import honed

    started = time.perf_counter()
    run = honed.fit(args.recipe, overwrite=args.overwrite, resume=args.resume, quiet=args.quiet, **_overrides(args.overrides))
    if os.environ.get("LOCAL_RANK", "0") == "0":
        print_summary(run.metrics, run.run_dir, time.perf_counter() - started)


def print_summary(metrics: dict[str, Any], run_dir: Path, wall: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="honed: final metrics (best checkpoint)")
    table.add_column("split")
    for name in ("accuracy", "macro_f1", "loss"):
        table.add_column(name, justify="right")
    for split in ("val", "test"):
        if f"{split}_accuracy" in metrics:
            table.add_row(split, *(f"{metrics[f'{split}_{k}']:.4f}" for k in ("accuracy", "macro_f1", "loss")))
    console = Console()
    console.print(table)
    console.print(f"wall time {wall:.0f} s, training {metrics['train_samples_per_s']:.1f} samples/s, best epoch {metrics['best_epoch']}")
    console.print(f"run folder: {run_dir}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from honed.predict import evaluate_saved

    metrics = evaluate_saved(args.model, args.data, _overrides(args.overrides))
    for key, value in metrics.items():
        print(f"{key}\t{value:.4f}")


def cmd_predict(args: argparse.Namespace) -> None:
    from honed.predict import predict_frame

    out = Path(args.output)
    if args.output != "-" and out.exists() and not args.overwrite:
        raise HonedError(f"--output: '{out}' already exists; pass --overwrite to replace it")
    frame = predict_frame(args.model, args.data)
    if args.output == "-":
        frame.to_csv(sys.stdout, index=False)
    else:
        frame.to_csv(out, index=False)
        print(f"wrote {len(frame)} predictions to {out}", file=sys.stderr)


def cmd_recipes(_: argparse.Namespace) -> None:
    import yaml

    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        print(f"{path.relative_to(RECIPES_DIR.parent)}\t{tree.get('description', '')}")


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "recipes": cmd_recipes}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]  # key=value given after a flag
    try:
        COMMANDS[args.verb](args)
    except HonedError as exc:
        if args.debug:
            raise
        print(f"honed: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("honed: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
