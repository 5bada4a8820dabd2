"""Labels spelled several ways: 'pos', 'Pos' and ' pos', or the number 1 written as '1' and '1.0'.

Training refuses such labels (one class must not silently become two), and merges case/space
variants only when asked (`data.normalise_labels=true`); the audit lists every row that carries
a variant, so the file can be fixed once instead of one refusal at a time.
"""

from __future__ import annotations

import pandas as pd

from honed.audit.base import CHECKS, AuditContext, Finding, row_table
from honed.data.tables import variant_key


def number_key(label: str) -> str | None:
    """The number a label spells ('1.0' -> '1.0' as float text), None when it is not a number."""
    try:
        return repr(float(label))
    except ValueError:
        return None


def variant_sets(spellings: pd.Series) -> list[list[str]]:
    """Sets of two or more distinct spellings that are one label: equal up to case and surrounding
    spaces, or the same number; each set most frequent first."""
    counts = spellings.value_counts()
    sets: dict[frozenset[str], list[str]] = {}  # ' 1' and '1' are one set, found by both keys
    for key in (variant_key, number_key):
        groups: dict[str, list[str]] = {}
        for spelling in counts.index:
            if (k := key(spelling)) is not None:
                groups.setdefault(k, []).append(spelling)
        for group in groups.values():
            if len(group) > 1:
                sets.setdefault(frozenset(group), sorted(group, key=lambda s: -counts[s]))
    return list(sets.values())


@CHECKS.register("label_variants")
def label_variants(ctx: AuditContext) -> Finding:
    """List rows whose label is a second spelling of another label."""
    frame = ctx.data.frame
    column = "label_raw" if "label_raw" in frame else "label"
    labelled = frame[frame[column].notna()]
    spellings = labelled[column].astype(str)
    sets = variant_sets(spellings)
    counts = spellings.value_counts()
    variants = {s: group[0] for group in sets for s in group[1:]}
    flagged = labelled[spellings.isin(list(variants))]
    detail = flagged[column].map(lambda s: f"'{s}' = '{variants[s]}'")
    finding = Finding(
        "label_variants",
        "Labels spelled several ways",
        rows=row_table(flagged, "label variant", detail),
        data={"sets": [{s: int(counts[s]) for s in group} for group in sets], "rows": len(flagged)},
    )
    if not sets:
        finding.summary.append(f"every label is spelled one way ({counts.size} distinct)")
        return finding
    for group in sets[:10]:
        finding.summary.append("one label, several spellings: " + ", ".join(f"'{s}' ({counts[s]})" for s in group))
    merged = ctx.recipe.data.normalise_labels
    if any(number_key(g[0]) is None for g in sets) and not merged:
        finding.recommendations.append(
            "fix the spellings in the file, or set data.normalise_labels=true to merge "
            "labels that differ only by case or surrounding spaces"
        )
    if any(number_key(g[0]) is not None for g in sets):
        finding.recommendations.append("write each numeric label one way (all 1, not 1 and 1.0): training refuses both")
    return finding
