"""The climb's live line: drawn as a bar on a terminal, printed line by line (with the time) into a log."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from rich.console import Console

from honed.climb.run import _Display
from honed.progress import progress_bar


def climb_state() -> SimpleNamespace:
    return SimpleNamespace(best="base", metric="accuracy", scores=lambda config: [0.8, 0.9, None],
                           store=SimpleNamespace(results=lambda: [1, 2, 3, 4]), budget_text=lambda: "12 min left")


@pytest.mark.parametrize(("terminal", "enabled", "printed", "interactive"), [
    (False, True, True, None), (True, True, False, None), (False, False, False, None),
    (True, True, True, False),  # a terminal rich draws no live bar on (TERM=dumb)
])
def test_each_new_line_goes_to_a_log_but_not_to_a_terminal_or_under_quiet(monkeypatch: pytest.MonkeyPatch,
                                                                          terminal: bool, enabled: bool,
                                                                          printed: bool, interactive: bool | None
                                                                          ) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, force_interactive=interactive, width=200)
    monkeypatch.setattr("honed.progress.console", console)
    bars = progress_bar(enabled)
    bar = bars.add_task("climb", total=None, info="")
    _Display(climb_state(), bars, bar)("techniques: screening 3 candidates, first pair")
    line = "climb: techniques: screening 3 candidates, first pair | best val accuracy 0.8500 | 4 runs | 12 min left"
    assert bars.tasks[0].fields["info"] == line.removeprefix("climb: ") and bars.tasks[0].completed == 4
    logged = re.findall(r"^\d\d:\d\d:\d\d (.*)$", out.getvalue(), re.M)
    assert logged == ([line] if printed else [])
