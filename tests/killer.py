"""A test-only technique that SIGKILLs its own process once, at a chosen optimizer step."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any


class KillAtStep:
    def __init__(self, step: int, marker: str) -> None:
        self.step, self.marker = step, Path(marker)

    def on_after_optimizer_step(self, state: Any) -> None:
        if state.step == self.step and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
