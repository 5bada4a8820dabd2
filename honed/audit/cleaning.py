"""`honed clean`: a cleaned copy of the data plus a manifest of every row removed or changed, and why.

The audit decides; cleaning applies: drop empty/missing/corrupt rows, extra exact copies, and train
rows that leak into val/test (exact or near duplicates); drop or relabel likely label errors whose
suggested class is confident enough; optionally drop outliers (regression: outlying targets too), near
duplicates and the train rows of groups that span splits. Only the source files named by `splits`
(default: data.train's, which also holds carved val/test rows) are rewritten; input files are never
modified. Tables keep their columns and format family (CSV/TSV/JSONL/JSON/Parquet; compressed CSV
becomes plain CSV); image folders become a manifest CSV of kept paths (`path,label`), usable as
`data.train=FILE` in a recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from honed.audit.base import preview
from honed.audit.data import Source, data_task
from honed.audit.run import AuditResult, audit, beside_run, split_settings
from honed.data.tables import table_suffix
from honed.errors import HonedError
from honed.recipe import Recipe, load_recipe

WRITERS = {
    ".csv": lambda f, p: f.to_csv(p, index=False),
    ".tsv": lambda f, p: f.to_csv(p, sep="\t", index=False),
    ".jsonl": lambda f, p: f.to_json(p, orient="records", lines=True, force_ascii=False),
    ".json": lambda f, p: f.to_json(p, orient="records", force_ascii=False),
    ".parquet": lambda f, p: f.to_parquet(p, index=False),
}
ALWAYS = {"missing label", "missing target", "missing text", "empty text", "image file not found",
          "unreadable or corrupt image", "missing image path", "empty image array", "exact duplicate",
          "leak: exact duplicate", "leak: near duplicate"}


@dataclass
class CleanResult:
    folder: Path
    files: dict[str, Path]  # source split -> cleaned file
    manifest: pd.DataFrame  # one row per removed or changed row
    audit: AuditResult

    def overrides(self) -> list[str]:
        """Recipe overrides that train on the cleaned copy."""
        out = [f"data.{split}={path}" for split, path in self.files.items()]
        if any(self.audit.context.data.sources[s].kind == "folder" for s in self.files):
            out += ["data.path_column=path", "data.label_column=label"]
        return out


def clean(recipe: str | Path | dict | Recipe, data: dict[str, Any] | None = None, output: str | Path | None = None,
          overwrite: bool = False, quiet: bool = False, labels: Literal["drop", "relabel", "keep"] | None = None,
          label_threshold: float = 0.0, drop_outliers: bool = False, drop_near_duplicates: bool = False,
          drop_group_leaks: bool = False, splits: tuple[str, ...] = ("train",), overrides: dict[str, Any] | None = None,
          **options: Any) -> CleanResult:
    """Audit `recipe`'s data and write the cleaned copy and manifest.csv to `output` (default RUN_DIR-clean,
    beside the run folder). `labels` None: drop likely label errors of a classification recipe."""
    if labels not in ("drop", "relabel", "keep", None):
        raise HonedError(f"--labels: expected drop, relabel or keep, got '{labels}'")
    if labels in ("drop", "relabel") or label_threshold:  # refused, if it cannot apply, before the audit's work
        label_policy(data_task(load_recipe(recipe, {**(overrides or {}), **split_settings(options)[1]}), data),
                     labels, label_threshold)
    if not 0.0 <= label_threshold < 1.0:
        raise HonedError(f"--label-threshold: expected a probability in [0, 1), got {label_threshold}")
    checks = ("corrupt", "duplicates", "leakage", *(("label_issues",) if labels != "keep" else ()),
              *(("outliers", "targets") if drop_outliers else ()))  # targets: skipped for classification
    options.setdefault("checks", checks)
    result = audit(recipe, data, quiet=quiet, write=False, overrides=overrides, **options)
    # task auto: read off the data, before any write
    labels = label_policy(result.context.data.task, labels, label_threshold)
    resolved = result.context.recipe
    folder = Path(output) if output is not None else beside_run(resolved, "clean")
    unknown = [s for s in splits if s not in result.context.data.sources]
    if unknown:
        raise HonedError(f"--splits: '{unknown[0]}' is not given as its own file in this recipe "
                         f"(files: {', '.join(result.context.data.sources)})")
    targets = {s: result.context.data.sources[s] for s in splits}
    paths = {s: folder / _file_name(s, src) for s, src in targets.items()}
    inputs = {src.path.resolve() for src in result.context.data.sources.values() if src.path is not None}
    clash = [p for p in [*paths.values(), folder / "manifest.csv"] if p.resolve() in inputs]
    if clash:
        raise HonedError(f"output: '{clash[0]}' is an input file of this recipe; "
                         "input files are never rewritten, choose another --output DIR")
    existing = [p for p in [*paths.values(), folder / "manifest.csv"] if p.exists()]
    if existing and not overwrite:
        raise HonedError(f"output: '{existing[0]}' already exists; pass --overwrite to replace it or --output DIR")
    policy = {"labels": labels, "label_threshold": label_threshold, "outliers": drop_outliers,
              "near": drop_near_duplicates, "groups": drop_group_leaks}
    actions = decide(result, policy, set(splits))
    folder.mkdir(parents=True, exist_ok=True)
    for split, source in targets.items():
        _write(result, resolved, source, actions, paths[split])
    manifest = _manifest(result, actions)
    manifest.to_csv(folder / "manifest.csv", index=False)
    return CleanResult(folder, paths, manifest, result)


def label_policy(task: str, labels: str | None, threshold: float = 0.0) -> str:
    """What to do with likely label errors: drop unless told (keep for regression, which has none); an explicit
    drop or relabel, or a label threshold, on a regression recipe is refused, as it would silently do nothing."""
    if task == "regression" and labels in ("drop", "relabel"):
        raise HonedError(f"--labels {labels}: label issues are a classification check and this recipe is regression "
                         "(numeric targets); leave --labels out (`--drop-outliers` drops outlying targets)")
    if task == "regression" and threshold:
        raise HonedError(f"--label-threshold {threshold:g}: label issues are a classification check and this recipe "
                         "is regression (numeric targets); leave --label-threshold out")
    return labels or ("keep" if task == "regression" else "drop")


def decide(result: AuditResult, policy: dict[str, Any],
           sources: set[str]) -> dict[int, tuple[str, str, str, str | None]]:
    """frame index -> (action, reason, detail, new label); the first reason found for a row wins."""
    frame = result.context.data.frame
    actions: dict[int, tuple[str, str, str, str | None]] = {}

    def act(i: int, action: str, reason: str, detail: str, new: str | None = None, judged: bool = False) -> None:
        # judged (label errors, outliers, near copies): training rows only, so that val/test rows carved from the
        # same file are never cleaned by the model's own view of them (that would inflate the measured score)
        if frame.loc[i, "source"] in sources and i not in actions and not (judged and frame.loc[i, "split"] != "train"):
            actions[i] = (action, reason, detail, new)

    extra = {"near duplicate": policy["near"], "leak: group": policy["groups"]}
    for name in ("corrupt", "leakage", "duplicates"):
        rows = _rows(result, name)
        for i, reason, detail in zip(rows.index, rows["reason"], rows["detail"]):
            if reason in ALWAYS or extra.get(reason, False):
                act(i, "dropped", reason, detail, judged=reason not in ALWAYS)
    rows = _rows(result, "label_issues")
    if policy["labels"] != "keep" and len(rows):
        confident = rows[(rows["suggested"] != rows["label"]) & (rows["suggested_p"] > policy["label_threshold"])]
        for i, new, detail in zip(confident.index, confident["suggested"], confident["detail"]):
            if policy["labels"] == "relabel":
                act(i, "relabelled", "likely label error", detail, new, judged=True)
            else:
                act(i, "dropped", "likely label error", detail, judged=True)
    for name in ("outliers", "targets") if policy["outliers"] else ():
        rows = _rows(result, name)
        for i, reason, detail in zip(rows.index, rows["reason"], rows["detail"]):
            act(i, "dropped", reason, detail, judged=True)
    return actions


def _rows(result: AuditResult, name: str) -> pd.DataFrame:
    found = [f for f in result.findings if f.name == name]
    return found[0].rows if found and found[0].rows is not None else pd.DataFrame(columns=["reason", "detail", "label"])


def _file_name(split: str, source: Source) -> str:
    if source.kind == "table" and source.path is not None:
        return f"{split}{table_suffix(source.path)}"
    if source.kind in ("folder", "memory"):
        return f"{split}.csv"
    raise HonedError(f"data.{split}: cleaning writes a copy of a table file or image folder; "
                     f"'{source.path}' holds IDX arrays: convert it to an image folder or table first")


def _write(result: AuditResult, recipe: Recipe, source: Source, actions: dict[int, tuple[str, str, str, str | None]],
           path: Path) -> None:
    frame = result.context.data.frame
    mine = frame[frame["source"] == source.split]
    dropped = {int(mine.loc[i, "row"]) for i, a in actions.items() if i in mine.index and a[0] == "dropped"}
    relabel = {int(mine.loc[i, "row"]): a[3] for i, a in actions.items() if i in mine.index and a[0] == "relabelled"}
    spec = recipe.data
    if source.kind == "folder":
        kept = mine[~mine["row"].isin(dropped)]
        labels = [relabel.get(int(r), lab) for r, lab in zip(kept["row"], kept["label"])]
        out = pd.DataFrame({"path": kept["x"].to_numpy(), "label": labels})
        out.to_csv(path, index=False)
        return
    table = source.table.reset_index(drop=True).copy()
    if spec.kind == "image":  # paths were relative to the source file's folder
        base = source.path.parent if source.path is not None else Path(".")
        table[spec.path_column] = table[spec.path_column].map(
            lambda p: str((base / str(p)).resolve()) if isinstance(p, str) else p)
    if relabel:
        column = table[spec.label_column].astype(object)
        for row, new in relabel.items():
            column.iloc[row] = new
        table[spec.label_column] = column
    table = table.drop(index=sorted(dropped))
    WRITERS[path.suffix](table, path)


def _manifest(result: AuditResult, actions: dict[int, tuple[str, str, str, str | None]]) -> pd.DataFrame:
    frame = result.context.data.frame
    order = sorted(actions.items(), key=lambda kv: (frame.loc[kv[0], "source"], frame.loc[kv[0], "row"]))
    records = [{"source": frame.loc[i, "source"], "row": int(frame.loc[i, "row"]), "split": frame.loc[i, "split"],
                "action": action, "reason": reason, "detail": detail, "label": frame.loc[i, "label"], "new_label": new,
                "preview": preview(frame.loc[i, "x"])}
               for i, (action, reason, detail, new) in order]
    columns = ["source", "row", "split", "action", "reason", "detail", "label", "new_label", "preview"]
    return pd.DataFrame(records, columns=columns)


