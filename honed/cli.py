"""The `honed` command line: `honed VERB RECIPE [key=value ...]`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from honed.audit.commands import add_audit_parsers, cmd_audit, cmd_clean
from honed.tune.commands import add_tune_parsers, cmd_cv, cmd_tune
from honed.prune.command import add_prune_parser, cmd_prune
from honed.pretrain.command import add_pretrain_parser, cmd_pretrain
from honed.errors import HonedError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"

EPILOG = """examples:
  honed train recipes/quickstart.yaml
  honed train recipes/quickstart.yaml optim.lr=3e-5 data.max_length=64 --overwrite
  honed train recipes/quickstart.yaml --resume
  honed evaluate runs/quickstart/model data.csv
  honed predict runs/quickstart/model reviews.csv -o predictions.csv
  honed predict runs/quickstart/model reviews.csv --calibrated      # temperature-scaled probabilities
  honed evaluate runs/quickstart/model data.csv --report reports/holdout
  honed report runs/quickstart report.slices=[movie_name]          # rebuild RUN_DIR/report.html
  honed lr-find recipes/quickstart.yaml --steps 100
  honed batch-find recipes/quickstart.yaml --max 256
  honed audit recipes/quickstart.yaml data.labels=null --output audit-rt
  honed clean recipes/quickstart.yaml --labels relabel --label-threshold 0.9 --output clean-rt
  honed ensemble recipes/ensemble.yaml                              # members + combiner -> runs/ensemble/
  honed ensemble recipes/ensemble.yaml ensemble.method=stacking ensemble.stacking.folds=3 --overwrite
  honed predict runs/ensemble reviews.csv                          # an ensemble folder works like a model
  honed tune recipes/tune-quickstart.yaml --workers 2             # Optuna search over the recipe's search: section
  honed tune recipes/tune-quickstart.yaml --storage postgresql://user:pw@db/honed   # same command on every machine
  honed cv recipes/quickstart.yaml --folds 5                         # mean ± std, out-of-fold probabilities
  honed prune runs/quickstart/model --sparsity 0.5 --recover-epochs 1   # magnitude pruning + report (prune.json)
  honed pretrain recipes/pretrain-rotten-tomatoes.yaml               # masked-LM on the training texts -> RUN_DIR/backbone
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
    evaluate.add_argument("--report", metavar="DIR", default=None,
                          help="also write the error-analysis report (report.html + report.json) into DIR")
    evaluate.add_argument("--calibrated", action="store_true", help="apply the temperature saved with the model (model/calibration.json)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing report in --report DIR")

    predict = verbs.add_parser("predict", help="predicted labels and class probabilities as CSV")
    predict.add_argument("model", help="a saved model folder (RUN_DIR/model)")
    predict.add_argument("data", help="a CSV/TSV/JSONL/Parquet file, or an image folder")
    predict.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. augment.tta=4")
    predict.add_argument("-o", "--output", default="-", help="output CSV (default: standard output)")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    predict.add_argument("--calibrated", action="store_true",
                         help="temperature-scaled probabilities (the temperature fitted on val at training, model/calibration.json)")

    report = verbs.add_parser("report", help="rebuild a run's error-analysis report (report.html + report.json)")
    report.add_argument("run_dir", help="a run folder written by `honed train` (e.g. runs/quickstart)")
    report.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. report.slices=[movie_name] report.top_k=50")
    report.add_argument("--out", metavar="DIR", default=None, help="write the report into DIR instead of the run folder")
    report.add_argument("--overwrite", action="store_true", help="replace an existing report in --out DIR")

    lr_find = verbs.add_parser("lr-find", help="LR range test: plot loss against a growing LR, suggest optim.lr")
    lr_find.add_argument("recipe", help="recipe YAML file")
    lr_find.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.batch_size=16")
    lr_find.add_argument("--start", type=float, default=1e-7, help="first learning rate (default 1e-7)")
    lr_find.add_argument("--end", type=float, default=10.0, help="last learning rate (default 10)")
    lr_find.add_argument("--steps", type=int, default=100, help="optimizer steps, at most (default 100)")
    lr_find.add_argument("--method", choices=("valley", "steep"), default="valley",
                         help="valley: fastai's default; steep: steepest fall of the smoothed loss")
    lr_find.add_argument("--overwrite", action="store_true", help="replace an earlier lr_find.csv/png in the run folder")
    lr_find.add_argument("--quiet", action="store_true", help="no progress bar")

    batch_find = verbs.add_parser("batch-find", help="largest (GPU) or fastest (CPU) per-device batch size")
    batch_find.add_argument("recipe", help="recipe YAML file")
    batch_find.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. data.max_length=128")
    batch_find.add_argument("--max", type=int, default=None, dest="max_batch",
                            help="largest batch to try (default 256 on CPU, 16384 on CUDA)")
    batch_find.add_argument("--steps", type=int, default=3, help="timed steps per batch size (default 3)")
    batch_find.add_argument("--quiet", action="store_true", help="no progress bar")

    ensemble = verbs.add_parser(
        "ensemble", help="train several members and combine them (voting, selection, stacking, bagging) into one folder",
        description="Train the members named by the recipe's `ensemble:` section on shared splits and combine them: "
                    "voting (soft/hard, weights given or selected on val), selection (greedy forward selection with "
                    "replacement on val, the default), stacking (a scikit-learn meta-learner on out-of-fold member "
                    "probabilities) or bagging (bootstrap samples, out-of-bag estimate). Writes RUN_DIR/ensemble.json, "
                    "the member runs under RUN_DIR/members/ and the ensemble's report; `honed predict/evaluate RUN_DIR` "
                    "use it like one model.")
    ensemble.add_argument("recipe", help="recipe YAML with an `ensemble:` section (see recipes/ensemble.yaml)")
    ensemble.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. ensemble.method=stacking")
    ensemble.add_argument("--overwrite", action="store_true", help="replace an existing ensemble folder and its member runs")
    ensemble.add_argument("--quiet", action="store_true", help="no progress bars")

    add_audit_parsers(verbs)
    add_tune_parsers(verbs)
    add_prune_parser(verbs)
    add_pretrain_parser(verbs)
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
    if (run_dir / "report.html").is_file():
        console.print(f"error analysis: {run_dir / 'report.html'} (`honed report {run_dir}` rebuilds it)")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from honed.predict import evaluate_saved

    if args.report:
        _check_report_dir(Path(args.report), args.overwrite)
    metrics = evaluate_saved(args.model, args.data, _overrides(args.overrides), calibrated=args.calibrated, report_dir=args.report)
    for key, value in metrics.items():
        print(f"{key}\t{value:.4f}")


def cmd_predict(args: argparse.Namespace) -> None:
    from honed.predict import predict_frame

    out = Path(args.output)
    if args.output != "-" and out.exists() and not args.overwrite:
        raise HonedError(f"--output: '{out}' already exists; pass --overwrite to replace it")
    frame = predict_frame(args.model, args.data, _overrides(args.overrides), calibrated=args.calibrated)
    if args.output == "-":
        frame.to_csv(sys.stdout, index=False)
    else:
        frame.to_csv(out, index=False)
        print(f"wrote {len(frame)} predictions to {out}", file=sys.stderr)


def _check_report_dir(folder: Path, overwrite: bool) -> None:
    if (folder / "report.html").exists() and not overwrite:
        raise HonedError(f"--report/--out: '{folder}' already holds a report.html; pass --overwrite to replace it")


def cmd_report(args: argparse.Namespace) -> None:
    from honed.evaluate.run_report import report_run

    if args.out:
        _check_report_dir(Path(args.out), args.overwrite)
    html = report_run(args.run_dir, _overrides(args.overrides), args.out)
    print(f"report: {html} and {html.with_name('report.json')}")


def cmd_ensemble(args: argparse.Namespace) -> None:
    from honed.ensemble.build import build_ensemble, print_ensemble

    result = build_ensemble(args.recipe, overwrite=args.overwrite, quiet=args.quiet, **_overrides(args.overrides))
    print_ensemble(result)


def cmd_recipes(_: argparse.Namespace) -> None:
    import yaml

    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        print(f"{path.relative_to(RECIPES_DIR.parent)}\t{tree.get('description', '')}")


def cmd_lr_find(args: argparse.Namespace) -> None:
    from honed.recipe import load_recipe
    from honed.train.lr_find import lr_find, suggest

    lrs, losses, lr = lr_find(args.recipe, start=args.start, end=args.end, steps=args.steps, method=args.method,
                              overwrite=args.overwrite, quiet=args.quiet, **_overrides(args.overrides))
    other = "steep" if args.method == "valley" else "valley"
    ended = "the loss diverged" if len(lrs) < args.steps else "all steps ran"
    print(f"lr-find: {len(lrs)} steps from {lrs[0]:.1e} to {lrs[-1]:.1e} ({ended})")
    print(f"suggested learning rate ({args.method} method): {lr:.2e}  ({other} method: {suggest(lrs, losses, other):.2e})")
    recipe = load_recipe(args.recipe, _overrides(args.overrides))
    print(f"curve: {recipe.run_dir()}/lr_find.png and lr_find.csv")
    if recipe.techniques:
        print(f"note: the range test trains without the recipe's techniques ({', '.join(t.name for t in recipe.techniques)})")
    print(f"optim.lr={lr:.2e}")


def cmd_batch_find(args: argparse.Namespace) -> None:
    from rich.console import Console

    from honed.train.batch_find import batch_find

    report = batch_find(args.recipe, max_batch=args.max_batch, timed_steps=args.steps, quiet=args.quiet,
                        **_overrides(args.overrides))
    Console().print(_batch_table(report))
    why = "largest that fits" if report.goal == "memory" else "most samples/s"
    print(f"best per-device batch ({why}): {report.best}")
    for note in report.notes:
        print(note)
    processes = f"{report.processes} process{'es' if report.processes > 1 else ''}"
    print(f"the recipe's effective batch is {report.effective} (batch_size x grad_accum_steps x {processes}); keep it with:")
    print(f"train.batch_size={report.batch_size} train.grad_accum_steps={report.grad_accum_steps}")


def _batch_table(report: Any) -> Any:
    from rich.table import Table

    cuda = report.trials[0].peak_gib is not None
    table = Table(title=f"honed: batch sizes on {report.device}")
    for name in ("batch", "runs", "samples/s", *(("peak GiB",) if cuda else ())):
        table.add_column(name, justify="right")
    for t in report.trials:
        peak = (f"{t.peak_gib:.2f}",) if cuda else ()
        table.add_row(str(t.batch), "yes" if t.fits else "out of memory", f"{t.samples_per_s:.1f}" if t.fits else "-", *peak)
    return table


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "report": cmd_report, "recipes": cmd_recipes,
            "lr-find": cmd_lr_find, "batch-find": cmd_batch_find,
            "audit": cmd_audit, "clean": cmd_clean, "tune": cmd_tune, "cv": cmd_cv, "prune": cmd_prune, "pretrain": cmd_pretrain, "ensemble": cmd_ensemble}


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
