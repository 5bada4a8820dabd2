"""`honed.audit`: load the data leniently, run the registered checks in order, write audit.html/json."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from honed.audit import (  # noqa: F401 (register)
    balance,
    corrupt,
    duplicates,
    label_issues,
    label_variants,
    leakage,
    learning_curve,
    outliers,
    target_conflicts,
    targets,
)
from honed.audit.base import CHECKS, DEFAULTS, ORDER, AuditContext, AuditSettings, Finding, skipped
from honed.audit.data import load_audit_data
from honed.audit.html import render
from honed.errors import HonedError, did_you_mean
from honed.fit import normalise_overrides
from honed.recipe import Recipe, load_recipe
from honed.rundir import write_text_atomic

OUTPUTS = ("audit.html", "audit.json")


@dataclass
class AuditResult:
    """What an audit found: the findings in run order, the context (data, embeddings), the files written."""

    findings: list[Finding]
    context: AuditContext
    folder: Path | None
    seconds: float

    def finding(self, name: str) -> Finding:
        return next(f for f in self.findings if f.name == name)

    def recommendations(self) -> list[str]:
        return [r for f in self.findings for r in f.recommendations]


def split_settings(options: dict[str, Any]) -> tuple[AuditSettings, dict[str, Any]]:
    """Separate audit settings (known AuditSettings fields) from dotted recipe overrides."""
    names = {f.name for f in fields(AuditSettings)}
    settings = AuditSettings(**{k: v for k, v in options.items() if k in names})
    return settings, normalise_overrides({k: v for k, v in options.items() if k not in names})


def audit(
    recipe: str | Path | dict | Recipe,
    data: dict[str, Any] | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    write: bool = True,
    overrides: dict[str, Any] | None = None,
    **options: Any,
) -> AuditResult:
    """Audit a recipe's data; `options` are AuditSettings fields (near_duplicate=0.97, folds=5, oof=...)
    or recipe overrides (data__labels=None, as in `honed.fit`; dotted keys work too); `overrides` maps
    dotted recipe keys to values ({"data.labels": None}), as in `fit`."""
    settings, extra = split_settings(options)
    recipe = load_recipe(recipe, {**(overrides or {}), **extra})
    folder = Path(output) if output is not None else beside_run(recipe, "audit")
    if write:
        check_output(folder, overwrite)
    for name in settings.checks:
        CHECKS.get(name, "--checks")
    started = time.perf_counter()
    ctx = AuditContext(recipe, load_audit_data(recipe, data), settings, quiet)
    names = settings.checks or DEFAULTS[ctx.data.task]
    if "corrupt" not in names:
        names = ("corrupt", *names)  # the others rely on unusable rows being marked
    findings = [_run_check(name, ctx) for name in sorted(names, key=_position)]
    result = AuditResult(findings, ctx, folder if write else None, time.perf_counter() - started)
    if write:
        write_outputs(result, recipe)
    return result


def _run_check(name: str, ctx: AuditContext) -> Finding:
    """The check's finding, or the one saying why it means nothing for this task."""
    return skipped(name, ctx.data.task) or CHECKS.get(name)(ctx)


def _position(name: str) -> int:
    return ORDER.index(name) if name in ORDER else len(ORDER)


def beside_run(recipe: Recipe, what: str) -> Path:
    """RUN_DIR-audit / RUN_DIR-clean: next to the training run folder, never inside it, so that
    `honed train --overwrite` cannot delete the audit or the cleaned data it trains on."""
    run_dir = recipe.run_dir()
    return run_dir.with_name(f"{run_dir.name}-{what}")


def check_output(folder: Path, overwrite: bool) -> None:
    existing = [name for name in OUTPUTS if (folder / name).exists()]
    if existing and not overwrite:
        raise HonedError(
            f"output: '{folder / existing[0]}' already exists; pass --overwrite to replace it or --output DIR"
        )


def write_outputs(result: AuditResult, recipe: Recipe) -> None:
    folder = result.folder
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    ctx = result.context
    meta = {
        "recipe": recipe.name,
        "model": recipe.model.name,
        "task": ctx.data.task,
        "rows": len(ctx.data.frame),
        **({"targets": ", ".join(ctx.data.targets)} if ctx.data.targets else {"classes": ", ".join(ctx.data.labels)}),
        "splits": ", ".join(f"{k} {v}" for k, v in ctx.data.frame["split"].value_counts().items()),
        "seconds": round(result.seconds, 1),
        **({"notes": "; ".join(ctx.data.notes)} if ctx.data.notes else {}),
    }
    report = {"meta": meta, "settings": asdict(ctx.settings), "findings": [f.to_json() for f in result.findings]}
    write_text_atomic(folder / "audit.json", json.dumps(report, indent=1, default=str))
    write_text_atomic(
        folder / "audit.html", render(f"honed audit: {recipe.name}", meta, result.findings, ctx.settings.max_listed)
    )


def summary_lines(result: AuditResult) -> list[str]:
    """The short console summary: each check's facts, then the recommendations."""
    lines = []
    for finding in result.findings:
        lines.append(f"{finding.title}:")
        lines += [f"  {line}" for line in finding.summary]
    recs = result.recommendations()
    if recs:
        lines.append("recommendations:")
        lines += [f"  - {r}" for r in recs]
    if result.folder is not None:
        lines.append(f"report: {result.folder / 'audit.html'} and audit.json ({result.seconds:.0f} s)")
    return lines


__all__ = ["AuditResult", "AuditSettings", "audit", "did_you_mean", "summary_lines"]
