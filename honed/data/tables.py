"""Read labelled tables (CSV/TSV/JSONL/Parquet) into a standard frame with clear errors.

A standard frame has columns `x` (text, image path or image array), optional `x2` (text pair),
`label` (str) and optional `group`; its index is the row number in the source (0-based).
"""

from __future__ import annotations

import csv
import numbers
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from honed.data.delimited import layout
from honed.errors import HonedError

READERS: dict[str, Callable[..., pd.DataFrame]] = {
    ".csv": lambda p, **kw: _read_delimited(p, ".csv", **kw),
    ".tsv": lambda p, **kw: _read_delimited(p, ".tsv", **kw),
    ".jsonl": lambda p, **kw: pd.read_json(p, lines=True, encoding="utf-8", **kw),
    ".json": lambda p: pd.read_json(p, encoding="utf-8"),
    ".parquet": pd.read_parquet,
}
COMPRESSION = {".bz2", ".gz", ".xz", ".zip", ".zst"}


def table_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _read_delimited(path: Path, suffix: str, **kwargs: Any) -> Any:
    """CSV/TSV with its encoding (BOM, UTF-16) and delimiter read from the file; quoted fields may hold
    newlines, and Windows line endings read like Unix ones."""
    encoding, sep = layout(path, suffix)
    return pd.read_csv(
        path, sep=sep, encoding=encoding, encoding_errors="strict", keep_default_na=False, na_values=[""], **kwargs
    )


def read_table(path: Path, field: str) -> pd.DataFrame:
    """Read a table file; non-UTF-8 bytes and parse failures become one-line errors naming the line."""
    frame = _guarded(path, field, lambda reader: reader(path))
    if frame.empty:
        raise HonedError(f"{field}: '{path}' holds no rows")
    return frame.reset_index(drop=True)


def iter_table(path: Path, field: str, rows: int) -> Iterator[pd.DataFrame]:
    """A table in chunks of about `rows` rows (CSV, TSV and JSONL streamed, Parquet by row group,
    JSON whole), so a 200k-row prediction file never sits in memory at once. Chunks keep the file's
    row numbers as their index."""
    suffix = table_suffix(path)
    if suffix not in (".csv", ".tsv", ".jsonl"):
        yield read_table(path, field)
        return
    chunks = _guarded(path, field, lambda reader: reader(path, chunksize=rows))
    seen = 0
    while True:
        chunk = _guarded(path, field, lambda _: next(chunks, None))
        if chunk is None:
            break
        seen += len(chunk)
        yield chunk
    if not seen:
        raise HonedError(f"{field}: '{path}' holds no rows")


def _guarded(path: Path, field: str, read: Callable[[Callable[..., Any]], Any]) -> Any:
    """Run `read` with the reader for `path`'s extension, turning decoding and parsing failures into one line."""
    suffix = table_suffix(path)
    if suffix not in READERS:
        raise HonedError(f"{field}: '{path}' has an unsupported extension; use one of {', '.join(READERS)}")
    try:
        return read(READERS[suffix])
    except UnicodeError as exc:
        raise HonedError(f"{field}: '{path}' is not UTF-8 text{_bad_utf8_line(path)}; re-save it as UTF-8") from exc
    except (ValueError, pd.errors.ParserError, OSError, csv.Error) as exc:
        raise HonedError(f"{field}: cannot read '{path}': {str(exc).splitlines()[0]}") from exc


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
            hint = next(
                (
                    f"; the file looks delimited by {d!r}: save it with commas or as .tsv"
                    for d in (";", "\t", "|")
                    if len(have) == 1 and d in have[0]
                ),
                "",
            )
            raise HonedError(f"{source}: no column '{column}' (set by {field}); columns are: {', '.join(have)}{hint}")


def clean_labels(labels: pd.Series, source: str, normalise: bool = False) -> pd.Series:
    """Labels as strings; an empty or NaN label is an error naming its row.

    Numbers read as numbers and as text must not become two classes: 1, 1.0 and "1" are all "1",
    while "1" and "1.0" written as text (the same number spelled two ways) are refused. Labels that
    differ only by case or surrounding spaces ("pos", "Pos ") are refused too, unless `normalise`
    (data.normalise_labels) merges each such set into its most frequent spelling."""
    missing = labels.isna() | (labels.astype(str).str.strip() == "")
    if missing.any():
        row = int(missing.idxmax()) + 1
        raise HonedError(
            f"{source}: row {row} has an empty or NaN label ({int(missing.sum())} such rows); "
            "fill or remove them (`honed clean` can drop them)"
        )
    as_str = unify_variants(labels.map(label_text), source, normalise)
    _refuse_number_twins(as_str, source)
    return as_str


def label_text(value: Any) -> str:
    """One spelling per number (integral values without '.0'), so 1 read from a number column and
    "1" read from a text column are the same class."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    number = float(value)
    return str(int(number)) if number.is_integer() else str(value)


def variant_key(label: str) -> str:
    """What two spellings of one label share: no surrounding spaces, case folded."""
    return label.strip().casefold()


def unify_variants(labels: pd.Series, source: str, normalise: bool) -> pd.Series:
    """Stripped labels; spellings that differ only by case or spaces are merged (`normalise`) or refused."""
    counts = labels.value_counts(sort=False)
    groups: dict[str, list[str]] = {}
    for spelling in counts.index:
        groups.setdefault(variant_key(spelling), []).append(spelling)
    clashes = {k: v for k, v in groups.items() if len(v) > 1}
    if clashes and not normalise:
        first, second = sorted(next(iter(clashes.values())), key=lambda v: _first_row(labels, v))[:2]
        raise HonedError(
            f"{source}: labels '{first}' (row {_first_row(labels, first)}) and '{second}' (row "
            f"{_first_row(labels, second)}) differ only by case or surrounding spaces ({len(clashes)} such sets); "
            "fix the file, or set data.normalise_labels=true to merge them (`honed audit` lists them all)"
        )
    canonical = {s: max(v, key=lambda c: (counts[c], c == c.strip(), c)).strip() for v in groups.values() for s in v}
    return labels.map(canonical)


def match_known(labels: pd.Series, known: tuple[str, ...] | list[str]) -> pd.Series:
    """Labels spelled as the known classes where they differ only by case or spaces (with
    data.normalise_labels, a test file's 'POS' is training's 'pos')."""
    by_key = {variant_key(name): name for name in known}
    return labels.map(lambda v: v if v in known else by_key.get(variant_key(v), v))


def _refuse_number_twins(labels: pd.Series, source: str) -> None:
    """One line when two label spellings are the same number ('1' and '1.0', '2' and '2.00')."""
    seen: dict[float, str] = {}
    for spelling in labels.unique():
        try:
            number = float(spelling)
        except ValueError:
            continue
        other = seen.setdefault(number, spelling)
        if other != spelling:
            raise HonedError(
                f"{source}: labels '{other}' (row {_first_row(labels, other)}) and '{spelling}' (row "
                f"{_first_row(labels, spelling)}) are the same number written two ways; write every label one way"
            )


def _first_row(labels: pd.Series, value: str) -> int:
    """1-based source row of the first occurrence of `value`."""
    return int((labels == value).idxmax()) + 1
