"""What a search leaves in RUN_DIR: trials.csv, best_recipe.yaml, importances.json, plots as PNG
(optuna.visualization.matplotlib), tune_report.html (PNGs embedded), top_trials.json and summary.json.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml

from honed.tune.objective import trial_dir
from honed.tune.space import apply, values_from_params
from honed.tune.spec import SearchSpec
from honed.tune.study import best_value, counts, masked

PLOTS = {  # file stem -> (title, optuna.visualization.matplotlib function name)
    "optimization_history": ("Optimisation history", "plot_optimization_history"),
    "parallel_coordinate": ("Parallel coordinates", "plot_parallel_coordinate"),
    "slice": ("Slice plot", "plot_slice"),
    "param_importances": ("Parameter importances", "plot_param_importances"),
}


def write_outputs(
    study: optuna.Study, spec: SearchSpec, tree: dict[str, Any], run_dir: Path, storage_url: str
) -> dict[str, Any]:
    """Write every output; returns the summary (also summary.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # Optuna's experimental-API and "importances will be equal" notes, tight_layout
        warnings.simplefilter("ignore")
        return _write(study, spec, tree, run_dir, storage_url)


def _write(
    study: optuna.Study, spec: SearchSpec, tree: dict[str, Any], run_dir: Path, storage_url: str
) -> dict[str, Any]:
    frame = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "user_attrs", "datetime_start", "duration")
    )
    frame.to_csv(run_dir / "trials.csv", index=False)
    summary: dict[str, Any] = {
        "study": study.study_name,
        "storage": masked(storage_url),
        "direction": spec.direction,
        "metric": f"val_{spec.metric}",
        "sampler": spec.sampler,
        "pruner": spec.pruner,
        "trials": counts(study),
        "best_value": best_value(study),
    }
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if completed:
        best = study.best_trial
        values = values_from_params(spec, best.params)
        summary.update(
            best_trial=best.number,
            best_params=values,
            best_test={k: v for k, v in best.user_attrs.items() if k.startswith("test_")},
        )
        best_tree = apply(tree, spec, values)
        best_tree.update(name=f"{tree.get('name', 'run')}-best", output_dir=None, search=None)
        best_tree.setdefault("train", {}).update(
            metric=spec.metric, mode=spec.mode
        )  # as every trial chose its checkpoint
        header = f"# best of study '{study.study_name}': val {spec.metric} {best.value:.6g} (trial {best.number})\n"
        (run_dir / "best_recipe.yaml").write_text(header + yaml.safe_dump(best_tree, sort_keys=False), encoding="utf-8")
    summary["importances"] = _importances(study, len(completed))
    (run_dir / "importances.json").write_text(json.dumps(summary["importances"], indent=1), encoding="utf-8")
    summary["plots"] = _plots(study, run_dir) if completed else {}
    summary["top_trials"] = keep_top(study, spec, run_dir)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    (run_dir / "tune_report.html").write_text(_html(summary, frame), encoding="utf-8")
    return summary


def _importances(study: optuna.Study, completed: int) -> dict[str, float]:
    """fANOVA importances (Optuna's default); empty when fewer than two trials finished or nothing varied."""
    if completed < 2:
        return {}
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


def _plots(study: optuna.Study, run_dir: Path) -> dict[str, str]:
    """Each plot as RUN_DIR/plots/<name>.png; a plot Optuna cannot draw for this study is skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    folder = run_dir / "plots"
    folder.mkdir(exist_ok=True)
    written: dict[str, str] = {}
    for stem, (_, function) in PLOTS.items():
        try:
            axes = getattr(optuna_plots, function)(study)
        except (RuntimeError, ValueError, ZeroDivisionError):
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.savefig(folder / f"{stem}.png", dpi=90, bbox_inches="tight")  # Optuna sized it (colour bars included)
        plt.close(figure)
        written[stem] = str(folder / f"{stem}.png")
    return written


def keep_top(study: optuna.Study, spec: SearchSpec, run_dir: Path) -> list[dict[str, Any]]:
    """Write top_trials.json (best first: number, value, params, overrides, run_dir, model_dir): with
    `keep_top_k` the best k, and the other completed trials' model weights are deleted; without it
    every completed trial, nothing deleted."""
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ordered = sorted(completed, key=lambda t: t.value, reverse=spec.direction == "maximize")
    keep = spec.keep_top_k or len(ordered)
    top = ordered[:keep]
    for trial in ordered[keep:]:
        folder = trial_dir(run_dir, trial.number)
        for model in [folder / "model", *folder.glob("folds/fold-*/model")]:  # cross-validated trials keep one per fold
            shutil.rmtree(model, ignore_errors=True)
    rows = []
    for trial in top:
        folder = Path(trial.user_attrs.get("run_dir", trial_dir(run_dir, trial.number)))
        model_dir = folder / "model"
        rows.append(
            {
                "number": trial.number,
                "value": trial.value,
                "params": trial.params,
                "overrides": trial.user_attrs.get("overrides", values_from_params(spec, trial.params)),
                "run_dir": str(folder),
                "model_dir": str(model_dir) if model_dir.is_dir() else None,
            }
        )
    (run_dir / "top_trials.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return rows


def _embed(path: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{data}">'


def _html(summary: dict[str, Any], frame: Any) -> str:
    """A self-contained page: the summary, each plot inline, the trials table."""
    esc = html.escape
    facts = [
        ("study", summary["study"]),
        ("storage", summary["storage"]),
        ("metric", f"{summary['metric']} ({summary['direction']})"),
        ("sampler / pruner", f"{summary['sampler']} / {summary['pruner']}"),
        ("trials", ", ".join(f"{k} {v}" for k, v in summary["trials"].items() if v)),
        ("best value", summary["best_value"]),
        ("best trial", summary.get("best_trial")),
        ("best params", json.dumps(summary.get("best_params"))),
        ("best trial's test metrics", json.dumps(summary.get("best_test"))),
        ("importances", json.dumps(summary["importances"])),
    ]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in facts)
    plots = "".join(f"<h2>{esc(PLOTS[k][0])}</h2>{_embed(p)}" for k, p in summary["plots"].items())
    table = frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0, classes="trials")
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:left;font-size:13px}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>honed tune: {esc(summary['study'])}</title>"
        f"<style>{style}</style>"
        f"</head><body><h1>Hyperparameter search: {esc(summary['study'])}</h1><table>{rows}</table>"
        f"<p>Open the live study with <code>optuna-dashboard {esc(summary['storage'])}</code>.</p>{plots}"
        f"<h2>Trials</h2>{table}</body></html>"
    )
