"""climb.html from a synthetic climb.json summary: the ladder, rejected candidates sorted by Δval,
escaping, an empty climb, and the headless-Chromium render check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from honed.climb.html import duration, render_html, write_html
from tests.conftest import REPO

INJECTION = "<script>alert('x')</script> & <b>bold</b>"


def _delta(mean: float, p: float | None = 0.03, n: int = 3) -> dict[str, Any]:
    return {"mean": mean, "std": 0.004, "low": mean - 0.007, "high": mean + 0.007, "p": p, "n": n}


def _rung(step: int, stage: str, change: str, val: float, test: float, **extra: Any) -> dict[str, Any]:
    return {
        "step": step,
        "stage": stage,
        "change": change,
        "config": f"c-{step:08x}",
        "val": [val - 0.01, val, val + 0.01],
        "test": [test - 0.01, test, test + 0.01],
        "val_mean": val,
        "val_std": 0.01,
        "test_mean": test,
        "test_std": 0.01,
        "delta_val": None,
        "delta_test": None,
        "cum_seconds": 900.0 * (step + 1),
        **extra,
    }


def _candidate(change: str, delta_val: float | None, accepted: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "stage": "techniques",
        "change": change,
        "config": "c-cand",
        "base": "c-00000000",
        "phase": "screen",
        "val": [0.8, 0.81, 0.82],
        "test": [0.8, 0.81, 0.82],
        "delta_val": None if delta_val is None else _delta(delta_val, p=0.4),
        "delta_test": None if delta_val is None else _delta(delta_val / 2, p=0.5),
        "accepted": accepted,
        "reason": "mean below zero" if not accepted else "mean +0.012, p 0.03 < 0.1",
        "seconds": 812.5,
        **extra,
    }


def _summary() -> dict[str, Any]:
    ladder = [
        _rung(0, "baseline", "baseline", 0.81, 0.80),
        _rung(1, "optimisation", "optim.lr 2e-4", 0.825, 0.815, delta_val=_delta(0.015), delta_test=_delta(0.015)),
        _rung(2, "techniques", INJECTION, 0.835, 0.812, delta_val=_delta(0.01), delta_test=_delta(-0.003, p=0.7)),
    ]
    candidates = [
        _candidate("swa", -0.004),
        _candidate("optim.lr 2e-4", 0.015, accepted=True),
        _candidate("label smoothing 0.1", 0.003),
        _candidate("focal loss gamma 2", None, reason="failed: out of memory"),
        _candidate("mixup alpha 0.4", -0.02, reason="stopped after 1 seed: -0.020 below -0.01"),
        _candidate(INJECTION, 0.01, accepted=True),
        _candidate("layer-wise lr decay 0.8", 0.008, phase="combine"),
    ]
    return {
        "recipe": "quickstart",
        "metric": "accuracy",
        "direction": "maximize",
        "pairing": "seeds",
        "pairs": 3,
        "rule": "accepted when the mean paired difference of val accuracy is > 0 and p < 0.1",
        "alpha": 0.1,
        "budget": {"seconds": 10800, "runs": 60, "spent_seconds": 5400.2, "runs_done": 31},
        "stopped": "budget",
        "ladder": ladder,
        "candidates": candidates,
        "next": ["ema decay 0.999", "mixup alpha 0.2"],
        "best": {
            "config": "c-00000002",
            "change_list": ["optim.lr 2e-4", INJECTION],
            "val_mean": 0.835,
            "test_mean": 0.812,
            "model_dir": "best_model",
            "ensemble_dir": None,
        },
        "honesty": {"accepted": 2, "test_improved": 1},
    }


def test_the_page_is_written_and_shows_every_rung(tmp_path: Path) -> None:
    path = tmp_path / "climb.html"
    write_html(_summary(), path)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    ladder = page[page.index("The ladder") : page.index("Did val choices")]
    for change in ("baseline", "optim.lr 2e-4", "&lt;script&gt;"):
        assert change in ladder
    assert "0.8250 ± 0.0100" in ladder and "+0.0150\n[+0.0080, +0.0220]" in ladder
    assert "1 of 2 accepted step(s) also improved test accuracy" in page
    assert "1h 30m of 3h 00m (1h 30m left)" in page and "31 of 60 runs (29 left)" in page
    assert "mixup alpha 0.2" in page and "budget ran out" in page
    assert page.count("data:image/png;base64,") == 2  # the ladder and the candidates' Δval chart


def test_a_folder_gets_climb_html_inside(tmp_path: Path) -> None:
    write_html(_summary(), tmp_path)
    assert (tmp_path / "climb.html").stat().st_size > 1000


def test_rejected_candidates_are_sorted_by_delta_val_nearest_miss_first() -> None:
    page = render_html(_summary())
    rejected = page[page.index("<h2>Rejected candidates") : page.index("<h2>What the climb")]
    order = ["layer-wise lr decay 0.8", "label smoothing 0.1", "swa", "mixup alpha 0.4", "focal loss gamma 2"]
    positions = [rejected.index(f"<td>{name}</td>") for name in order]
    assert positions == sorted(positions)
    assert "<td>optim.lr 2e-4</td>" not in rejected  # accepted: on the ladder, not here
    assert "stopped after 1 seed" in rejected and "13m 32s" in rejected


def test_a_metric_to_minimise_sorts_the_most_negative_delta_first() -> None:
    summary = _summary() | {"direction": "minimize", "metric": "rmse"}
    page = render_html(summary)
    rejected = page[page.index("<h2>Rejected candidates") : page.index("<h2>What the climb")]
    order = ["mixup alpha 0.4", "swa", "label smoothing 0.1", "layer-wise lr decay 0.8", "focal loss gamma 2"]
    positions = [rejected.index(f"<td>{name}</td>") for name in order]
    assert positions == sorted(positions)


def test_strings_from_the_summary_are_escaped() -> None:
    summary = _summary()
    summary["recipe"] = INJECTION
    summary["next"].append(INJECTION)
    summary["best"]["model_dir"] = INJECTION
    page = render_html(summary)
    assert "<script>" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert not re.search(r"(src|href)=[\"'](https?:|//)", page), "no external resources"


def test_a_climb_with_no_accepted_step_and_no_candidates_renders(tmp_path: Path) -> None:
    summary = _summary()
    summary.update(
        ladder=summary["ladder"][:1],
        candidates=[],
        next=[],
        stopped="done",
        honesty={"accepted": 0, "test_improved": 0},
        best={"config": "c-00000000", "change_list": [], "model_dir": "best_model"},
    )
    page = render_html(summary)
    assert "No step was accepted" in page and "none (the baseline stands)" in page
    assert "0 candidate(s) tried" in page and "Nothing left" in page
    assert page.count("data:image/png;base64,") == 1  # the one-rung ladder; no Δval chart without candidates


def test_missing_optional_keys_and_odd_values_still_render() -> None:
    bare = {"ladder": [{"change": "baseline", "val": [0.7, 0.72], "test": [0.69]}], "candidates": [{}]}
    page = render_html(bare)
    assert "0.7100 ± 0.0141" in page and "no time limit" in page
    nan = _summary()
    nan["ladder"][1]["delta_val"] = {"mean": float("nan"), "p": None}
    nan["candidates"][0]["change"] = "costs $5 and $10"  # `$` must not start matplotlib mathtext
    assert "costs $5 and $10" in render_html(nan)
    assert render_html({}).endswith("</html>\n")


def test_durations_read_as_hours_minutes_seconds() -> None:
    assert [duration(s) for s in (42.46, 812.5, 5400.2, 10800, None)] == ["42.5s", "13m 32s", "1h 30m", "3h 00m", "-"]


@pytest.mark.skipif(
    shutil.which("chromium") is None
    and shutil.which("chromium-browser") is None
    and not os.environ.get("HONED_REQUIRE_CHROMIUM"),
    reason="chromium not installed (apt-get install chromium): climb.html render check skipped",
)
def test_climb_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    """Runs in CI (.ci/run sets HONED_REQUIRE_CHROMIUM, so a missing browser fails instead of skipping)."""
    page, shot = tmp_path / "climb.html", tmp_path / "shot.png"
    write_html(_summary(), page)
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "check_report_render.sh"), str(page), str(shot)],
        check=False,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert shot.stat().st_size > 10_000
