"""report.html: one self-contained page (inline CSS, figures as base64 PNG, no scripts, no URLs).

Every piece of user data (texts, labels, column values) goes through `html.escape`, so a review
containing markup is shown as text, never interpreted.
"""

from __future__ import annotations

from html import escape
from typing import Any

from honed.evaluate import plots

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;\
margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0;font-size:0.9em}\
th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f2f4f7;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#666;font-size:0.9em}.text{max-width:560px;white-space:pre-wrap;word-break:break-word}
.bad{background:#fde8e8}.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:110px}.card b{display:block;font-size:1.4em}
img.fig{max-width:100%;border:1px solid #eee}img.thumb{image-rendering:pixelated;width:72px}
"""


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(str(value))
    if isinstance(value, int):
        return str(value)
    return f"{value:.2e}" if 0 < abs(value) < 10 ** -(digits - 1) else f"{value:.{digits}f}"  # small LRs stay readable


def _table(headers: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    """An HTML table; cells are escaped, numbers right-aligned and formatted."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(_cell(v) for v in row)
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, _Raw):
        return f"<td>{value.html}</td>"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="num">{_num(value)}</td>'
    return f"<td>{_num(value)}</td>"


class _Raw:
    """Pre-built, already-escaped HTML for a cell."""

    def __init__(self, html: str) -> None:
        self.html = html


def _figure(png: str, alt: str) -> str:
    return f'<img class="fig" alt="{escape(alt)}" src="data:image/png;base64,{png}">'


def _input_cell(example: dict[str, Any]) -> _Raw:
    parts = []
    if example.get("thumbnail"):
        parts.append(f'<img class="thumb" alt="input image" src="data:image/png;base64,{example["thumbnail"]}"><br>')
    parts.append(f'<div class="text">{escape(example["input"])}</div>')
    if "input_pair" in example:
        parts.append(f'<div class="text muted">pair: {escape(example["input_pair"])}</div>')
    if example.get("meta"):
        parts.append(
            '<div class="muted">'
            + ", ".join(f"{escape(str(k))}={escape(str(v))}" for k, v in example["meta"].items())
            + "</div>"
        )
    return _Raw("".join(parts))


def _examples_table(examples: list[dict[str, Any]]) -> str:
    rows = [
        [e["row"], _input_cell(e), e["true"], e["predicted"], e["confidence"], e["p_true"], e["loss"]] for e in examples
    ]
    return _table(["row", "input", "true", "predicted", "confidence", "p(true)", "loss"], rows)


def _summary(report: dict[str, Any]) -> str:
    s = report["summary"]
    cards = [
        ("rows", s["rows"]),
        ("accuracy", s["accuracy"]),
        ("macro-F1", s["macro_f1"]),
        ("weighted F1", s["weighted_f1"]),
        ("loss (NLL)", s["loss"]),
        ("ECE", s["ece"]),
    ]
    html = (
        '<div class="cards">'
        + "".join(f'<div class="card"><span class="muted">{escape(n)}</span><b>{_num(v)}</b></div>' for n, v in cards)
        + "</div>"
    )
    if report.get("notes"):
        html += "<h3>data preparation</h3><ul>" + "".join(f"<li>{escape(n)}</li>" for n in report["notes"]) + "</ul>"
    extra = {
        k: v
        for k, v in report.get("run_metrics", {}).items()
        if isinstance(v, (int, float, str)) and not isinstance(v, bool)
    }
    if extra:
        html += "<h3>run metrics</h3>" + _table(["metric", "value"], [[k, v] for k, v in extra.items()])
    return html


def _per_class(report: dict[str, Any]) -> str:
    rows = [
        [c["label"], c["precision"], c["recall"], c["f1"], c["support"], c["predicted"]] for c in report["per_class"]
    ]
    worst = min(c["f1"] for c in report["per_class"])
    classes = ["bad" if c["f1"] == worst and len(rows) > 1 else "" for c in report["per_class"]]
    return _table(["class", "precision", "recall", "F1", "support", "predicted"], rows, classes)


def _confusion(report: dict[str, Any]) -> str:
    conf = report["confusion"]
    counts = [[label, *row] for label, row in zip(conf["labels"], conf["counts"])]
    return (
        _figure(plots.confusion_png(conf), "confusion matrix")
        + '<p class="muted">counts (rows: true, columns: predicted)</p>'
        + _table(["true \\ predicted", *conf["labels"]], counts)
    )


def _pairs(report: dict[str, Any]) -> str:
    if not report["confused_pairs"]:
        return "<p>No mistakes on this split.</p>"
    parts = []
    for pair in report["confused_pairs"]:
        parts.append(
            f"<h3>{escape(pair['true'])} &rarr; predicted {escape(pair['predicted'])}: {pair['count']} rows "
            f"({pair['share_of_true']:.1%} of {escape(pair['true'])})</h3>"
        )
        parts.append('<p class="muted">most confident mistakes</p>' + _examples_table(pair["examples"]))
    return "".join(parts)


def _slices(report: dict[str, Any]) -> str:
    parts = []
    overall = report["summary"]["accuracy"]
    for table in report["slices"]:
        parts.append(
            f"<h3>by {escape(table['column'])}</h3>"
            f'<p class="muted">{table["values"]} values; showing {escape(table["shown"])}</p>'
        )
        rows = [[r["value"], r["rows"], r["accuracy"], r["macro_f1"], r["loss"]] for r in table["rows"]]
        classes = ["bad" if r["accuracy"] < overall - 0.05 else "" for r in table["rows"]]
        parts.append(_table(["value", "rows", "accuracy", "macro-F1", "mean loss"], rows, classes))
    return "".join(parts) or "<p>No slices (no text, group or report.slices columns).</p>"


def _calibration(report: dict[str, Any]) -> str:
    cal = report["calibration"]
    rows = [["ECE", cal["ece"], cal.get("ece_calibrated")], ["NLL", cal["nll"], cal.get("nll_calibrated")]]
    t = cal.get("temperature")
    note = (
        f"Temperature scaling: T = {t:.4f}, fitted on {escape(str(cal.get('fitted_on')))} "
        "(LBFGS on the NLL of the validation logits). "
        "It changes confidence, not the predicted class; <code>honed predict --calibrated</code> applies it."
        if t is not None
        else "No temperature was fitted (no validation split)."
    )
    return (
        f"<p>{note}</p>"
        + _table(["", "uncalibrated", "temperature-scaled"], rows)
        + _figure(plots.reliability_png(cal), "reliability diagram")
    )


def _history(report: dict[str, Any]) -> str:
    history = report.get("history") or []
    if not history:
        return "<p>No training history (metrics.jsonl) for this report.</p>"
    keys = [
        k
        for k in ("epoch", "step", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr")
        if any(k in h for h in history)
    ]
    rows = [[h.get(k) for k in keys] for h in history]
    return _figure(plots.curves_png(history), "training curves") + _table(keys, rows)


SECTIONS = [
    ("Summary", _summary),
    ("Per-class precision, recall, F1", _per_class),
    ("Confusion matrix", _confusion),
    ("Most-confused class pairs", _pairs),
    ("Top-loss examples", lambda r: _examples_table(r["top_losses"])),
    ("Metrics by slice", _slices),
    ("Calibration", _calibration),
    ("Training curves", _history),
]


def render_html(report: dict[str, Any]) -> str:
    """The whole page; sections in a fixed order, each built from the report dict."""
    body = "".join(
        f'<section><h2 id="s{i}">{escape(title)}</h2>{build(report)}</section>'
        for i, (title, build) in enumerate(SECTIONS)
    )
    toc = " &middot; ".join(f'<a href="#s{i}">{escape(title)}</a>' for i, (title, _) in enumerate(SECTIONS))
    head = (
        f'<h1>{escape(report["title"])}</h1><p class="muted">split: {escape(report["split"])} &middot; '
        f"{report['summary']['rows']} rows &middot; {len(report['labels'])} classes &middot; "
        f"generated {escape(report['generated_at'])}</p>"
        f"<p>{toc}</p>"
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(report["title"])}</title>'
        f"<style>{CSS}</style></head><body>{head}{body}</body></html>\n"
    )
