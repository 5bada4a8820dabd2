"""Read labelled tables (CSV/TSV/JSONL/Parquet) into a standard frame with clear errors.

A standard frame has columns `x` (text, image path or image array), optional `x2` (text pair),
`label` (str) and optional `group`; its index is the row number in the source (0-based).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from honed.errors import HonedError

READERS = {
    ".csv": lambda p: pd.read_csv(p, encoding="utf-8", encoding_errors="strict", keep_default_na=False, na_values=[""]),
    ".tsv": lambda p: pd.read_csv(p, sep="\t", encoding="utf-8", keep_default_na=False, na_values=[""]),
    ".jsonl": lambda p: pd.read_json(p, lines=True, encoding="utf-8"),
    ".json": lambda p: pd.read_json(p, encoding="utf-8"),
    ".parquet": pd.read_parquet,
}
COMPRESSION = {".bz2", ".gz", ".xz", ".zip", ".zst"}


def table_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def read_table(path: Path, field: str) -> pd.DataFrame:
    """Read a table file; non-UTF-8 bytes and parse failures become one-line errors naming the line."""
    suffix = table_suffix(path)
    if suffix not in READERS:
        raise HonedError(f"{field}: '{path}' has an unsupported extension; use one of {', '.join(READERS)}")
    try:
        frame = READERS[suffix](path)
    except UnicodeDecodeError as exc:
        raise HonedError(f"{field}: '{path}' is not UTF-8 text{_bad_utf8_line(path)}; re-save it as UTF-8") from exc
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        raise HonedError(f"{field}: cannot read '{path}': {str(exc).splitlines()[0]}") from exc
    if frame.empty:
        raise HonedError(f"{field}: '{path}' holds no rows")
    return frame.reset_index(drop=True)


def _bad_utf8_line(path: Path) -> str:
    if table_suffix(path) != path.suffix.lower():
        return ""  # compressed: no cheap line number
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return f" (line {number})"
    return ""


def require_columns(frame: pd.DataFrame, columns: dict[str, str | None], source: str) -> None:
    """Every named column must exist; the error names the recipe field and the columns there are."""
    have = [str(c) for c in frame.columns]
    for field, column in columns.items():
        if column is not None and column not in frame.columns:
            raise HonedError(f"{source}: no column '{column}' (set by {field}); columns are: {', '.join(have)}")


def clean_labels(labels: pd.Series, source: str) -> pd.Series:
    """Labels as strings; an empty or NaN label is an error naming its row."""
    missing = labels.isna() | (labels.astype(str).str.strip() == "")
    if missing.any():
        row = int(missing.idxmax()) + 1
        raise HonedError(
            f"{source}: row {row} has an empty or NaN label ({int(missing.sum())} such rows); "
            "fill or remove them (`honed clean` can drop them)"
        )
    as_str = labels.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
    return as_str.str.strip()
