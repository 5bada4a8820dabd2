"""climb.html: one self-contained page for `honed climb` (inline CSS, figures as base64 PNG, no
scripts, no URLs), built from the climb.json summary.

Every string taken from the summary (change names, reasons, paths, the rule) goes through
`html.escape`; optional keys that are missing show as "-" instead of failing. Deltas are the
candidate's score minus its base's, so for a metric to minimise the better deltas are the negative ones.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from honed.climb.html_chart import deltas_png, ladder_png, mean_std, number

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;\
margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0;font-size:0.9em}\
th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top;white-space:pre-line}
th{background:#f2f4f7;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:pre}
table.facts th{width:170px}.muted{color:#666;font-size:0.9em}.warn{background:#fff4e0}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px}
.card b{display:block;font-size:1.3em}.verdict{border-left:4px solid #4a7;background:#eef6ee;padding:6px 12px}
.verdict.mixed{border-color:#d90;background:#fff4e0}img.fig{max-width:100%;border:1px solid #eee}
code{background:#f4f4f4;padding:0 .2em}
"""

STOPPED = {
    "done": "done: every candidate of the enabled stages was tried",
    "budget": "the budget ran out (time or runs); below is what the climb would try next",
    "interrupted": "interrupted (Ctrl-C or SIGTERM) before the climb finished",
}


def write_html(summary: dict[str, Any], path: Path) -> None:
    """Write the page to `path` (a folder gets `climb.html` inside it); parents are created."""
    path = Path(path)
    if path.is_dir():
        path = path / "climb.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(summary), encoding="utf-8")


def render_html(summary: dict[str, Any]) -> str:
    """The whole page as a string: header, best model, ladder, honesty, rejected candidates, next."""
    title = f"honed climb: {summary.get('recipe') or 'recipe'}"
    sections = [
        ("The climb", _header(summary)),
        ("Result", _result(summary)),
        ("The ladder", _ladder(summary)),
        ("Did val choices carry over to test?", _honesty(summary)),
        ("Rejected candidates", _rejected(summary)),
        ("What the climb would try next", _next(summary)),
    ]
    body = "".join(f"<section><h2>{escape(name)}</h2>{html}</section>" for name, html in sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )


# --- formatting: every helper returns plain text; the table and the callers escape it ---


def score(value: Any) -> str:
    """A score with 4 decimals (tiny values in scientific notation), '-' when missing."""
    v = number(value)
    if v is None:
        return "-"
    return f"{v:.2e}" if 0 < abs(v) < 1e-3 else f"{v:.4f}"


def signed(value: Any) -> str:
    v = number(value)
    return "-" if v is None else f"{v:+.4f}"


def p_value(value: Any) -> str:
    v = number(value)
    return "-" if v is None else "<0.001" if v < 0.001 else f"{v:.3f}"


def duration(seconds: Any) -> str:
    """Seconds as '42.5s', '13m 32s' or '2h 05m'."""
    s = number(seconds)
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    whole = int(round(s))
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def mean_pm(entry: dict[str, Any], split: str) -> str:
    mean, std = mean_std(entry, split)
    if mean is None:
        return "-"
    return score(mean) if std is None else f"{score(mean)} ± {score(std)}"


def delta_text(delta: Any) -> str:
    """'+0.0120' over '[+0.0050, +0.0190]': the mean paired difference and its interval (when known)."""
    if not isinstance(delta, dict) or number(delta.get("mean")) is None:
        return "-"
    text = signed(delta["mean"])
    if number(delta.get("low")) is not None and number(delta.get("high")) is not None:
        text += f"\n[{signed(delta['low'])}, {signed(delta['high'])}]"
    return text


def _delta_field(delta: Any, key: str) -> Any:
    return delta.get(key) if isinstance(delta, dict) else None


def _table(headers: list[str], rows: list[list[str]], numeric: set[int], classes: list[str] | None = None) -> str:
    """A table of plain-text cells, every cell escaped; columns in `numeric` right-aligned."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{escape(str(v))}</td>' if j in numeric else f"<td>{escape(str(v))}</td>"
            for j, v in enumerate(row)
        )
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(png: str | None, alt: str) -> str:
    return f'<img class="fig" alt="{escape(alt)}" src="data:image/png;base64,{png}">' if png else ""


def level(summary: dict[str, Any]) -> str:
    """The confidence level of the intervals: two-sided (1 - 2 alpha)."""
    alpha = number(summary.get("alpha"))
    return f"{100 * (1 - 2 * alpha):g}%" if alpha is not None else "90%"


def _maximize(summary: dict[str, Any]) -> bool:
    return str(summary.get("direction") or "maximize").lower().startswith("max")


def _improved(delta: Any, maximize: bool) -> bool | None:
    """Whether a paired delta's mean points the good way; None when there is no delta."""
    mean = number(_delta_field(delta, "mean"))
    return None if mean is None else (mean > 0 if maximize else mean < 0)


# --- sections ---


def _budget(budget: dict[str, Any]) -> str:
    """'1h 30m of 3h 00m (1h 30m left) · 31 of 60 runs (29 left)'; a missing limit is 'no limit'."""
    spent, limit = number(budget.get("spent_seconds")), number(budget.get("seconds"))
    if limit is None:
        time = f"{duration(spent)} (no time limit)"
    else:
        time = f"{duration(spent)} of {duration(limit)} ({duration(max(limit - (spent or 0.0), 0.0))} left)"
    done, runs = budget.get("runs_done"), number(budget.get("runs"))
    done_text = "-" if number(done) is None else str(int(done))
    if runs is None:
        return f"{time} · {done_text} runs (no run limit)"
    left = max(int(runs) - int(number(done) or 0), 0)
    return f"{time} · {done_text} of {int(runs)} runs ({left} left)"


def _header(summary: dict[str, Any]) -> str:
    pairing, pairs = summary.get("pairing") or "seeds", summary.get("pairs")
    direction = "higher is better" if _maximize(summary) else "lower is better"
    stopped = summary.get("stopped")
    facts = [
        ("recipe", str(summary.get("recipe") or "-")),
        ("metric", f"{summary.get('metric') or '-'} ({direction})"),
        ("pairing", f"{pairs if pairs is not None else '?'} {pairing} per candidate, the same {pairing} as its base"),
        ("acceptance rule", str(summary.get("rule") or f"one-sided paired t-test, alpha {summary.get('alpha', '-')}")),
        ("budget spent", _budget(summary.get("budget") or {})),
        ("stopped", STOPPED.get(str(stopped), str(stopped or "-"))),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return f'<table class="facts">{rows}</table>'


def _result(summary: dict[str, Any]) -> str:
    """Baseline against best, the accepted changes, and where the best model was saved."""
    ladder, best = summary.get("ladder") or [], summary.get("best") or {}
    base = ladder[0] if ladder else {}
    top = ladder[-1] if ladder else {}
    cards = []
    for split in ("val", "test"):
        start, end = mean_std(base, split)[0], number(best.get(f"{split}_mean"))
        end = mean_std(top, split)[0] if end is None else end
        gain = end - start if end is not None and start is not None else None
        cards.append((f"{split}: baseline → best", f"{score(start)} → {score(end)}", signed(gain)))
    html = '<div class="cards">' + "".join(
        f'<div class="card"><span class="muted">{escape(n)}</span><b>{escape(v)}</b>'
        f'<span class="muted">{escape(g)}</span></div>'
        for n, v, g in cards
    ) + "</div>"
    changes = best.get("change_list") or [r.get("change") for r in ladder[1:]]
    html += "<p>Accepted changes: " + (
        ", ".join(f"<code>{escape(str(c))}</code>" for c in changes) if changes else "none (the baseline stands)"
    ) + "</p>"
    for key in ("model_dir", "ensemble_dir"):
        if best.get(key):
            folder = escape(str(best[key]))
            use = f"<code>honed predict {folder} DATA</code>"
            html += f"<p>{escape(key.replace('_', ' '))}: <code>{folder}</code> ({use})</p>"
    if best.get("config"):
        html += f'<p class="muted">best config: {escape(str(best["config"]))}</p>'
    return html


def _ladder(summary: dict[str, Any]) -> str:
    ladder = summary.get("ladder") or []
    if not ladder:
        return "<p>No rungs: the baseline did not finish.</p>"
    maximize = _maximize(summary)
    rows, classes = [], []
    for i, rung in enumerate(ladder):
        dv, dt = rung.get("delta_val"), rung.get("delta_test")
        config = f"({rung['config']})" if rung.get("config") else ""
        rows.append([
            str(rung.get("step", i)), str(rung.get("stage") or "-"), f"{rung.get('change') or '-'}\n{config}",
            mean_pm(rung, "val"), mean_pm(rung, "test"), delta_text(dv), p_value(_delta_field(dv, "p")),
            delta_text(dt), duration(rung.get("cum_seconds")),
        ])
        classes.append("warn" if _improved(dt, maximize) is False else "")
    headers = ["rung", "stage", "change (config)", "val mean ± std", "test mean ± std", "Δval [interval]", "p",
               "Δtest [interval]", "cumulative compute"]
    note = (
        '<p class="muted">Δ: mean paired difference against the best before it (same seeds or folds; a kept '
        f"change on the fresh verification pairs), with its {level(summary)} interval; p: the one-sided paired "
        "t-test. Highlighted: an accepted step that did not improve test.</p>"
    )
    chart = _figure(ladder_png(summary), "the ladder: val and test per rung")
    return chart + _table(headers, rows, {0, 3, 4, 5, 6, 7, 8}, classes) + note


def _honesty_counts(summary: dict[str, Any]) -> tuple[int, int | None]:
    """(accepted steps, of them improving test): from `honesty`, else counted from the ladder."""
    honesty = summary.get("honesty") or {}
    steps = (summary.get("ladder") or [])[1:]
    accepted = honesty.get("accepted")
    accepted = int(accepted) if number(accepted) is not None else len(steps)
    improved = honesty.get("test_improved")
    if number(improved) is None:
        known = [_improved(r.get("delta_test"), _maximize(summary)) for r in steps]
        improved = sum(k is True for k in known) if known and None not in known else None
    return accepted, None if improved is None else int(improved)


def _honesty(summary: dict[str, Any]) -> str:
    accepted, improved = _honesty_counts(summary)
    metric = summary.get("metric") or "the metric"
    if accepted == 0:
        text, mixed = "No step was accepted on val, so there is nothing to carry over: the baseline stands.", False
    elif improved is None:
        text, mixed = f"{accepted} step(s) accepted on val; their effect on test is unknown.", True
    else:
        text = f"{improved} of {accepted} accepted step(s) also improved test {metric} (mean paired Δtest)."
        mixed = improved < accepted
        if mixed:
            text += " The others helped val but not test: val choices did not fully carry over."
    cls = "verdict mixed" if mixed else "verdict"
    return f'<p class="{cls}">{escape(text)}</p>'


def _rejected_order(candidates: list[dict[str, Any]], maximize: bool) -> list[dict[str, Any]]:
    """Rejected candidates, best Δval first (the nearest misses); those without a Δval last, in tried order."""
    rejected = [c for c in candidates if not c.get("accepted")]

    def key(cand: dict[str, Any]) -> tuple[int, float]:
        mean = number(_delta_field(cand.get("delta_val"), "mean"))
        return (1, 0.0) if mean is None else (0, -mean if maximize else mean)

    return sorted(rejected, key=key)


def _rejected(summary: dict[str, Any]) -> str:
    candidates = summary.get("candidates") or []
    maximize = _maximize(summary)
    rejected = _rejected_order(candidates, maximize)
    lead = (
        f'<p class="muted">{len(candidates)} candidate(s) tried, {len(candidates) - len(rejected)} accepted, '
        f"{len(rejected)} rejected; sorted by Δval, nearest miss first.</p>"
    )
    chart = _figure(deltas_png(candidates, maximize), "every candidate's paired val difference")
    if not rejected:
        return lead + chart + "<p>No candidate was rejected.</p>"
    rows = []
    for cand in rejected:
        dv = cand.get("delta_val")
        stage = str(cand.get("stage") or "-") + (f"\n({cand['phase']})" if cand.get("phase") else "")
        n = _delta_field(dv, "n")
        rows.append([
            stage, str(cand.get("change") or "-"), delta_text(dv), p_value(_delta_field(dv, "p")),
            "-" if number(n) is None else str(int(n)), delta_text(cand.get("delta_test")),
            str(cand.get("reason") or "-"), duration(cand.get("seconds")),
        ])
    headers = ["stage", "change", "Δval [interval]", "p", "pairs", "Δtest [interval]", "reason", "compute"]
    return lead + chart + _table(headers, rows, {2, 3, 4, 5, 7})


def _next(summary: dict[str, Any]) -> str:
    upcoming = [str(n) for n in summary.get("next") or []]
    if not upcoming:
        return "<p>Nothing left: every proposal of the enabled stages was tried.</p>"
    more = " with more budget" if summary.get("stopped") == "budget" else ""
    items = "".join(f"<li>{escape(n)}</li>" for n in upcoming)
    return f"<p>In order, what the climb would try{more}:</p><ol>{items}</ol>"
