"""How a delimited text table is written: its encoding (UTF-8, UTF-8 with a BOM, UTF-16 from Excel's
"Unicode Text") and its delimiter (a `.csv` file is often semicolon- or tab-delimited where the
decimal comma is the local custom). Both are read from the file's first bytes, so users never
have to name them; a file we cannot place reads as plain comma-separated UTF-8 and fails there
with the parser's own line number.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import lzma
from collections import Counter
from pathlib import Path
from typing import IO

SAMPLE_BYTES = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")
OPENERS = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}


def head_bytes(path: Path) -> bytes:
    """The first bytes of a (possibly bz2/gzip/xz-compressed) file; empty when it cannot be read this way."""
    opener = OPENERS.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as handle:
            stream: IO[bytes] = handle  # type: ignore[assignment]
            return stream.read(SAMPLE_BYTES)
    except (OSError, EOFError, lzma.LZMAError):
        return b""  # zip/zst or a damaged archive: let pandas open it and report what is wrong


def sniff_encoding(head: bytes) -> str:
    """'utf-16' when the file starts with a UTF-16 byte-order mark, 'utf-8-sig' for a UTF-8 BOM, else 'utf-8'."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"


def sniff_delimiter(head: bytes, encoding: str) -> str:
    """The delimiter that splits the header into the most columns while the rows after it (as far
    as the sample goes) have that many fields too; ',' when no candidate is consistent.

    csv.Sniffer alone guesses wrong on short files whose texts contain commas; parsing the sample
    with each candidate and checking the field counts agree is a stricter test of the same idea."""
    text = _decoded(head, encoding)
    if not text:
        return ","
    lines = text.splitlines(keepends=True)
    if len(head) >= SAMPLE_BYTES and len(lines) > 1:
        text = "".join(lines[:-1])  # the sample's last line is probably cut short
    best, best_width = ",", 1
    for delimiter in DELIMITERS:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if row]
        if not rows or len(rows[0]) <= best_width:
            continue
        widths = Counter(len(row) for row in rows[1:])
        if not widths or widths.most_common(1)[0][0] == len(rows[0]):
            best, best_width = delimiter, len(rows[0])
    return best


def _decoded(head: bytes, encoding: str) -> str:
    """The sample as text, ignoring a multi-byte character cut at its end (and, for the guess only,
    bytes that are not valid in the encoding: the reader reports those with their line)."""
    return codecs.getincrementaldecoder(encoding)(errors="replace").decode(head, final=False)


def layout(path: Path, suffix: str) -> tuple[str, str]:
    """(encoding, delimiter) of a .csv or .tsv table; .tsv is always tab-delimited."""
    head = head_bytes(path)
    encoding = sniff_encoding(head)
    return encoding, "\t" if suffix == ".tsv" else sniff_delimiter(head, encoding)
