"""audit.html: one self-contained page (inline CSS, figures as base64 PNG, no external URLs)."""

from __future__ import annotations

import base64
import html
from typing import Any

import pandas as pd

from honed.audit.base import Finding

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}\
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.rec{background:#eef6ee;border-left:4px solid #4a4;padding:.4em .8em;margin:.3em 0}
.meta{color:#666;font-size:.9em}img{max-width:100%}code{background:#f4f4f4;padding:0 .2em}"""

COLUMNS = ("split", "row", "label", "reason", "detail", "preview")


def render(title: str, meta: dict[str, Any], findings: list[Finding], max_listed: int) -> str:
    parts = [
        (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>"
        ),
        f"<h1>{_e(title)}</h1>",
        "<p class='meta'>" + "<br>".join(f"{_e(k)}: {_e(v)}" for k, v in meta.items()) + "</p>",
    ]
    recommendations = [(f.title, r) for f in findings for r in f.recommendations]
    if recommendations:
        parts.append("<h2>Recommendations</h2>")
        parts += [f"<div class='rec'><b>{_e(t)}</b>: {_code(r)}</div>" for t, r in recommendations]
    for finding in findings:
        parts.append(f"<h2 id='{_e(finding.name)}'>{_e(finding.title)}</h2><ul>")
        parts += [f"<li>{_e(line)}</li>" for line in finding.summary]
        parts.append("</ul>")
        for caption, png in finding.figures.items():
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{_e(caption)}</figcaption></figure>"
            )
        if finding.rows is not None and len(finding.rows):
            parts.append(_table(finding.rows, max_listed))
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(rows: pd.DataFrame, limit: int) -> str:
    columns = [c for c in (*COLUMNS, "suggested", "suggested_p") if c in rows]
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(v)}</td>" for v in rec) + "</tr>"
        for rec in rows[columns].head(limit).itertuples(index=False)
    )
    more = f"<p class='meta'>{len(rows) - limit} more rows in audit.json</p>" if len(rows) > limit else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _code(text: str) -> str:
    """Escape, then show `backticked` parts as code."""
    pieces = _e(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))
