"""The tasks `honed audit` and `honed clean` run, declared once for the CLI's task check and the Python API's.

Multi-label is not among them yet: no check reads label sets (balance, label errors and the probe would
each need a per-label form)."""

from __future__ import annotations

TASKS = ("classification", "regression")
